/**
 * A small DER (ITU-T X.690) reader and writer over Buffers, for the hot path of registration: parsing
 * a CSR and building a TBSCertificate without materialising an object tree or a JS bignum (node-forge's
 * ASN.1 works on binary strings and parses keys into BigIntegers; registrations only need to copy the
 * SubjectPublicKeyInfo bytes through). Signatures are made and checked by node:crypto.
 */

export interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  valueStart: number;
  /** Offset just past the content. */
  end: number;
}

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

export function readTlv(buf: Buffer, offset: number, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError('truncated');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
  let len = buf[offset + 1]!;
  let valueStart = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('unsupported length');
    if (valueStart + n > limit) throw new DerError('truncated');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[valueStart + i]!;
    valueStart += n;
    if (len < 0x80 || buf[offset + 2] === 0) throw new DerError('non-minimal length');
  }
  const end = valueStart + len;
  if (end > limit) throw new DerError('truncated');
  return { tag, start: offset, valueStart, end };
}

/** The children of a constructed TLV. */
export function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let off = parent.valueStart;
  while (off < parent.end) {
    const t = readTlv(buf, off, parent.end);
    out.push(t);
    off = t.end;
  }
  return out;
}

export function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`expected ${what}`);
  return t;
}

export function bytes(buf: Buffer, t: Tlv): Buffer {
  return buf.subarray(t.start, t.end);
}

export function value(buf: Buffer, t: Tlv): Buffer {
  return buf.subarray(t.valueStart, t.end);
}

// ---- writer ----

/**
 * One TLV: the header and the parts written into a single buffer (no header buffer and no array for
 * Buffer.concat per call: a certificate is some fifty of these, on every join).
 */
export function tlv(tag: number, ...parts: Buffer[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const head = len < 0x80 ? 2 : len < 0x100 ? 3 : len < 0x10000 ? 4 : 5;
  if (len >= 0x1000000) throw new DerError('value too long');
  const out = Buffer.allocUnsafe(head + len);
  out[0] = tag;
  if (head === 2) out[1] = len;
  else {
    out[1] = 0x80 | (head - 2);
    for (let i = head - 1, v = len; i >= 2; i--, v >>>= 8) out[i] = v & 0xff;
  }
  let off = head;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8: 0x0c,
  PRINTABLE: 0x13,
  IA5: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

export const seq = (...parts: Buffer[]): Buffer => tlv(TAG.SEQUENCE, ...parts);
export const set = (...parts: Buffer[]): Buffer => tlv(TAG.SET, ...parts);
export const octets = (b: Buffer): Buffer => tlv(TAG.OCTET_STRING, b);
export const utf8 = (s: string): Buffer => tlv(TAG.UTF8, Buffer.from(s, 'utf8'));
export const ia5 = (s: string): Buffer => tlv(TAG.IA5, Buffer.from(s, 'ascii'));
export const bool = (v: boolean): Buffer => Buffer.from([TAG.BOOLEAN, 1, v ? 0xff : 0]);
export const nul = (): Buffer => Buffer.from([TAG.NULL, 0]);
/** A BIT STRING with no unused bits. */
export const bitString = (b: Buffer): Buffer => tlv(TAG.BIT_STRING, Buffer.from([0]), b);
/** Context-specific constructed tag [n] (EXPLICIT). */
export const explicit = (n: number, ...parts: Buffer[]): Buffer => tlv(0xa0 | n, ...parts);
/** Context-specific primitive tag [n] (IMPLICIT), e.g. GeneralName dNSName [2], iPAddress [7]. */
export const implicit = (n: number, content: Buffer): Buffer => tlv(0x80 | n, content);

/** An unsigned big-endian integer as a DER INTEGER (minimal, positive). */
export function uint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  let v = b.subarray(i);
  if (v.length === 0) v = Buffer.from([0]);
  if (v[0]! & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return tlv(TAG.INTEGER, v);
}

export function smallInt(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return uint(b);
}

const oidCache = new Map<string, Buffer>();
export function oid(dotted: string): Buffer {
  let enc = oidCache.get(dotted);
  if (enc) return enc;
  const parts = dotted.split('.').map(Number);
  // X.690 §8.19.4: the first two arcs share one subidentifier, 40*X + Y, base-128 like the rest.
  const out: number[] = [];
  for (const p of [parts[0]! * 40 + parts[1]!, ...parts.slice(2)]) {
    const stack: number[] = [p & 0x7f];
    let v = Math.floor(p / 128);
    while (v > 0) {
      stack.unshift((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(...stack);
  }
  enc = tlv(TAG.OID, Buffer.from(out));
  oidCache.set(dotted, enc);
  return enc;
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
export function time(d: Date): Buffer {
  const iso = d.toISOString(); // 2026-01-02T03:04:05.678Z
  const compact = iso.slice(0, 19).replace(/[-:T]/g, '') + 'Z'; // 20260102030405Z
  if (d.getUTCFullYear() < 2050) return tlv(TAG.UTC_TIME, Buffer.from(compact.slice(2), 'ascii'));
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(compact, 'ascii'));
}
