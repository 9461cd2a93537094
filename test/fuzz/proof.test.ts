/**
 * The admission codecs (src/common/proof.ts; DESIGN "Admission policy", "The credentials bundle"):
 * join tokens, the token proof, the canonical JSON the bundle MAC covers, and the payloads nodes sign
 * with their key, under generated input (issue 8 "Prove it"; CONVENTIONS 1: pure codecs with
 * round-trip tests).
 */
import fc from 'fast-check';
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  bundleMac,
  canonicalJson,
  formatToken,
  joinProofMac,
  nodeSignedPayload,
  parseToken,
  safeEqual,
  signNode,
  verifyNode,
} from '../../src/common/proof.js';
import { nastyString } from './arbitraries.js';

const RUNS = Number(process.env.MUSTER_FUZZ_RUNS ?? 500);

const id = fc.stringMatching(/^[a-z0-9]{6,16}$/);
const secret = fc.stringMatching(/^[A-Za-z0-9_-]{32,128}$/);
const ca = fc.stringMatching(/^[A-Za-z0-9_-]{43}$/);
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/);
const fingerprint = ca;

describe('join tokens', () => {
  it('format then parse gives the token back, with and without the CA pin', () => {
    fc.assert(
      fc.property(id, secret, fc.option(ca, { nil: undefined }), (i, s, c) => {
        const t = { id: i, secret: s, ...(c ? { ca: c } : {}) };
        expect(parseToken(formatToken(t))).toEqual(t);
        expect(parseToken(`  ${formatToken(t)}\n`)).toEqual(t);
      }),
      { numRuns: RUNS },
    );
  });

  it('any text: undefined, or a token whose parts match their patterns and format back to the text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          nastyString,
          fc.tuple(id, secret, ca).map(([i, s, c]) => `${i}.${s}.${c}`),
          // Near misses: a part too short or too long, a wrong separator, extra parts.
          fc
            .tuple(id, secret, ca, fc.constantFrom('.', '..', ':', ' ', '.x', ''), fc.nat({ max: 3 }))
            .map(([i, s, c, sep, cut]) => `${i.slice(cut)}${sep}${s.slice(cut * 10)}.${c.slice(cut)}`),
        ),
        (text) => {
          const t = parseToken(text);
          if (t === undefined) return;
          expect(t.id).toMatch(/^[a-z0-9]{6,16}$/);
          expect(t.secret).toMatch(/^[A-Za-z0-9_-]{32,128}$/);
          if (t.ca !== undefined) expect(t.ca).toMatch(/^[A-Za-z0-9_-]{43}$/);
          expect(formatToken(t)).toBe(text.trim());
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('token proof', () => {
  const fields = fc.record({
    name: label,
    role: label,
    cluster: fc.oneof(fc.constant(''), label),
    key: fingerprint,
    ts: fc.nat({ max: 2 ** 40 }),
  });

  it('is 43 base64url characters, and the same for the same input', () => {
    fc.assert(
      fc.property(secret, fields, (s, f) => {
        const mac = joinProofMac(s, f);
        expect(mac).toMatch(/^[A-Za-z0-9_-]{43}$/);
        expect(joinProofMac(s, { ...f })).toBe(mac);
      }),
      { numRuns: RUNS },
    );
  });

  it('changes with every field and with the secret: no two valid requests share a proof', () => {
    fc.assert(
      fc.property(secret, fields, fields, secret, (s, a, b, s2) => {
        const same = JSON.stringify(a) === JSON.stringify(b);
        expect(joinProofMac(s, a) === joinProofMac(s, b)).toBe(same);
        if (s !== s2) expect(joinProofMac(s, a)).not.toBe(joinProofMac(s2, a));
        // Field boundaries are unambiguous: labels and fingerprints never hold the separator.
        const shifted = { ...a, name: `${a.name}${a.role.slice(0, 1)}`, role: a.role.slice(1) };
        if (shifted.role !== '' && shifted.name.length <= 63)
          expect(joinProofMac(s, shifted)).not.toBe(joinProofMac(s, a));
      }),
      { numRuns: RUNS },
    );
  });
});

describe('canonical JSON and the bundle MAC', () => {
  it('canonical JSON is valid JSON, a fixed point, and blind to key order', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = canonicalJson(v);
        const back = JSON.parse(text) as unknown;
        expect(canonicalJson(back)).toBe(text);
        expect(canonicalJson(reorder(v))).toBe(text);
      }),
      { numRuns: RUNS },
    );
  });

  it('the bundle MAC ignores the mac field and key order, and changes with any other content', () => {
    const bundle = fc.record({
      v: fc.constant(1 as const),
      cluster: label,
      node: label,
      role: label,
      certificate: fc.string({ maxLength: 50 }),
      chain: fc.array(fc.string({ maxLength: 20 }), { maxLength: 2 }),
      ca: fc.string({ maxLength: 50 }),
      registrar: fc.record({ url: fc.string({ maxLength: 20 }), id: label }),
      config: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
      issuedAt: fc.string({ maxLength: 24 }),
    });
    fc.assert(
      fc.property(secret, bundle, bundle, fc.string(), (s, a, b, mac) => {
        const m = bundleMac(s, a);
        expect(bundleMac(s, { ...a, mac })).toBe(m);
        expect(bundleMac(s, reorder(a) as typeof a)).toBe(m);
        expect(bundleMac(s, b) === m).toBe(canonicalJson(a) === canonicalJson(b));
      }),
      { numRuns: RUNS },
    );
  });

  it('safeEqual is string equality', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 50 }),
        fc.string({ unit: 'binary', maxLength: 50 }),
        (a, b) => {
          expect(safeEqual(a, b)).toBe(a === b);
          expect(safeEqual(a, a)).toBe(true);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('node-signed payloads (ack, leave, poll)', () => {
  const keys = [
    generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey,
    generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
  ];
  const kind = fc.constantFrom('ack', 'leave', 'poll') as fc.Arbitrary<'ack' | 'leave' | 'poll'>;
  const ref = fc.oneof(fingerprint, fc.stringMatching(/^[0-9A-F]{1,40}$/));

  it('a signature verifies for its own payload only: not another kind, name, reference, time or key', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 1 }),
        kind,
        kind,
        label,
        ref,
        fc.nat({ max: 2 ** 40 }),
        (k, kind1, kind2, name, r, ts) => {
          const key = keys[k]!;
          const sig = signNode(key, nodeSignedPayload(kind1, name, r, ts));
          expect(verifyNode(key, nodeSignedPayload(kind1, name, r, ts), sig)).toBe(true);
          expect(verifyNode(key, nodeSignedPayload(kind2, name, r, ts), sig)).toBe(kind1 === kind2);
          expect(verifyNode(key, nodeSignedPayload(kind1, `${name}x`, r, ts), sig)).toBe(false);
          expect(verifyNode(key, nodeSignedPayload(kind1, name, `${r}0`, ts), sig)).toBe(false);
          expect(verifyNode(key, nodeSignedPayload(kind1, name, r, ts + 1), sig)).toBe(false);
          expect(verifyNode(keys[1 - k]!, nodeSignedPayload(kind1, name, r, ts), sig)).toBe(false);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('any signature text is false, never a throw', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 1 }),
        fc.oneof(
          nastyString,
          fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('base64url')),
        ),
        (k, sig) => {
          expect(verifyNode(keys[k]!, nodeSignedPayload('ack', 'node-1', 'AB', 1), sig)).toBe(false);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

/** The same value with every object's keys in reverse order. */
function reorder(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reorder);
  if (v === null || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).reverse()) {
    // defineProperty: a key named __proto__ stays an own key, as JSON.parse makes it.
    Object.defineProperty(out, k, {
      value: reorder((v as Record<string, unknown>)[k]),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}
