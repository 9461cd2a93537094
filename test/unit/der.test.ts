// The DER (X.690) writer and reader in src/common/der.ts: pure codec round trips.
import { describe, expect, it } from 'vitest';
import {
  bitString,
  bool,
  bytes,
  children,
  DerError,
  expectTag,
  explicit,
  ia5,
  implicit,
  nul,
  octets,
  oid,
  readTlv,
  seq,
  set,
  smallInt,
  TAG,
  time,
  tlv,
  uint,
  utf8,
  value,
} from '../../src/common/der.js';

const hex = (b: Buffer): string => b.toString('hex');

/** Decodes an OID's content octets (X.690 §8.19) independently of the writer. */
function decodeOid(content: Buffer): string {
  const first = content[0]!;
  const arcs = [Math.min(Math.floor(first / 40), 2), first - 40 * Math.min(Math.floor(first / 40), 2)];
  let v = 0;
  for (const byte of content.subarray(1)) {
    v = v * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  return arcs.join('.');
}

describe('tlv lengths', () => {
  for (const [len, headerHex] of [
    [0, '0400'],
    [1, '0401'],
    [127, '047f'],
    [128, '048180'],
    [255, '0481ff'],
    [256, '04820100'],
    [65535, '0482ffff'],
    [65536, '0483010000'],
  ] as const) {
    it(`encodes and reads back a ${len}-byte value`, () => {
      const content = Buffer.alloc(len, 0xab);
      const enc = tlv(TAG.OCTET_STRING, content);
      expect(hex(enc.subarray(0, headerHex.length / 2))).toBe(headerHex);
      expect(enc.length).toBe(headerHex.length / 2 + len);
      const t = readTlv(enc, 0);
      expect(t).toEqual({ tag: TAG.OCTET_STRING, start: 0, valueStart: headerHex.length / 2, end: enc.length });
      expect(value(enc, t).equals(content)).toBe(true);
      expect(bytes(enc, t).equals(enc)).toBe(true);
    });
  }

  it('concatenates several parts under one header', () => {
    const enc = tlv(TAG.SEQUENCE, Buffer.from([1, 2]), Buffer.alloc(200, 3));
    expect(hex(enc.subarray(0, 3))).toBe('3081ca');
    expect(enc.length).toBe(3 + 202);
  });

  it('reads a TLV at an offset inside a larger buffer', () => {
    const inner = octets(Buffer.from('hello'));
    const buf = Buffer.concat([Buffer.from([0xff, 0xff]), inner, Buffer.from([0xee])]);
    const t = readTlv(buf, 2);
    expect(t.start).toBe(2);
    expect(value(buf, t).toString()).toBe('hello');
    expect(t.end).toBe(2 + inner.length);
  });
});

describe('readTlv rejects malformed input', () => {
  it('truncated header', () => {
    expect(() => readTlv(Buffer.from([0x04]), 0)).toThrow(DerError);
    expect(() => readTlv(Buffer.alloc(0), 0)).toThrow(/truncated/);
  });
  it('content longer than the buffer', () => {
    expect(() => readTlv(Buffer.from([0x04, 0x05, 1, 2]), 0)).toThrow(/truncated/);
    expect(() => readTlv(Buffer.from([0x04, 0x82, 0x01]), 0)).toThrow(/truncated/);
  });
  it('content longer than the parent limit', () => {
    const buf = Buffer.from([0x04, 0x02, 1, 2]);
    expect(() => readTlv(buf, 0, 3)).toThrow(/truncated/);
  });
  it('multi-byte tags', () => {
    expect(() => readTlv(Buffer.from([0x1f, 0x81, 0x00]), 0)).toThrow(/multi-byte/);
  });
  it('indefinite and over-long length forms', () => {
    expect(() => readTlv(Buffer.from([0x30, 0x80, 0, 0]), 0)).toThrow(/unsupported length/);
    expect(() => readTlv(Buffer.from([0x04, 0x85, 0, 0, 0, 0, 1, 0]), 0)).toThrow(/unsupported length/);
  });
  it('a long-form length below 128 (non-minimal)', () => {
    expect(() => readTlv(Buffer.from([0x04, 0x81, 0x05, 1, 2, 3, 4, 5]), 0)).toThrow(/non-minimal/);
  });
});

describe('children and expectTag', () => {
  it('walks a nested structure', () => {
    const der = seq(smallInt(1), set(utf8('a'), ia5('b')), explicit(0, nul()), implicit(2, Buffer.from('x.y')));
    const top = readTlv(der, 0);
    expect(top.end).toBe(der.length);
    const kids = children(der, expectTag(top, TAG.SEQUENCE, 'seq'));
    expect(kids.map((k) => k.tag)).toEqual([TAG.INTEGER, TAG.SET, 0xa0, 0x82]);
    const inSet = children(der, kids[1]!);
    expect(inSet.map((k) => [k.tag, value(der, k).toString()])).toEqual([
      [TAG.UTF8, 'a'],
      [TAG.IA5, 'b'],
    ]);
    const inExplicit = children(der, kids[2]!);
    expect(inExplicit).toHaveLength(1);
    expect(hex(bytes(der, inExplicit[0]!))).toBe('0500');
    expect(value(der, kids[3]!).toString()).toBe('x.y');
  });

  it('an empty constructed value has no children', () => {
    const der = seq();
    expect(hex(der)).toBe('3000');
    expect(children(der, readTlv(der, 0))).toEqual([]);
  });

  it('a child running past its parent is an error', () => {
    // SEQUENCE of length 3 holding an OCTET STRING that claims 5 bytes.
    const der = Buffer.from([0x30, 0x03, 0x04, 0x05, 0x00, 0, 0, 0, 0]);
    expect(() => children(der, readTlv(der, 0))).toThrow(/truncated/);
  });

  it('expectTag names what was expected', () => {
    const der = nul();
    const t = readTlv(der, 0);
    expect(expectTag(t, TAG.NULL, 'null')).toBe(t);
    expect(() => expectTag(t, TAG.SEQUENCE, 'the subject')).toThrow('expected the subject');
    expect(() => expectTag(undefined, TAG.SEQUENCE, 'the subject')).toThrow(DerError);
  });
});

describe('primitive writers', () => {
  it('bool, null, octets, utf8, ia5, bitString', () => {
    expect(hex(bool(true))).toBe('0101ff');
    expect(hex(bool(false))).toBe('010100');
    expect(hex(nul())).toBe('0500');
    expect(hex(octets(Buffer.from([1, 2])))).toBe('04020102');
    expect(hex(utf8('é'))).toBe('0c02c3a9');
    expect(hex(ia5('ab'))).toBe('16026162');
    expect(hex(bitString(Buffer.from([0xff])))).toBe('030200ff');
    expect(hex(explicit(3, nul()))).toBe('a3020500');
    expect(hex(implicit(7, Buffer.from([127, 0, 0, 1])))).toBe('87047f000001');
  });
});

describe('uint: minimal positive INTEGER', () => {
  const cases: [number[], string][] = [
    [[0], '020100'],
    [[0, 0, 0, 0], '020100'],
    [[], '020100'],
    [[1], '020101'],
    [[0x7f], '02017f'],
    [[0x80], '02020080'],
    [[0xff], '020200ff'],
    [[0, 0, 0x80, 0], '0203008000'],
    [[0, 0, 0x01, 0x00], '02020100'],
    [[0, 0x7f, 0xff], '02027fff'],
    [[0xde, 0xad, 0xbe, 0xef], '020500deadbeef'],
  ];
  for (const [input, out] of cases) {
    it(`${hex(Buffer.from(input)) || '(empty)'} -> ${out}`, () => {
      expect(hex(uint(Buffer.from(input)))).toBe(out);
    });
  }

  it('strips leading zeros and pads a set high bit, for a 16-byte serial', () => {
    const serial = Buffer.concat([Buffer.alloc(7), Buffer.from([0x90]), Buffer.alloc(8, 0x11)]);
    const enc = uint(serial);
    const t = readTlv(enc, 0);
    const v = value(enc, t);
    expect(v[0]).toBe(0);
    expect(v[1]).toBe(0x90);
    expect(v.length).toBe(10);
  });

  it('smallInt', () => {
    expect(hex(smallInt(0))).toBe('020100');
    expect(hex(smallInt(2))).toBe('020102');
    expect(hex(smallInt(128))).toBe('02020080');
    expect(hex(smallInt(65537))).toBe('0203010001');
    expect(hex(smallInt(0xffffffff))).toBe('020500ffffffff');
  });
});

describe('oid', () => {
  const known: [string, string][] = [
    ['2.5.4.3', '0603550403'],
    ['2.5.29.17', '0603551d11'],
    ['1.2.840.113549.1.1.11', '06092a864886f70d01010b'],
    ['1.2.840.10045.4.3.2', '06082a8648ce3d040302'],
    ['1.2.840.10045.2.1', '06072a8648ce3d0201'],
    ['1.3.6.1.5.5.7.3.1', '06082b06010505070301'],
    ['1.3.6.1.4.1.311.21.20', '06092b0601040182371514'],
  ];
  for (const [dotted, enc] of known) {
    it(`${dotted} encodes as ${enc} and decodes back`, () => {
      const der = oid(dotted);
      expect(hex(der)).toBe(enc);
      expect(decodeOid(value(der, readTlv(der, 0)))).toBe(dotted);
    });
  }

  it('round-trips arcs at base-128 boundaries', () => {
    for (const arc of [0, 127, 128, 16383, 16384, 2097151, 2097152, 2 ** 31 - 1, 2 ** 32 + 5]) {
      const dotted = `1.3.6.${arc}.7`;
      const der = oid(dotted);
      expect(readTlv(der, 0).end).toBe(der.length);
      expect(decodeOid(value(der, readTlv(der, 0)))).toBe(dotted);
    }
  });

  it('returns the same encoding on repeated calls', () => {
    expect(oid('2.5.4.10').equals(oid('2.5.4.10'))).toBe(true);
  });
});

describe('time (RFC 5280 §4.1.2.5)', () => {
  it('UTCTime through 2049', () => {
    const t = time(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678)));
    expect(t[0]).toBe(TAG.UTC_TIME);
    expect(value(t, readTlv(t, 0)).toString('ascii')).toBe('260102030405Z');
    const last = time(new Date(Date.UTC(2049, 11, 31, 23, 59, 59)));
    expect(last[0]).toBe(TAG.UTC_TIME);
    expect(value(last, readTlv(last, 0)).toString('ascii')).toBe('491231235959Z');
  });

  it('GeneralizedTime from 2050', () => {
    const t = time(new Date(Date.UTC(2050, 0, 1, 0, 0, 0)));
    expect(t[0]).toBe(TAG.GENERALIZED_TIME);
    expect(value(t, readTlv(t, 0)).toString('ascii')).toBe('20500101000000Z');
    const far = time(new Date(Date.UTC(2136, 5, 7, 8, 9, 10)));
    expect(value(far, readTlv(far, 0)).toString('ascii')).toBe('21360607080910Z');
  });

  it('drops fractional seconds', () => {
    const t = time(new Date(Date.UTC(2030, 6, 15, 12, 0, 0, 999)));
    expect(value(t, readTlv(t, 0)).toString('ascii')).toBe('300715120000Z');
  });
});
