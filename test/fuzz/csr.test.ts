/**
 * The DER reader (src/common/der.ts) and the CSR parser (parseCsr, parseCsrAsync in
 * src/common/x509.ts) under generated hostile input (issue 8 "Prove it"). A CSR is the one binary
 * structure every stranger on the network can hand the registrar.
 *
 * Properties, for arbitrary bytes and text and for valid CSRs (EC P-256 and RSA 2048) mutated by bit
 * flips, byte edits, truncation, insertion and edits of the DER length fields:
 * - the parser returns or throws an Error with a message; never anything else (no TypeError or
 *   RangeError from reading past a buffer);
 * - it never accepts a CSR whose signature does not verify: an accepted mutant still holds the
 *   original signed CertificationRequestInfo byte for byte, and names the same node and key (the
 *   mutator does not hold the private key, so nothing else could carry a valid signature);
 * - a CertificationRequestInfo paired with the signature of another one is refused.
 * "Never hangs": every input here is at most a few kB and each property runs under the test
 * timeout; the inputs include nesting and length fields that claim up to 4 GB.
 */
import fc from 'fast-check';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import './arbitraries.js'; // MUSTER_FUZZ_SEED
import { children, DerError, readTlv, seq, type Tlv } from '../../src/common/der.js';
import {
  buildCsr,
  fromPem,
  importNodeKey,
  parseCsr,
  parseCsrAsync,
  spkiKind,
  toPem,
  type ParsedCsr,
} from '../../src/common/x509.js';

const RUNS = Number(process.env.MUSTER_FUZZ_RUNS ?? 400);
const LABEL = 'CERTIFICATE REQUEST';

interface Base {
  kind: string;
  name: string;
  der: Buffer;
  /** The signed part, as the original CSR holds it. */
  cri: Buffer;
  spki: Buffer;
}

function base(kind: string, key: KeyObject, name: string): Base {
  const der = fromPem(buildCsr(name, key), LABEL);
  // Read with the reader under test only where its answer is checked independently: the CRI is the
  // first child of the outer SEQUENCE, and node:crypto exports the same SPKI.
  const top = readTlv(der, 0);
  const cri = children(der, top)[0]!;
  return {
    kind,
    name,
    der,
    cri: Buffer.from(der.subarray(cri.start, cri.end)),
    spki: createPublicKey(key).export({ type: 'spki', format: 'der' }) as Buffer,
  };
}

const BASES: Base[] = [
  base('ec', generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey, 'node-ec'),
  base('rsa', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'node-rsa'),
];

/** Offsets of every TLV header in a DER document (for edits of tags and length fields). */
function headers(der: Buffer): Tlv[] {
  const out: Tlv[] = [];
  const walk = (t: Tlv): void => {
    out.push(t);
    // Constructed encodings (bit 6 set) have children.
    if (t.tag & 0x20) for (const c of children(der, t)) walk(c);
  };
  walk(readTlv(der, 0));
  return out;
}
const HEADERS = BASES.map((b) => headers(b.der));

type Edit =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; byte: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: number[] }
  | { op: 'delete'; at: number; n: number }
  | { op: 'length'; header: number; how: 'inc' | 'dec' | 'long' | 'huge' | 'indefinite' | 'zero' }
  | { op: 'tag'; header: number; tag: number };

const at = fc.nat({ max: 4096 });
const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at, bit: fc.nat({ max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at, byte: fc.nat({ max: 255 }) }),
  fc.record({ op: fc.constant('truncate' as const), at }),
  fc.record({
    op: fc.constant('insert' as const),
    at,
    bytes: fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 8 }),
  }),
  fc.record({ op: fc.constant('delete' as const), at, n: fc.integer({ min: 1, max: 8 }) }),
  fc.record({
    op: fc.constant('length' as const),
    header: fc.nat({ max: 200 }),
    how: fc.constantFrom('inc', 'dec', 'long', 'huge', 'indefinite', 'zero') as fc.Arbitrary<
      'inc' | 'dec' | 'long' | 'huge' | 'indefinite' | 'zero'
    >,
  }),
  fc.record({ op: fc.constant('tag' as const), header: fc.nat({ max: 200 }), tag: fc.nat({ max: 255 }) }),
);

/** Applies edits to a copy; offsets wrap around the current length. */
function mutate(b: number, edits: readonly Edit[]): Buffer {
  let der = Buffer.from(BASES[b]!.der);
  const hs = HEADERS[b]!;
  for (const e of edits) {
    const n = der.length;
    if (n === 0) break;
    switch (e.op) {
      case 'flip':
        der[e.at % n] = der[e.at % n]! ^ (1 << e.bit);
        break;
      case 'set':
        der[e.at % n] = e.byte;
        break;
      case 'truncate':
        der = der.subarray(0, e.at % n);
        break;
      case 'insert':
        der = Buffer.concat([
          der.subarray(0, e.at % (n + 1)),
          Buffer.from(e.bytes),
          der.subarray(e.at % (n + 1)),
        ]);
        break;
      case 'delete':
        der = Buffer.concat([der.subarray(0, e.at % n), der.subarray((e.at % n) + e.n)]);
        break;
      case 'tag': {
        const h = hs[e.header % hs.length]!;
        if (h.start < n) der[h.start] = e.tag;
        break;
      }
      case 'length': {
        // Rewrites the length field of one TLV of the original layout (later edits may have moved it).
        const h = hs[e.header % hs.length]!;
        if (h.valueStart > n) break;
        const len = h.end - h.valueStart;
        const enc =
          e.how === 'inc'
            ? lengthBytes(len + 1)
            : e.how === 'dec'
              ? lengthBytes(Math.max(0, len - 1))
              : e.how === 'long' // non-minimal: long form for a short length
                ? [0x84, 0, 0, (len >> 8) & 0xff, len & 0xff]
                : e.how === 'huge'
                  ? [0x84, 0xff, 0xff, 0xff, 0xff]
                  : e.how === 'indefinite'
                    ? [0x80]
                    : [0];
        der = Buffer.concat([der.subarray(0, h.start + 1), Buffer.from(enc), der.subarray(h.valueStart)]);
        break;
      }
    }
  }
  return der;
}

function lengthBytes(len: number): number[] {
  if (len < 0x80) return [len];
  if (len < 0x100) return [0x81, len];
  return [0x82, len >> 8, len & 0xff];
}

/** What the parser may do with any input: return, or throw an Error with a message. */
function outcome(input: string): { ok: ParsedCsr } | { err: Error } {
  try {
    return { ok: parseCsr(input) };
  } catch (err) {
    expect(err, `threw a non-Error for ${JSON.stringify(input.slice(0, 200))}`).toBeInstanceOf(Error);
    const e = err as Error;
    // Only the two kinds the parser documents: DerError (malformed) or a plain Error with a reason.
    expect(
      [Error, DerError].some((C) => Object.getPrototypeOf(e) === C.prototype),
      `${e.name}: ${e.message}`,
    ).toBe(true);
    expect(e.message.length).toBeGreaterThan(0);
    return { err: e };
  }
}

const counts = { inputs: 0, accepted: 0 };

describe('CSR parser under hostile input', () => {
  it('arbitrary bytes inside PEM armour, and arbitrary text: refused with an Error, never another throw', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 2048 }).map((b) => toPem(Buffer.from(b), LABEL)),
          fc.string({ maxLength: 500 }),
          fc
            .string({ unit: 'binary', maxLength: 300 })
            .map((s) => `-----BEGIN ${LABEL}-----\n${s}\n-----END ${LABEL}-----`),
          fc.constantFrom(
            '',
            `-----BEGIN ${LABEL}-----\n-----END ${LABEL}-----`,
            `-----BEGIN ${LABEL}-----\nMA==\n-----END ${LABEL}-----`,
            `-----BEGIN ${LABEL}-----\n${'-----BEGIN X-----'.repeat(400)}`,
            toPem(Buffer.from([0x30, 0x80, 0, 0]), LABEL),
            toPem(Buffer.alloc(4000, 0x30), LABEL),
            toPem(Buffer.from('30'.repeat(1) + '84ffffffff', 'hex'), LABEL),
          ),
        ),
        (input) => {
          counts.inputs++;
          const r = outcome(input);
          expect('ok' in r, 'random input was accepted as a CSR').toBe(false);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('valid CSRs mutated: refused with an Error, or accepted only with the original signed content, name and key', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: BASES.length - 1 }),
        fc.array(edit, { minLength: 1, maxLength: 4 }),
        (b, edits) => {
          counts.inputs++;
          const der = mutate(b, edits);
          const r = outcome(toPem(der, LABEL));
          if ('ok' in r) {
            counts.accepted++;
            const orig = BASES[b]!;
            expect(der.includes(orig.cri), 'accepted a CSR whose signed part changed').toBe(true);
            expect(r.ok.commonName).toBe(orig.name);
            expect(r.ok.spki.equals(orig.spki)).toBe(true);
          }
        },
      ),
      { numRuns: RUNS * 3 },
    );
  });

  it('the parser on libuv\'s pool (the registration hot path on 4+ cores) agrees with the sync one', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: BASES.length - 1 }),
        fc.array(edit, { minLength: 0, maxLength: 3 }),
        async (b, edits) => {
          counts.inputs++;
          const pem = toPem(mutate(b, edits), LABEL);
          const sync = outcome(pem);
          const async = await parseCsrAsync(pem, true).then(
            (ok) => ({ ok }),
            (err: unknown) => ({ err: err as Error }),
          );
          expect('ok' in async).toBe('ok' in sync);
          if ('err' in async) expect(async.err).toBeInstanceOf(Error);
        },
      ),
      { numRuns: RUNS / 2 },
    );
  });

  it("a signed part paired with another CSR's signature is refused", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9]{1,20}$/), (name) => {
        counts.inputs++;
        const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
        const mine = fromPem(buildCsr(name, key), LABEL);
        const other = fromPem(buildCsr(`${name}x`, key), LABEL);
        // [CRI of "name"] + [algorithm + signature of "namex"], rewrapped in a SEQUENCE.
        const [cri] = children(mine, readTlv(mine, 0));
        const [, alg, sig] = children(other, readTlv(other, 0));
        const swapped = seq(mine.subarray(cri!.start, cri!.end), other.subarray(alg!.start, sig!.end));
        const r = outcome(toPem(swapped, LABEL));
        expect('err' in r && /signature/.test(r.err.message), 'a swapped signature was accepted').toBe(true);
      }),
      { numRuns: 30 },
    );
  });

  it('the DER reader and key import: any bytes give a TLV inside the buffer or a DerError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat({ max: 700 }), (bytes, offset) => {
        counts.inputs++;
        const buf = Buffer.from(bytes);
        try {
          const t = readTlv(buf, offset);
          expect(t.start).toBe(offset);
          expect(t.valueStart).toBeGreaterThan(t.start);
          expect(t.end).toBeLessThanOrEqual(buf.length);
          if (t.tag & 0x20) for (const c of children(buf, t)) expect(c.end).toBeLessThanOrEqual(t.end);
        } catch (err) {
          expect(err).toBeInstanceOf(DerError);
        }
        for (const f of [spkiKind, importNodeKey]) {
          try {
            f(buf);
          } catch (err) {
            expect(err).toBeInstanceOf(Error);
            expect(['Error', 'DerError']).toContain((err as Error).name);
          }
        }
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('reports what it tried', () => {
    console.log(
      `fuzz csr: ${counts.inputs} inputs, ${counts.accepted} mutants accepted (all with the original signed content)`,
    );
    expect(counts.inputs).toBeGreaterThan(RUNS);
  });
});
