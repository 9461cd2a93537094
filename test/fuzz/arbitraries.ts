/**
 * Hostile input for the property tests in test/fuzz (issue 8, "Prove it": bad input with fast-check).
 *
 * JSON is built here as text, not with JSON.stringify, so that a generated document can carry what
 * JSON.stringify cannot write: own keys named `__proto__` (prototype pollution), duplicate keys,
 * numbers beyond a double (`1e400`, 30 digits), `-0`. `Obj` keeps its entries in order, duplicates
 * included; `Raw` is JSON text put in as is.
 */
import fc from 'fast-check';

// Each run draws new inputs (fast-check prints the seed and path of any counterexample);
// MUSTER_FUZZ_SEED replays one run, MUSTER_FUZZ_RUNS (read by each file) scales the number of inputs.
if (process.env.MUSTER_FUZZ_SEED) fc.configureGlobal({ seed: Number(process.env.MUSTER_FUZZ_SEED) });

/** JSON text inserted verbatim. */
export class Raw {
  constructor(readonly text: string) {}
}

/** A JSON object as an ordered list of entries (duplicates and `__proto__` allowed). */
export class Obj {
  constructor(readonly entries: [string, Json][]) {}
}

export type Json = null | boolean | number | string | Raw | Obj | Json[];

export function toJsonText(v: Json): string {
  if (v instanceof Raw) return v.text;
  if (v instanceof Obj)
    return `{${v.entries.map(([k, x]) => `${JSON.stringify(k)}:${toJsonText(x)}`).join(',')}}`;
  if (Array.isArray(v)) return `[${v.map(toJsonText).join(',')}]`;
  // JSON.stringify writes NaN and Infinity as null: keep them visible as (invalid) raw tokens instead.
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return JSON.stringify(v);
}

/** A plain JSON object value as an Obj (the starting point of a mutation). */
export function fromPlain(v: unknown): Json {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map(fromPlain);
  if (typeof v === 'object') return new Obj(Object.entries(v).map(([k, x]) => [k, fromPlain(x)]));
  return null;
}

/** Keys that break careless code: prototype pollution, look-alikes, empties, control characters. */
export const nastyKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    'hasOwnProperty',
    'valueOf',
    '',
    ' ',
    '\u0000',
    'name ',
    'Name',
    'nаme', // Cyrillic а
    '$gt',
    'a.b',
    'a[0]',
  ),
  fc.string({ maxLength: 12 }),
);

const longString = (n: number): fc.Arbitrary<string> =>
  fc.constantFrom('a', 'A', '-', '0', 'é', '😀', '\u0000', '%').map((c) => c.repeat(n));

/** Strings of every kind: unicode, control characters, near-valid labels, very long ones. */
export const nastyString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 70 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: 'binary-ascii', maxLength: 30 }),
  fc.stringMatching(/^[a-z0-9-]{0,70}$/),
  fc.constantFrom(
    '',
    ' ',
    '-',
    'a-',
    '-a',
    'A',
    'a_b',
    'a.b',
    'ß',
    'İ',
    'ｗｏｒｋｅｒ', // full-width
    'work\u200bbr', // zero-width space
    '\u202eevil',
    '../../etc/passwd',
    '%00',
    'null',
    'true',
    '0',
    '1e400',
    'NaN',
    '{"a":1}',
    '-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----',
  ),
  fc.integer({ min: 60, max: 70 }).chain((n) => longString(n)),
  fc.constantFrom(8191, 8192, 8193, 17_000).chain((n) => longString(n)),
);

/** Numbers a schema must bound: huge, negative, fractional, beyond 2^53, beyond a double. */
export const nastyNumber: fc.Arbitrary<Json> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(
    0,
    -1,
    0.5,
    2 ** 31,
    2 ** 32,
    2 ** 40,
    2 ** 40 + 1,
    2 ** 53,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
  ),
  fc
    .constantFrom(
      '-0',
      '1e400',
      '-1e400',
      '123456789012345678901234567890',
      '9007199254740993',
      '1E2',
      '1.0',
      '0.0000000000000000000000001',
    )
    .map((t) => new Raw(t)),
);

/** Any JSON value, nested, with nasty leaves and nasty keys. */
export const nastyJson: fc.Arbitrary<Json> = fc.letrec<{ v: Json }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    nastyString,
    nastyNumber,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 4 }),
    fc
      .array(fc.tuple(nastyKey, tie('v')), { maxLength: 4 })
      .map((entries) => new Obj(entries as [string, Json][])),
  ),
})).v;

/** One edit of a JSON object. */
export type Mutation =
  | { op: 'set'; key: string; value: Json }
  | { op: 'delete'; key: string }
  | { op: 'duplicate'; key: string; value: Json }
  | { op: 'inner'; key: string; mutation: Mutation }
  | { op: 'wrap'; how: 'array' | 'value' | 'string' };

/**
 * Edits of an object whose known keys are `keys`: replace a field by any value, remove it, add a
 * duplicate or unknown key (`__proto__` among them), edit inside a nested object, or wrap the whole.
 */
export function mutation(keys: readonly string[]): fc.Arbitrary<Mutation> {
  const key = keys.length ? fc.oneof(fc.constantFrom(...keys), nastyKey) : nastyKey;
  return fc.letrec<{ m: Mutation }>((tie) => ({
    m: fc.oneof(
      { depthSize: 'small' },
      fc.record({ op: fc.constant('set' as const), key, value: nastyJson }),
      fc.record({ op: fc.constant('delete' as const), key }),
      fc.record({ op: fc.constant('duplicate' as const), key, value: nastyJson }),
      fc.record({ op: fc.constant('inner' as const), key, mutation: tie('m') }),
      fc.record({
        op: fc.constant('wrap' as const),
        how: fc.constantFrom('array', 'value', 'string') as fc.Arbitrary<'array' | 'value' | 'string'>,
      }),
    ),
  })).m;
}

export function applyMutation(v: Json, m: Mutation): Json {
  if (m.op === 'wrap') {
    if (m.how === 'array') return [v];
    if (m.how === 'value') return new Obj([['value', v]]);
    return toJsonText(v);
  }
  if (!(v instanceof Obj)) return v;
  const entries = v.entries.slice();
  const at = entries.findIndex(([k]) => k === m.key);
  switch (m.op) {
    case 'set':
      if (at >= 0) entries[at] = [m.key, m.value];
      else entries.push([m.key, m.value]);
      break;
    case 'delete':
      if (at >= 0) entries.splice(at, 1);
      break;
    case 'duplicate':
      entries.push([m.key, m.value]);
      break;
    case 'inner':
      if (at >= 0) entries[at] = [m.key, applyMutation(entries[at]![1], m.mutation)];
      break;
  }
  return new Obj(entries);
}

export const applyAll = (v: Json, ms: readonly Mutation[]): Json => ms.reduce(applyMutation, v);

/** Content types a client might send, right and wrong. */
export const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  fc.constantFrom(
    undefined,
    'application/json',
    'application/json; charset=utf-8',
    'application/json; charset=utf-16',
    'application/json; charset=latin1',
    'APPLICATION/JSON',
    'application/json;',
    ' application/json',
    'application/jsonx',
    'application/json-patch+json',
    'application/problem+json',
    'text/json',
    'text/plain',
    'text/html',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/octet-stream',
    '*/*',
    '',
    ';',
    'application/json, text/plain',
  ),
  fc.stringMatching(/^[\x21-\x7e]{1,40}$/),
);

/** A request body: JSON text, hostile or not, or arbitrary text and bytes. */
export const body: fc.Arbitrary<string | Buffer> = fc.oneof(
  nastyJson.map(toJsonText),
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  fc.constantFrom('', '{', '}', '[', 'null', '"x"', '{"a":', '\u0000', '{}'.repeat(10_000), '['.repeat(5000)),
);

/** A header value that a client could put on the wire (no CR/LF: those are refused before sending). */
export const headerValue: fc.Arbitrary<string> = fc.oneof(
  fc.stringMatching(/^[\x20-\x7e]{0,80}$/),
  fc.constantFrom('198.18.0.20', '127.0.0.1', 'gzip', 'chunked', 'identity', '0', '-1', '99999999999'),
);

export const headerName: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    'x-forwarded-for',
    'x-real-ip',
    'forwarded',
    'content-encoding',
    'accept',
    'accept-encoding',
    'expect',
    'authorization',
    'cookie',
    'x-http-method-override',
    'origin',
    'range',
    'if-none-match',
  ),
  fc.stringMatching(/^x-[a-z0-9-]{1,20}$/),
);

/** A path segment: valid, near-valid, unicode, traversal, bad percent-encoding. */
export const pathSegment: fc.Arbitrary<string> = fc.oneof(
  nastyString.map((s) => encodeURIComponent(s)),
  fc.constantFrom('%', '%zz', '%00', '%2f', '..', '.', '%2e%2e', '%C0%AE', '%ff', 'a%20b', ';', 'a;b=c', '*'),
);

/** One part of a query string; `valid` parts take the right value when rendered. */
export type QueryPart =
  | { kind: 'valid'; key: string }
  | { kind: 'pair'; key: string; value: string }
  | { kind: 'bare'; key: string }
  | { kind: 'raw'; text: string };

/**
 * Query strings around a valid one with keys `keys`: the right values, nasty ones, repeats (arrays),
 * bracket keys (nesting in some parsers), `__proto__`, bare keys and broken percent-encoding.
 */
export function query(keys: readonly string[]): fc.Arbitrary<QueryPart[]> {
  const all = [...keys, '__proto__', 'constructor', 'key[]', 'a[b]', '__proto__[x]', 'x'];
  const part: fc.Arbitrary<QueryPart> = fc.oneof(
    ...(keys.length ? [fc.constantFrom(...keys).map((key): QueryPart => ({ kind: 'valid', key }))] : []),
    fc.record({ kind: fc.constant('pair' as const), key: fc.constantFrom(...all), value: nastyString }),
    fc.record({ kind: fc.constant('bare' as const), key: fc.constantFrom(...all) }),
    fc
      .constantFrom(
        '&',
        '=',
        '%',
        '%zz=1',
        'wait=%2B1',
        'wait=1e1',
        'wait=0x10',
        'limit=-1',
        'limit=1.5',
        'ts=-1',
        'ts=1e3',
      )
      .map((text): QueryPart => ({ kind: 'raw', text })),
  );
  // Mostly the whole valid query with a few edits; sometimes anything.
  return fc.oneof(
    fc.array(part, { maxLength: 6 }),
    fc
      .array(part, { maxLength: 3 })
      .map((extra) => [...keys.map((key): QueryPart => ({ kind: 'valid', key })), ...extra]),
  );
}

export function renderQuery(parts: readonly QueryPart[], valid: Record<string, string>): string {
  return parts
    .map((p) => {
      switch (p.kind) {
        case 'valid':
          return `${p.key}=${encodeURIComponent(valid[p.key] ?? '')}`;
        case 'pair':
          return `${encodeURIComponent(p.key)}=${encodeURIComponent(p.value)}`;
        case 'bare':
          return encodeURIComponent(p.key);
        case 'raw':
          return p.text;
      }
    })
    .join('&');
}
