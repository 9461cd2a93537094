// The browser cache and the record builder with synthetic packets: no sockets, time passed in.
import { describe, expect, it } from 'vitest';
import {
  BrowseCache,
  MAX_ENTRIES,
  MAX_ENTRIES_PER_SOURCE,
  MAX_TTL_S,
} from '../../src/advertiser/browse-cache.js';
import { Browser } from '../../src/advertiser/browser.js';
import {
  buildRecords,
  checkHostName,
  checkInstanceName,
  conflictsWith,
  goodbye,
  withoutFlush,
  type DnsRecord,
} from '../../src/advertiser/records.js';
import { FakeBrowserHost } from './fakes.js';

const TYPE = '_muster-join._tcp.local';
const src = { address: '198.18.0.10' };
const spec = {
  kind: 'muster-join' as const,
  name: 'node1',
  host: 'node1.local',
  port: 9000,
  txt: { v: '1', state: 'ready' },
  addresses: ['198.18.0.10'],
};
const recs = buildRecords(spec);
const all = (r = recs): DnsRecord[] => [r.ptr, r.srv, r.txt, ...r.a];

describe('buildRecords', () => {
  it('sets cache-flush on the unique records (SRV, TXT, A) and never on PTRs (RFC 6762 §10.2)', () => {
    expect(recs.fqdn).toBe('node1._muster-join._tcp.local');
    expect(recs.ptr).toMatchObject({ name: TYPE, type: 'PTR', data: recs.fqdn });
    expect(recs.ptr.flush).toBeUndefined();
    expect(recs.meta.flush).toBeUndefined();
    expect([recs.srv.flush, recs.txt.flush, recs.a[0]?.flush]).toEqual([true, true, true]);
    expect(recs.srv.data).toMatchObject({ port: 9000, target: 'node1.local' });
    expect(recs.a.map((r) => r.data)).toEqual(['198.18.0.10']); // only the given addresses
    expect(withoutFlush(recs.srv).flush).toBeUndefined();
    expect(goodbye(recs.txt).ttl).toBe(0);
  });

  it('uses RFC 6762 §10 TTLs: 120 s for host records, 75 min for the others', () => {
    expect([recs.srv.ttl, recs.a[0]?.ttl, recs.txt.ttl, recs.ptr.ttl]).toEqual([120, 120, 4500, 4500]);
  });

  it('checks instance and host names', () => {
    expect(checkInstanceName('node-1')).toBeUndefined();
    expect(checkInstanceName('a.b')).toMatch(/'\.'/);
    expect(checkInstanceName('')).toMatch(/1-63/);
    expect(checkInstanceName('x'.repeat(64))).toMatch(/1-63/);
    expect(checkHostName('node1.local')).toBeUndefined();
    expect(checkHostName('node1')).toMatch(/\.local/);
    expect(checkHostName('a.b.local')).toMatch(/\.local/);
  });

  it('detects conflicting claims on our names, ignoring identical data and goodbyes (RFC 6762 §9)', () => {
    const other = buildRecords({ ...spec, port: 9001, addresses: ['198.18.0.11'] });
    expect(conflictsWith(recs, other.srv)).toBe(true);
    expect(conflictsWith(recs, other.a[0]!)).toBe(true);
    expect(conflictsWith(recs, recs.srv)).toBe(false);
    expect(conflictsWith(recs, recs.a[0]!)).toBe(false);
    expect(conflictsWith(recs, goodbye(other.srv))).toBe(false);
    expect(conflictsWith(recs, buildRecords({ ...spec, name: 'node2', host: 'node2.local' }).srv)).toBe(
      false,
    );
    expect(
      conflictsWith(recs, {
        ...recs.srv,
        name: 'NODE1._muster-join._tcp.local',
        data: { port: 9000, target: 'NODE1.local' },
      }),
    ).toBe(false);
  });
});

describe('BrowseCache', () => {
  it('emits up once PTR, SRV and TXT are known, with addresses from the A record', () => {
    const c = new BrowseCache(TYPE);
    const { events } = c.ingest(
      { answers: [recs.ptr], additionals: [recs.srv, recs.txt, ...recs.a] },
      src,
      0,
    );
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      kind: 'up',
      service: {
        name: 'node1',
        host: 'node1.local',
        port: 9000,
        addresses: ['198.18.0.10'],
        referer: '198.18.0.10',
      },
    });
    expect(events[0]?.service.txt.get('state')).toBe('ready');
    expect(c.list()).toHaveLength(1);
  });

  it('asks for what is missing and completes from separate packets (SRV before PTR, TXT later)', () => {
    const c = new BrowseCache(TYPE);
    expect(c.ingest({ answers: [recs.srv] }, src, 0).events).toEqual([]);
    const r = c.ingest({ answers: [recs.ptr] }, src, 10);
    expect(r.events).toEqual([]);
    expect(r.questions).toEqual([
      { name: recs.fqdn, type: 'TXT' },
      { name: 'node1.local', type: 'A' },
    ]);
    const r2 = c.ingest({ answers: [recs.txt] }, src, 20);
    expect(r2.events.map((e) => e.kind)).toEqual(['up']);
    // no A record yet: the packet source stands in, and the A record is asked for
    expect(r2.events[0]?.service.addresses).toEqual(['198.18.0.10']);
    expect(r2.questions).toEqual([{ name: 'node1.local', type: 'A' }]);
  });

  it('a TXT-only announcement (as avahi sends on a change) is an update, not down/up', () => {
    const c = new BrowseCache(TYPE);
    c.ingest({ answers: all() }, src, 0);
    const changed = buildRecords({ ...spec, txt: { v: '1', state: 'registered' } });
    const { events } = c.ingest({ answers: [changed.txt] }, src, 5000);
    expect(events.map((e) => e.kind)).toEqual(['update']);
    expect(events[0]?.service.txt.get('state')).toBe('registered');
    // the same announcement again changes nothing
    expect(c.ingest({ answers: all(changed) }, src, 6000).events).toEqual([]);
  });

  it('an address change is an update; cache-flush drops addresses older than one second (§10.2)', () => {
    const c = new BrowseCache(TYPE);
    c.ingest({ answers: all() }, src, 0);
    const moved = buildRecords({ ...spec, addresses: ['198.18.0.99'] });
    const { events } = c.ingest({ answers: moved.a }, { address: '198.18.0.99' }, 5000);
    expect(events.map((e) => [e.kind, e.service.addresses])).toEqual([['update', ['198.18.0.99']]]);
  });

  it('a goodbye takes the service down after one second (RFC 6762 §10.1), unless it is refreshed', () => {
    const c = new BrowseCache(TYPE);
    c.ingest({ answers: all() }, src, 0);
    c.ingest({ answers: [goodbye(recs.ptr)] }, src, 1000);
    expect(c.expire(1500)).toEqual([]);
    const down = c.expire(2000);
    expect(down.map((e) => [e.kind, e.service.name])).toEqual([['down', 'node1']]);
    expect(c.list()).toEqual([]);

    const c2 = new BrowseCache(TYPE);
    c2.ingest({ answers: all() }, src, 0);
    c2.ingest({ answers: [goodbye(recs.ptr)] }, src, 1000);
    c2.ingest({ answers: all() }, src, 1200);
    expect(c2.expire(2500)).toEqual([]);
  });

  it('expires a service whose PTR TTL ran out', () => {
    const c = new BrowseCache(TYPE);
    c.ingest({ answers: all() }, src, 0);
    expect(c.nextExpiry()).toBe(120_000); // the SRV and A TTL
    expect(c.expire(4_500_000).map((e) => e.kind)).toEqual(['down']);
  });

  it('offers known answers with more than half their TTL left (RFC 6762 §7.1)', () => {
    const c = new BrowseCache(TYPE);
    c.ingest({ answers: all() }, src, 0);
    expect(c.knownAnswers(1000)).toEqual([{ name: TYPE, type: 'PTR', ttl: 4499, data: recs.fqdn }]);
    expect(c.knownAnswers(2_300_000)).toEqual([]);
  });

  it('ignores other service types, malformed SRV and port 0', () => {
    const c = new BrowseCache(TYPE);
    const other = buildRecords({ ...spec, kind: 'muster' });
    expect(c.ingest({ answers: all(other) }, src, 0).events).toEqual([]);
    const bad = { ...recs.srv, data: { port: 0, target: 'x.local' } };
    const weird = { ...recs.srv, data: 'garbage' };
    expect(c.ingest({ answers: [recs.ptr, bad, weird, recs.txt] }, src, 0).events).toEqual([]);
  });

  it('ignores instance names that are not one label of at most 63 bytes (RFC 6763 §4.1.1)', () => {
    const c = new BrowseCache(TYPE);
    const long = `${'x'.repeat(64)}.${TYPE}`;
    c.ingest({ answers: [{ name: TYPE, type: 'PTR', ttl: 4500, data: long }] }, src, 0);
    expect(c.sizes().instances).toBe(0);
  });
});

describe('BrowseCache bounds (issue 8 hole 4)', () => {
  const ptr = (i: number | string, ttl = 4500): DnsRecord => ({
    name: TYPE,
    type: 'PTR',
    ttl,
    data: `n${i}.${TYPE}`,
  });
  const service = (name: string, address: string): DnsRecord[] =>
    all(buildRecords({ ...spec, name, host: `${name}.local`, addresses: [address] }));
  const at = (i: number): { address: string } => ({
    address: `198.18.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`,
  });

  it('caps a claimed TTL at 4,500 s: a PTR "for 136 years" is gone after 75 minutes (ManualClock)', () => {
    const host = new FakeBrowserHost();
    const events: string[] = [];
    const b = new Browser(host, TYPE, {
      up: (s) => events.push(`up ${s.name}`),
      down: (s) => events.push(`down ${s.name}`),
    });
    const forever = service('node1', '198.18.0.10').map((r) => ({ ...r, ttl: 0xffffffff }));
    b.onResponse({ type: 'response', answers: forever }, src);
    expect(events).toEqual(['up node1']);
    expect(b.list()).toHaveLength(1);
    host.clock.advance(MAX_TTL_S * 1000 - 1);
    expect(events).toEqual(['up node1']);
    host.clock.advance(1);
    expect(events).toEqual(['up node1', 'down node1']);
    expect(b.list()).toEqual([]);
    expect(MAX_TTL_S).toBe(4500);
  });

  it('one source address holds at most MAX_ENTRIES_PER_SOURCE instances: its flood evicts only its own', () => {
    const c = new BrowseCache(TYPE);
    const real = c.ingest({ answers: service('real', '198.18.0.20') }, { address: '198.18.0.20' }, 0);
    expect(real.events.map((e) => e.kind)).toEqual(['up']);
    const flooder = { address: '198.18.0.66' };
    for (let i = 0; i < 10_000; i += 100) {
      const answers: DnsRecord[] = [];
      for (let j = i; j < i + 100; j++) answers.push(ptr(j));
      c.ingest({ answers }, flooder, 1);
    }
    expect(c.sizes().instances).toBe(MAX_ENTRIES_PER_SOURCE + 1);
    expect(c.list().map((s) => s.name)).toEqual(['real']);
    // the flooder keeps its latest names, not its first ones
    const known = c.knownAnswers(1).map((r) => String(r.data));
    expect(known).toContain(`n9999.${TYPE}`);
    expect(known).not.toContain(`n0.${TYPE}`);
    // and the same bound holds for host names (A records)
    const a: DnsRecord[] = [];
    for (let i = 0; i < 1000; i++) a.push({ name: `h${i}.local`, type: 'A', ttl: 120, data: '198.18.0.66' });
    c.ingest({ answers: a }, flooder, 2);
    expect(c.sizes().hosts).toBeLessThanOrEqual(MAX_ENTRIES_PER_SOURCE + 1);
  });

  it('beyond MAX_ENTRIES the least recently heard is evicted, never the newcomer refused', () => {
    const c = new BrowseCache(TYPE);
    const first = c.ingest({ answers: service('first', '198.18.0.20') }, { address: '198.18.0.20' }, 0);
    const kept = c.ingest({ answers: service('kept', '198.18.0.21') }, { address: '198.18.0.21' }, 0);
    expect([...first.events, ...kept.events].map((e) => e.kind)).toEqual(['up', 'up']);
    // A flood from many addresses (each under the per-source bound) fills the cache...
    const downs: string[] = [];
    for (let i = 0; i < MAX_ENTRIES * 2; i++) {
      // ...while `kept` is heard again now and then (a live service answers the browser's queries)
      if (i % 500 === 0) c.ingest({ answers: service('kept', '198.18.0.21') }, { address: '198.18.0.21' }, i);
      const r = c.ingest({ answers: [ptr(i)] }, at(i), i);
      downs.push(...r.events.filter((e) => e.kind === 'down').map((e) => e.service.name));
    }
    expect(c.sizes().instances).toBe(MAX_ENTRIES);
    expect(downs).toEqual(['first']); // evicted, and told: its 'down' goes to the handlers
    expect(c.list().map((s) => s.name)).toEqual(['kept']);
    // a service heard after the flood is taken (the old cache refused every newcomer once full)
    const late = c.ingest({ answers: service('late', '198.18.0.22') }, { address: '198.18.0.22' }, 5000);
    expect(late.events.map((e) => `${e.kind} ${e.service.name}`)).toEqual(['up late']);
    expect(c.sizes().instances).toBe(MAX_ENTRIES);
  });
});
