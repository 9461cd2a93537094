/**
 * The advertiser under generated hostile input (issue 8 "Bad input with fast-check"): the TXT codec and
 * muster's advertisement validators, and received mDNS packets, raw bytes and mutated valid packets,
 * through the same path a datagram takes after the socket (dns-packet's decode, as multicast-dns does,
 * then the Receiver, the publications and the browsers), on a ManualClock, with no socket.
 *
 * Properties:
 * - decoding and validating TXT never throws, stays within its bounds, and a validator never accepts a
 *   value out of bounds (checked against an independent statement of each field's rule);
 * - encode then decode is the identity on every record the encoder accepts, and the encoder refuses
 *   exactly the records over a bound;
 * - no received packet makes the handler throw or report a failure, and no service it discovers breaks
 *   the browser's invariants (name, port, host, addresses, TXT bounds); an advertisement that
 *   validates re-encodes (what the registrar and the node act on is always well-formed).
 *
 * MUSTER_FUZZ_RUNS scales the runs (default: the whole file in a few seconds); fast-check prints the
 * seed of any counterexample. The inputs tried are printed at the end.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Browser } from '../../src/advertiser/browser.js';
import { MAX_ADDRESSES_PER_HOST, MAX_ENTRIES, type Discovered } from '../../src/advertiser/browse-cache.js';
import { legacyResponse } from '../../src/advertiser/legacy.js';
import { PublicationMachine } from '../../src/advertiser/publication.js';
import { Receiver, type ReceiverHost, type Source } from '../../src/advertiser/receiver.js';
import { SERVICE_TYPES, buildRecords, type DnsPacket, type DnsRecord } from '../../src/advertiser/records.js';
import {
  TXT_DECODE_MAX_ENTRIES,
  TXT_ENTRY_MAX_BYTES,
  TXT_KEY_MAX_CHARS,
  TXT_RECORD_MAX_BYTES,
  TxtEncodeError,
  decodeTxt,
  encodeTxt,
  nodeTxt,
  registrarTxt,
  splitTxtRdata,
  validateNodeTxt,
  validateRegistrarTxt,
  type NodeAdvert,
  type RegistrarAdvert,
  type TxtMap,
} from '../../src/advertiser/txt.js';
import { silentLogger } from '../../src/advertiser/sink.js';
import { FakeBrowserHost, FakePublicationHost } from './fakes.js';

/** dns-packet 5 (multicast-dns's codec): what turns a datagram into the packet the handler gets. */
const dnsPacket = createRequire(import.meta.url)('dns-packet') as {
  decode(buf: Buffer): DnsPacket;
  encode(packet: DnsPacket): Buffer;
};

const RUNS = Number(process.env.MUSTER_FUZZ_RUNS ?? 300);
const tried = new Map<string, number>();
const count = (property: string, n = 1): void => void tried.set(property, (tried.get(property) ?? 0) + n);

/** Datagrams dns-packet could not decode (multicast-dns drops those before any handler). */
let undecodable = 0;

afterAll(() => {
  const total = [...tried.values()].reduce((a, b) => a + b, 0);
  console.log(
    `[fuzz] advertiser: ${total} inputs tried (${[...tried].map(([k, v]) => `${k} ${v}`).join(', ')}; ` +
      `${undecodable} of the datagrams did not decode)`,
  );
});

// ---- independent statements of what a valid advertisement field is (DESIGN "Discovery") ----
const LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const isLabel = (s: string): boolean => s.length >= 1 && s.length <= 63 && LABEL.test(s);
const isFp = (s: string): boolean =>
  /^[A-Za-z0-9_-]{43}$/.test(s) && Buffer.from(s, 'base64url').toString('base64url') === s;

function checkRegistrarAdvert(a: RegistrarAdvert): void {
  expect(a.v).toBe(1);
  expect(['main', 'cluster']).toContain(a.role);
  expect(isLabel(a.cluster)).toBe(true);
  expect(isFp(a.ca)).toBe(true);
  expect(['closed', 'token', 'open']).toContain(a.mode);
  if (a.id !== undefined) expect(/^[a-z0-9-]{1,63}$/.test(a.id)).toBe(true);
  expect(() => registrarTxt(a)).not.toThrow(); // what a node acts on re-encodes
}

function checkNodeAdvert(a: NodeAdvert): void {
  expect(a.v).toBe(1);
  expect(isLabel(a.name)).toBe(true);
  expect(isLabel(a.role)).toBe(true);
  expect(a.cluster === '' || isLabel(a.cluster)).toBe(true);
  expect(isFp(a.key)).toBe(true);
  expect(['ready', 'registered']).toContain(a.state);
  expect(() => nodeTxt(a)).not.toThrow(); // what the registrar records re-encodes
}

function checkTxtMap(m: TxtMap): void {
  expect(m.size).toBeLessThanOrEqual(TXT_DECODE_MAX_ENTRIES);
  for (const [k, v] of m) {
    expect(k.length).toBeGreaterThanOrEqual(1);
    expect(Buffer.byteLength(k, 'latin1')).toBeLessThanOrEqual(TXT_ENTRY_MAX_BYTES);
    expect(/^[\x20-\x3c\x3e-\x7e]+$/.test(k)).toBe(true); // printable ASCII without '=' (§6.4)
    expect(k).toBe(k.toLowerCase());
    if (v !== null) expect(typeof v).toBe('string');
  }
  const r = validateRegistrarTxt(m);
  if (r.ok) checkRegistrarAdvert(r.value);
  else expect(r.reason.length).toBeGreaterThan(0);
  const n = validateNodeTxt(m);
  if (n.ok) checkNodeAdvert(n.value);
  else expect(n.reason.length).toBeGreaterThan(0);
}

// ---- arbitraries ----
const fp = (seed: string): string => createHash('sha256').update(seed).digest('base64url');
const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?$/);
const fingerprint = fc.string({ maxLength: 8 }).map(fp);
const registrarAdvert: fc.Arbitrary<RegistrarAdvert> = fc.record(
  {
    v: fc.constant(1 as const),
    role: fc.constantFrom('main' as const, 'cluster' as const),
    cluster: label,
    ca: fingerprint,
    mode: fc.constantFrom('closed' as const, 'token' as const, 'open' as const),
    id: fc.stringMatching(/^[a-z0-9-]{1,63}$/),
  },
  { requiredKeys: ['v', 'role', 'cluster', 'ca', 'mode'] },
);
const nodeAdvert: fc.Arbitrary<NodeAdvert> = fc.record({
  v: fc.constant(1 as const),
  name: label,
  role: label,
  cluster: fc.oneof(fc.constant(''), label),
  key: fingerprint,
  state: fc.constantFrom('ready' as const, 'registered' as const),
});
/** Strings an attacker would try in a field: near misses of every rule, and anything at all. */
const hostileString = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.constantFrom(
    '',
    ' ',
    '1',
    '2',
    '01',
    '1 ',
    'main',
    'MAIN',
    'open',
    'opened',
    '-a',
    'a-',
    'A'.repeat(43),
  ),
  fc.constantFrom('A'.repeat(42) + 'F', fp('x') + '=', fp('x').slice(1), 'a'.repeat(64), 'ä', 'a\u0000b'),
  fingerprint.map((f) => f.replace(/.$/, '/')),
  label.map((l) => l.toUpperCase()),
  label.map((l) => `${l}.evil`),
);
const knownKey = fc.constantFrom('v', 'role', 'cluster', 'ca', 'mode', 'id', 'name', 'key', 'state');
/** A received TXT as dns-packet gives it: a list of strings, each up to 255 bytes, or nothing sane. */
const rawTxt = fc.oneof(
  fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 80 }).map((l) => l.map((u) => Buffer.from(u))),
  fc
    .array(fc.tuple(fc.oneof(knownKey, fc.string({ maxLength: 12 })), fc.option(hostileString)), {
      maxLength: 20,
    })
    .map((kvs) => kvs.map(([k, v]) => Buffer.from(v === null ? k : `${k}=${v}`, 'utf8'))),
);

describe('fuzz: the TXT codec and the advertisement validators', () => {
  it('decoding arbitrary TXT data never throws and validation never accepts an out-of-bound value', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          rawTxt,
          fc.uint8Array({ maxLength: 10_000 }).map((u) => Buffer.from(u)), // wire-format RDATA
          fc.anything(),
        ),
        (raw) => {
          count('TXT decode');
          const m = decodeTxt(raw as Buffer[]);
          checkTxtMap(m);
        },
      ),
      { numRuns: RUNS * 3 },
    );
  });

  it('a valid advertisement with one field replaced by a hostile value validates only if the value obeys the rule', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          registrarAdvert.map((a) => registrarTxt(a)),
          nodeAdvert.map((a) => nodeTxt(a)),
        ),
        knownKey,
        fc.option(hostileString),
        (txt, key, value) => {
          count('TXT field mutation');
          const m = new Map<string, string | null>(Object.entries(txt));
          m.set(key, value);
          checkTxtMap(m); // the accepted adverts are checked field by field against the rules above
          // and through the wire: what the encoder accepts decodes to what validates the same way
          const entries = Object.fromEntries([...m].filter(([, v]) => v !== null)) as Record<string, string>;
          let raw: Buffer[];
          try {
            raw = encodeTxt(entries);
          } catch (e) {
            expect(e).toBeInstanceOf(TxtEncodeError);
            return;
          }
          checkTxtMap(decodeTxt(raw));
        },
      ),
      { numRuns: RUNS * 3 },
    );
  });

  it('encode then decode is the identity; the encoder refuses exactly what is over a bound', () => {
    const key = fc
      .string({ minLength: 1, maxLength: TXT_KEY_MAX_CHARS, unit: 'binary-ascii' })
      .filter((k) => /^[\x20-\x3c\x3e-\x7e]+$/.test(k));
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(key, fc.string({ maxLength: 300, unit: 'grapheme' })), {
          maxLength: 12,
          selector: ([k]) => k.toLowerCase(),
        }),
        (pairs) => {
          count('TXT round trip');
          const txt = Object.fromEntries(pairs);
          const sizes = pairs.map(([k, v]) => Buffer.byteLength(`${k}=${v}`, 'utf8'));
          const over =
            sizes.some((n) => n > TXT_ENTRY_MAX_BYTES) ||
            sizes.reduce((a, n) => a + n + 1, 0) > TXT_RECORD_MAX_BYTES;
          let raw: Buffer[];
          try {
            raw = encodeTxt(txt);
          } catch (e) {
            expect(e).toBeInstanceOf(TxtEncodeError);
            expect(over).toBe(true);
            return;
          }
          expect(over).toBe(false);
          const want = new Map(pairs.map(([k, v]) => [k.toLowerCase(), v]));
          expect(decodeTxt(raw)).toEqual(want);
          // the same through wire-format RDATA (length-prefixed strings)
          const wire = Buffer.concat(raw.map((b) => Buffer.concat([Buffer.from([b.length]), b])));
          expect(decodeTxt(splitTxtRdata(wire))).toEqual(want);
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it("muster's own advertisements round-trip through TXT and validate as themselves", () => {
    fc.assert(
      fc.property(registrarAdvert, nodeAdvert, (r, n) => {
        count('advert round trip');
        const rv = validateRegistrarTxt(decodeTxt(encodeTxt(registrarTxt(r))));
        expect(rv).toEqual({ ok: true, value: r });
        const nv = validateNodeTxt(decodeTxt(encodeTxt(nodeTxt(n))));
        expect(nv).toEqual({ ok: true, value: n });
      }),
      { numRuns: RUNS },
    );
  });
});

// ---- received packets ----
const JOIN = SERVICE_TYPES['muster-join'];
const REG = SERVICE_TYPES.muster;
const LAN: Source = { address: '198.18.0.11', port: 5353 };

/** Valid packets to mutate: announcements of both kinds, a goodbye, a query, a probe. */
const seeds: Buffer[] = (() => {
  const node = buildRecords({
    kind: 'muster-join',
    name: 'node-1',
    host: 'node-1.local',
    port: 9,
    txt: nodeTxt({ v: 1, name: 'node-1', role: 'worker', cluster: '', key: fp('k'), state: 'ready' }),
    addresses: ['198.18.0.11'],
  });
  const reg = buildRecords({
    kind: 'muster',
    name: 'r-1',
    host: 'r-1.local',
    port: 8443,
    txt: registrarTxt({ v: 1, role: 'main', cluster: 'edge', ca: fp('ca'), mode: 'open', id: 'r-1' }),
    addresses: ['198.18.0.12'],
  });
  const rec = (r: typeof node): DnsRecord[] => [r.ptr, r.srv, r.txt, ...r.a, r.meta];
  return [
    { type: 'response', answers: rec(node) },
    { type: 'response', answers: [reg.ptr], additionals: [reg.srv, reg.txt, ...reg.a] },
    { type: 'response', answers: rec(node).map((r) => ({ ...r, ttl: 0 })) },
    { type: 'query', questions: [{ name: JOIN, type: 'PTR' }], answers: [node.ptr] },
    { type: 'query', questions: [{ name: reg.fqdn, type: 'ANY' }], authorities: [reg.srv, reg.txt] },
  ].map((p) => dnsPacket.encode(p as DnsPacket));
})();

/** A world to receive packets: a browser of each type, one announced publication (which can conflict). */
function world() {
  const bhost = new FakeBrowserHost(() => 0.5);
  const clock = bhost.clock;
  const discovered: Discovered[] = [];
  const onService = (s: Discovered): void => void discovered.push(s);
  const browsers = [JOIN, REG].map(
    (t) => new Browser(bhost, t, { up: onService, update: onService, down: () => undefined }),
  );
  for (const b of browsers) b.start();
  const phost = new FakePublicationHost();
  const pub = phost.add(
    new PublicationMachine(phost, {
      kind: 'muster',
      name: 'r-1',
      host: 'r-1.local',
      port: 8443,
      txt: registrarTxt({ v: 1, role: 'main', cluster: 'edge', ca: fp('ca'), mode: 'open' }),
      addresses: ['198.18.0.10'],
    }),
  );
  pub.start(false);
  const failures: string[] = [];
  const unicast: DnsPacket[] = [];
  const host: ReceiverHost = {
    log: silentLogger,
    onLink: (a) => a.startsWith('198.18.0.'),
    isOwnAddress: (a) => a === '198.18.0.10',
    publications: () => phost.pubs,
    browsers: () => browsers,
    answer: () => undefined,
    publishedRecords: () => phost.registry,
    sendUnicast: (p) => void unicast.push(p),
    handlerFailed: (what, err) => void failures.push(`${what}: ${String(err)}`),
  };
  return { r: new Receiver(host), clock, discovered, failures, unicast, browsers };
}

function checkDiscovered(s: Discovered): void {
  expect([JOIN, REG]).toContain(s.type);
  expect(s.fqdn.toLowerCase().endsWith(`.${s.type}`)).toBe(true);
  expect(s.name).toBe(s.fqdn.slice(0, s.fqdn.length - s.type.length - 1));
  const nameBytes = Buffer.byteLength(s.name, 'utf8');
  expect(nameBytes >= 1 && nameBytes <= 63).toBe(true);
  expect(Number.isInteger(s.port) && s.port >= 1 && s.port <= 65535).toBe(true);
  expect(s.host.length >= 1 && s.host.length <= 255).toBe(true);
  expect(s.addresses.length >= 1 && s.addresses.length <= MAX_ADDRESSES_PER_HOST).toBe(true);
  for (const a of s.addresses) expect(isIP(a), a).not.toBe(0); // callers put them into URLs
  checkTxtMap(s.txt);
}

/** One datagram through the handler as multicast-dns would hand it over; undecodable ones are dropped there. */
function receive(w: ReturnType<typeof world>, bytes: Buffer, from: Source): void {
  let packet: DnsPacket;
  try {
    packet = dnsPacket.decode(bytes);
  } catch {
    undecodable++;
    return;
  }
  w.r.onPacket(packet, from);
}

function checkWorld(w: ReturnType<typeof world>): void {
  expect(w.failures).toEqual([]);
  for (const s of w.discovered) checkDiscovered(s);
  for (const b of w.browsers) expect(b.list().length).toBeLessThanOrEqual(MAX_ENTRIES);
  for (const p of w.unicast) expect(() => dnsPacket.encode(p)).not.toThrow(); // a legacy answer can be sent
}

const source = fc.oneof(
  { weight: 6, arbitrary: fc.constant(LAN) },
  { weight: 1, arbitrary: fc.constant({ address: '198.18.0.11', port: 40_000 }) }, // legacy query / bad port
  { weight: 1, arbitrary: fc.constant({ address: '198.18.1.10', port: 5353 }) }, // off the link
  { weight: 1, arbitrary: fc.constant({ address: '198.18.0.10', port: 5353 }) }, // our own loopback
);
const mutation = fc.record({
  seed: fc.nat(seeds.length - 1),
  edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 12 }),
  cut: fc.option(fc.nat()),
  from: source,
  // mostly seconds; sometimes past every TTL (75 minutes)
  wait: fc.oneof({ weight: 4, arbitrary: fc.nat(10_000) }, { weight: 1, arbitrary: fc.nat(5_000_000) }),
});

describe('fuzz: received mDNS packets (the handler behind the socket)', () => {
  it('arbitrary bytes never make the handler throw or discover a malformed service', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 600 }), source), {
          minLength: 1,
          maxLength: 8,
        }),
        (datagrams) => {
          const w = world();
          for (const [bytes, from] of datagrams) {
            count('raw datagrams');
            receive(w, Buffer.from(bytes), from);
            w.clock.advance(1000);
          }
          checkWorld(w);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('mutated valid packets never make the handler throw or discover a malformed service', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 6 }), (list) => {
        const w = world();
        for (const m of list) {
          count('mutated packets');
          const buf = Buffer.from(seeds[m.seed]!);
          for (const [at, byte] of m.edits) buf[at % buf.length] = byte;
          receive(w, m.cut === null ? buf : buf.subarray(0, m.cut % (buf.length + 1)), m.from);
          w.clock.advance(m.wait); // expiry, re-queries and eviction run in between
        }
        checkWorld(w);
      }),
      { numRuns: RUNS },
    );
  });

  it('decoded packets with hostile record contents never make the handler throw', () => {
    const names = fc.oneof(
      fc.constantFrom(JOIN, REG, `node-1.${JOIN}`, `r-1.${REG}`, 'node-1.local', 'r-1.local', ''),
      fc.string({ maxLength: 70 }).map((s) => `${s}.${JOIN}`),
      fc.string({ maxLength: 300 }),
    );
    const record = fc.record({
      name: names,
      type: fc.constantFrom('PTR', 'SRV', 'TXT', 'A', 'AAAA', 'ANY', 'NSEC', 'CNAME'),
      ttl: fc.oneof(fc.integer({ min: -5, max: 2 ** 32 }), fc.double(), fc.constant(undefined)),
      flush: fc.boolean(),
      data: fc.oneof(
        names,
        fc.constantFrom('198.18.0.11', '198.18.0.256', 'fe80::1', 'evil.com/#', ''),
        fc.record({
          port: fc.oneof(fc.integer(), fc.double(), fc.string()),
          target: fc.oneof(names, fc.integer()),
        }),
        fc.array(
          fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
          { maxLength: 10 },
        ),
        rawTxt,
        fc.anything(),
      ),
    });
    const packet = fc.record({
      type: fc.constantFrom('query' as const, 'response' as const),
      id: fc.nat(65535),
      questions: fc.array(
        fc.record({ name: names, type: fc.constantFrom('PTR', 'SRV', 'TXT', 'A', 'ANY') }),
        {
          maxLength: 4,
        },
      ),
      answers: fc.array(record, { maxLength: 8 }),
      authorities: fc.array(record, { maxLength: 3 }),
      additionals: fc.array(record, { maxLength: 8 }),
    });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(packet, source, fc.nat(200_000)), { minLength: 1, maxLength: 6 }),
        (list) => {
          const w = world();
          for (const [p, from, wait] of list) {
            count('structured packets');
            w.r.onPacket(p as DnsPacket, from);
            w.clock.advance(wait);
            const res = legacyResponse(p as DnsPacket, []);
            expect(res).toBeUndefined(); // nothing published, nothing said
          }
          expect(w.failures).toEqual([]);
          for (const s of w.discovered) checkDiscovered(s);
        },
      ),
      { numRuns: RUNS },
    );
  });
});
