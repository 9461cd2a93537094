// Admission codecs (src/common/proof.ts): join tokens, the join proof, the bundle MAC, node signatures.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  bundleMac,
  canonicalJson,
  joinProofMac,
  nodeSignedPayload,
  formatToken,
  parseToken,
  safeEqual,
  signNode,
  verifyNode,
  type Bundle,
  type ProofFields,
} from '../../src/common/proof.js';
import { newToken } from '../../src/registrar/policy.js';

describe('parseToken', () => {
  it('accepts tokens made by newToken', () => {
    for (let i = 0; i < 50; i++) {
      const t = newToken(0, { ttlMs: null, maxUses: null, roles: [], clusters: [] });
      expect(parseToken(`${t.id}.${t.secret}`)).toEqual({ id: t.id, secret: t.secret });
    }
  });

  it('trims surrounding whitespace (a token file ending in a newline)', () => {
    const secret = 'A'.repeat(43);
    expect(parseToken(`  abcdef.${secret}\n`)).toEqual({ id: 'abcdef', secret });
  });

  it('reads the CA pin a token may carry, and formatToken writes it back', () => {
    const ca = 'c'.repeat(21) + '-_' + 'Z'.repeat(20);
    const t = { id: 'abcdef', secret: 'S'.repeat(43) };
    expect(parseToken(`${t.id}.${t.secret}.${ca}`)).toEqual({ ...t, ca });
    expect(formatToken({ ...t, ca })).toBe(`${t.id}.${t.secret}.${ca}`);
    expect(formatToken(t)).toBe(`${t.id}.${t.secret}`);
    expect(parseToken(formatToken({ ...t, ca }))).toEqual({ ...t, ca });
    // A pin of the wrong length is no pin: the whole token is refused, never read without it.
    expect(parseToken(`${t.id}.${t.secret}.${ca}x`)).toBeUndefined();
    expect(parseToken(`${t.id}.${t.secret}.${ca.slice(1)}`)).toBeUndefined();
  });

  it('accepts the bounds of id and secret lengths', () => {
    expect(parseToken(`abcdef.${'x'.repeat(32)}`)).toBeDefined();
    expect(parseToken(`${'a'.repeat(16)}.${'-_'.repeat(64)}`)).toBeDefined();
  });

  const secret = 'Q'.repeat(43);
  for (const [why, token] of [
    ['empty', ''],
    ['no dot', `abcdef${secret}`],
    ['empty id', `.${secret}`],
    ['empty secret', 'abcdef.'],
    ['id too short', `abcde.${secret}`],
    ['id too long', `${'a'.repeat(17)}.${secret}`],
    ['upper-case id', `ABCDEF.${secret}`],
    ['id with a dash', `abc-def.${secret}`],
    ['secret too short', `abcdef.${'x'.repeat(31)}`],
    ['secret too long', `abcdef.${'x'.repeat(129)}`],
    ['secret in standard base64', `abcdef.${'x'.repeat(40)}+/=`],
    ['two dots', `abcdef.${secret}.x`],
    ['inner whitespace', `abcdef. ${secret}`],
  ] as const) {
    it(`rejects a token with ${why}`, () => {
      expect(parseToken(token)).toBeUndefined();
    });
  }
});

describe('joinProofMac', () => {
  const secret = 'S'.repeat(43);
  const base: ProofFields = { name: 'node-1', role: 'worker', cluster: 'edge', key: 'k'.repeat(43), ts: 1_767_225_600 };

  it('is stable for the same input and base64url SHA-256 sized', () => {
    const a = joinProofMac(secret, base);
    expect(joinProofMac(secret, { ...base })).toBe(a);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('changes when any field, or the secret, changes', () => {
    const a = joinProofMac(secret, base);
    const variants: ProofFields[] = [
      { ...base, name: 'node-2' },
      { ...base, role: 'storage' },
      { ...base, cluster: 'core' },
      { ...base, cluster: '' },
      { ...base, key: 'j'.repeat(43) },
      { ...base, ts: base.ts + 1 },
    ];
    const macs = variants.map((v) => joinProofMac(secret, v));
    for (const m of macs) expect(m).not.toBe(a);
    expect(new Set(macs).size).toBe(macs.length);
    expect(joinProofMac('T'.repeat(43), base)).not.toBe(a);
  });
});

describe('safeEqual', () => {
  it('compares strings of any length without throwing', () => {
    expect(safeEqual('abc', 'abc')).toBe(true);
    expect(safeEqual('abc', 'abd')).toBe(false);
    expect(safeEqual('abc', 'abcd')).toBe(false);
    expect(safeEqual('', '')).toBe(true);
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}');
  });

  it('is independent of insertion order', () => {
    const one: Record<string, unknown> = {};
    one.x = 1;
    one.a = { q: true, b: null };
    const two: Record<string, unknown> = {};
    two.a = { b: null, q: true };
    two.x = 1;
    expect(canonicalJson(one)).toBe(canonicalJson(two));
  });

  it('drops undefined members, keeps null and array order', () => {
    expect(canonicalJson({ a: undefined, b: null, c: [3, 1, 2] })).toBe('{"b":null,"c":[3,1,2]}');
    expect(canonicalJson({ a: 1, mac: undefined })).toBe(canonicalJson({ a: 1 }));
  });

  it('encodes scalars and strings like JSON.stringify', () => {
    expect(canonicalJson('a"b\n')).toBe(JSON.stringify('a"b\n'));
    expect(canonicalJson(1.5)).toBe('1.5');
    expect(canonicalJson(true)).toBe('true');
    expect(canonicalJson(null)).toBe('null');
    expect(canonicalJson({})).toBe('{}');
    expect(canonicalJson([])).toBe('[]');
    expect(canonicalJson({ 'k"1': 'é' })).toBe('{"k\\"1":"é"}');
  });

  it('is valid JSON that parses back to the same value', () => {
    const v = { z: [1, { b: 'x', a: [] }], a: { c: null, b: 'y' } };
    expect(JSON.parse(canonicalJson(v))).toEqual(v);
  });
});

describe('bundleMac', () => {
  const secret = 'S'.repeat(43);
  const bundle: Bundle = {
    v: 1,
    cluster: 'edge',
    node: 'node-1',
    role: 'worker',
    certificate: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
    chain: [],
    ca: '-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n',
    registrar: { url: 'https://198.18.0.1:8443', id: 'reg-1' },
    config: { ntp: 'pool.ntp.org', log: 'debug' },
    issuedAt: '2026-01-01T00:00:00.000Z',
  };

  it('ignores an existing mac field', () => {
    const m = bundleMac(secret, bundle);
    expect(bundleMac(secret, { ...bundle, mac: m })).toBe(m);
    expect(bundleMac(secret, { ...bundle, mac: 'something else' })).toBe(m);
  });

  it('does not depend on key order', () => {
    const reordered = Object.fromEntries(Object.entries(bundle).reverse()) as unknown as Bundle;
    reordered.config = { log: 'debug', ntp: 'pool.ntp.org' };
    expect(bundleMac(secret, reordered)).toBe(bundleMac(secret, bundle));
  });

  it('changes when any bundle field changes', () => {
    const m = bundleMac(secret, bundle);
    const variants: Bundle[] = [
      { ...bundle, cluster: 'core' },
      { ...bundle, node: 'node-2' },
      { ...bundle, role: 'storage' },
      { ...bundle, certificate: bundle.certificate.replace('AAAA', 'AAAB') },
      { ...bundle, chain: [bundle.ca] },
      { ...bundle, ca: bundle.ca.replace('BBBB', 'BBBC') },
      { ...bundle, registrar: { ...bundle.registrar, url: 'https://evil:8443' } },
      { ...bundle, registrar: { ...bundle.registrar, id: 'reg-2' } },
      { ...bundle, config: { ...bundle.config, ntp: 'evil' } },
      { ...bundle, config: { ...bundle.config, extra: 'x' } },
      { ...bundle, config: {} },
      { ...bundle, issuedAt: '2026-01-01T00:00:01.000Z' },
    ];
    const macs = variants.map((v) => bundleMac(secret, v));
    for (const x of macs) expect(x).not.toBe(m);
    expect(new Set(macs).size).toBe(macs.length);
    expect(bundleMac('T'.repeat(43), bundle)).not.toBe(m);
  });

  it('does not modify the bundle', () => {
    const b = { ...bundle, mac: 'x' };
    bundleMac(secret, b);
    expect(b.mac).toBe('x');
  });

  it('is a base64url HMAC-SHA256', () => {
    expect(bundleMac(secret, bundle)).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('signNode / verifyNode', () => {
  let ec: { privateKey: KeyObject; publicKey: KeyObject };
  let ec2: { privateKey: KeyObject; publicKey: KeyObject };
  let rsa: { privateKey: KeyObject; publicKey: KeyObject };

  beforeAll(() => {
    ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    ec2 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  });

  it('the payload names kind, node, serial and time', () => {
    expect(nodeSignedPayload('ack', 'node-1', '01AB', 1700000000).toString()).toBe('muster-ack-v1|node-1|01AB|1700000000');
    expect(nodeSignedPayload('leave', 'node-1', '01AB', 1700000000).toString()).toBe('muster-leave-v1|node-1|01AB|1700000000');
  });

  for (const kind of ['ec', 'rsa'] as const) {
    it(`verifies a ${kind} signature and refuses wrong key, payload or garbage without throwing`, () => {
      const k = kind === 'ec' ? ec : rsa;
      const payload = nodeSignedPayload('ack', 'node-1', '01AB', 1700000000);
      const sig = signNode(k.privateKey, payload);
      expect(sig).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(verifyNode(k.publicKey, payload, sig)).toBe(true);
      expect(verifyNode(k.privateKey, payload, sig)).toBe(true);

      const otherKey = kind === 'ec' ? ec2.publicKey : ec.publicKey;
      expect(verifyNode(otherKey, payload, sig)).toBe(false);
      expect(verifyNode(k.publicKey, nodeSignedPayload('leave', 'node-1', '01AB', 1700000000), sig)).toBe(false);
      expect(verifyNode(k.publicKey, nodeSignedPayload('ack', 'node-1', '01AB', 1700000001), sig)).toBe(false);
      for (const garbage of ['', 'AAAA', '!!!not base64!!!', 'x'.repeat(10_000), sig.slice(0, -4)]) {
        expect(() => verifyNode(k.publicKey, payload, garbage)).not.toThrow();
        expect(verifyNode(k.publicKey, payload, garbage)).toBe(false);
      }
    });
  }

  it('an EC signature checked with an RSA key is false, not an exception', () => {
    const payload = Buffer.from('x');
    const sig = signNode(ec.privateKey, payload);
    expect(verifyNode(rsa.publicKey, payload, sig)).toBe(false);
  });
});
