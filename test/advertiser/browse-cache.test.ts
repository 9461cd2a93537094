// The browser cache and the record builder with synthetic packets: no sockets, time passed in.
import { describe, expect, it } from 'vitest';
import { BrowseCache, MAX_ENTRIES } from '../../src/advertiser/browse-cache.js';
import {
  buildRecords,
  checkHostName,
  checkInstanceName,
  conflictsWith,
  goodbye,
  withoutFlush,
  type DnsRecord,
} from '../../src/advertiser/records.js';

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

  it('stays bounded under a flood of instance names', () => {
    const c = new BrowseCache(TYPE);
    const answers: DnsRecord[] = [];
    for (let i = 0; i < MAX_ENTRIES + 500; i++)
      answers.push({ name: TYPE, type: 'PTR', ttl: 4500, data: `n${i}.${TYPE}` });
    c.ingest({ answers }, src, 0);
    expect(c.knownAnswers(0)).toHaveLength(MAX_ENTRIES);
  });
});
