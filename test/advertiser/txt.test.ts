// The TXT codec and muster's advertisement validators: pure, no sockets (RFC 6763 §6, DESIGN "Discovery").
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  decodeTxt,
  encodeTxt,
  isSha256B64url,
  nodeTxt,
  registrarTxt,
  splitTxtRdata,
  TxtEncodeError,
  validateNodeTxt,
  validateRegistrarTxt,
  type NodeAdvert,
  type RegistrarAdvert,
} from '../../src/advertiser/txt.js';

const b = (s: string | number[]): Buffer => (typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s));
const fp = (seed: string): string => createHash('sha256').update(seed).digest('base64url');

const registrar: RegistrarAdvert = {
  v: 1,
  role: 'main',
  cluster: 'edge',
  ca: fp('ca'),
  mode: 'token',
  id: 'reg-1',
};
const node: NodeAdvert = { v: 1, name: 'node1', role: 'worker', cluster: '', key: fp('key'), state: 'ready' };

describe('encodeTxt / decodeTxt', () => {
  it('round-trips key/value pairs, including empty values and UTF-8', () => {
    const txt = { v: '1', cluster: '', name: 'n1', note: 'grüße=ok' };
    const raw = encodeTxt(txt);
    expect(raw.map((x) => x.toString())).toEqual(['v=1', 'cluster=', 'name=n1', 'note=grüße=ok']);
    expect(Object.fromEntries(decodeTxt(raw))).toEqual(txt);
  });

  it('encodes an empty record as one empty string (RFC 6763 §6.1) and decodes it as empty', () => {
    const raw = encodeTxt({});
    expect(raw).toEqual([Buffer.alloc(0)]);
    expect(decodeTxt(raw).size).toBe(0);
  });

  it('keeps the first occurrence of a key, case-insensitively (§6.4)', () => {
    const m = decodeTxt([b('role=worker'), b('ROLE=main'), b('role=cluster')]);
    expect(m.get('role')).toBe('worker');
    expect(m.size).toBe(1);
  });

  it('keeps `key=` as an empty string and `key` alone as a boolean (null)', () => {
    const m = decodeTxt([b('cluster='), b('debug')]);
    expect(m.get('cluster')).toBe('');
    expect(m.get('debug')).toBeNull();
    expect(m.has('cluster=')).toBe(false);
  });

  it('keeps one-byte entries (bonjour-service drops them)', () => {
    const m = decodeTxt([b('x'), b('y=')]);
    expect(m.get('x')).toBeNull();
    expect(m.get('y')).toBe('');
  });

  it('ignores empty strings, missing keys and keys with non-ASCII bytes', () => {
    const m = decodeTxt([Buffer.alloc(0), b('=value'), b([0xff, 0x3d, 0x31]), b('k\u00e9y=1'), b('ok=1')]);
    expect([...m.keys()]).toEqual(['ok']);
  });

  it('replaces invalid UTF-8 in values, which the validators then refuse', () => {
    const m = decodeTxt([b('v=1'), b([...b('name='), 0xc3, 0x28]), b('role=worker')]);
    expect(m.get('name')).toBe('\ufffd(');
    const r = validateNodeTxt(m);
    expect(r.ok).toBe(false);
  });

  it('decodes wire-format RDATA and drops a truncated tail', () => {
    const rdata = Buffer.concat([b([3]), b('a=1'), b([0]), b([4]), b('bc=2'), b([9]), b('short')]);
    expect(splitTxtRdata(rdata).map(String)).toEqual(['a=1', '', 'bc=2']);
    expect(Object.fromEntries(decodeTxt(rdata))).toEqual({ a: '1', bc: '2' });
  });

  it('never throws on garbage and bounds what it reads', () => {
    for (let i = 0; i < 200; i++) {
      const junk = Buffer.from(Array.from({ length: (i * 37) % 600 }, (_, j) => (i * 31 + j * 17) % 256));
      expect(() => decodeTxt(junk)).not.toThrow();
      expect(() => decodeTxt([junk, junk.subarray(1)])).not.toThrow();
    }
    expect(decodeTxt(undefined).size).toBe(0);
    expect(decodeTxt(null).size).toBe(0);
    const many = Array.from({ length: 1000 }, (_, i) => b(`k${i}=v`));
    expect(decodeTxt(many).size).toBe(64);
    expect(decodeTxt([Buffer.alloc(300, 0x61)]).size).toBe(0); // over 255 bytes: not a TXT string
  });

  it('refuses to encode bad keys, case duplicates, oversized entries and records', () => {
    expect(() => encodeTxt({ '': 'x' })).toThrow(TxtEncodeError);
    expect(() => encodeTxt({ 'a=b': 'x' })).toThrow(/without '='/);
    expect(() => encodeTxt({ ké: 'x' })).toThrow(TxtEncodeError);
    expect(() => encodeTxt({ toolongkey: 'x' })).toThrow(/1-9/);
    expect(() => encodeTxt({ Role: 'a', role: 'b' })).toThrow(/twice/);
    expect(() => encodeTxt({ k: 'x'.repeat(253) })).not.toThrow(); // 'k=' + 253 = 255 bytes
    expect(() => encodeTxt({ k: 'x'.repeat(254) })).toThrow(/256 bytes/);
    expect(() => encodeTxt({ k: 'é'.repeat(127) })).toThrow(/256 bytes/); // bytes, not characters
    const big = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, 'x'.repeat(200)]));
    expect(() => encodeTxt(big)).toThrow(/1300/);
  });
});

describe('isSha256B64url', () => {
  it('accepts exactly the canonical base64url of 32 bytes', () => {
    expect(isSha256B64url(fp('x'))).toBe(true);
    expect(isSha256B64url(fp('x') + 'A')).toBe(false);
    expect(isSha256B64url(fp('x').slice(0, 42))).toBe(false);
    expect(
      isSha256B64url(
        createHash('sha256')
          .update('x')
          .digest('base64')
          .slice(0, 43)
          .replace(/[A-Za-z0-9]/g, '+'),
      ),
    ).toBe(false);
    // 43 characters whose last one carries bits a 32-byte value cannot have
    expect(isSha256B64url('A'.repeat(42) + 'B')).toBe(false);
  });
});

describe('registrar advertisement (_muster._tcp)', () => {
  it('round-trips through TXT', () => {
    const decoded = decodeTxt(encodeTxt(registrarTxt(registrar)));
    expect(validateRegistrarTxt(decoded)).toEqual({ ok: true, value: registrar });
    const { id: _id, ...noId } = registrar;
    expect(validateRegistrarTxt(decodeTxt(encodeTxt(registrarTxt(noId))))).toEqual({ ok: true, value: noId });
  });

  it('ignores unknown keys', () => {
    const raw = [...encodeTxt(registrarTxt(registrar)), b('future=1'), b('flag')];
    expect(validateRegistrarTxt(decodeTxt(raw)).ok).toBe(true);
  });

  it.each([
    [{ v: '2' }, /unsupported advertisement version v="2"/],
    [{ v: '' }, /unsupported advertisement version/],
    [{ role: 'boss' }, /role="boss" is not 'main' or 'cluster'/],
    [{ cluster: '' }, /cluster="" is not a cluster name/],
    [{ cluster: '-x' }, /cluster/],
    [{ ca: 'abc' }, /ca="abc" is not a base64url sha256/],
    [{ mode: 'OPEN' }, /mode/],
    [{ id: 'Reg_1' }, /id="Reg_1"/],
  ])('rejects %j', (patch, reason) => {
    const txt = new Map<string, string | null>(Object.entries({ ...registrarTxt(registrar), ...patch }));
    const r = validateRegistrarTxt(txt);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it('rejects missing keys and boolean values by name', () => {
    const full = new Map<string, string | null>(Object.entries(registrarTxt(registrar)));
    for (const key of ['v', 'role', 'cluster', 'ca', 'mode']) {
      const m = new Map(full);
      m.delete(key);
      const r = validateRegistrarTxt(m);
      expect(r).toEqual({ ok: false, reason: expect.stringContaining(`missing ${key}`) });
      m.set(key, null);
      expect(validateRegistrarTxt(m).ok).toBe(false);
    }
  });

  it('registrarTxt refuses to build an invalid advertisement', () => {
    expect(() => registrarTxt({ ...registrar, cluster: 'Bad Name' })).toThrow(TxtEncodeError);
  });
});

describe('node advertisement (_muster-join._tcp)', () => {
  it('round-trips through TXT, with an empty cluster and both states', () => {
    for (const a of [node, { ...node, cluster: 'edge', state: 'registered' as const }]) {
      expect(validateNodeTxt(decodeTxt(encodeTxt(nodeTxt(a))))).toEqual({ ok: true, value: a });
    }
  });

  it('accepts 63-character labels and refuses 64', () => {
    const n63 = 'a'.repeat(63);
    expect(validateNodeTxt(new Map(Object.entries(nodeTxt({ ...node, name: n63 })))).ok).toBe(true);
    const m = new Map<string, string | null>(Object.entries(nodeTxt(node)));
    m.set('name', 'a'.repeat(64));
    expect(validateNodeTxt(m).ok).toBe(false);
  });

  it.each([
    [{ v: '0' }, /version/],
    [{ name: '' }, /name/],
    [{ name: 'Node1' }, /name/],
    [{ name: 'node-' }, /name/],
    [{ name: 'a.b' }, /name/],
    [{ role: '' }, /role/],
    [{ cluster: 'x_y' }, /cluster/],
    [{ key: fp('k').replace(/.$/, '=') }, /key/],
    [{ key: 'x'.repeat(1000) }, /key is too long/],
    [{ state: 'done' }, /state/],
  ])('rejects %j', (patch, reason) => {
    const m = new Map<string, string | null>(Object.entries({ ...nodeTxt(node), ...patch }));
    const r = validateNodeTxt(m);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it('takes the first of duplicated keys from the wire', () => {
    const raw = [...encodeTxt(nodeTxt(node)), b('name=impostor'), b('state=registered')];
    const r = validateNodeTxt(decodeTxt(raw));
    expect(r.ok && r.value.name).toBe('node1');
    expect(r.ok && r.value.state).toBe('ready');
  });
});
