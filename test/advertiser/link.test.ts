// The link check (issue 8 hole 1, RFC 6762 §5.5, §6, §6.7, §11) and the wait for an address at boot
// (issue 8 bugs), without a socket: interface tables in, verdicts out, time on a ManualClock.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import {
  ADDRESS_POLL_MS,
  LinkWatch,
  linkOf,
  onSubnet,
  packetVerdict,
  parseIPv4,
  type InterfaceTable,
} from '../../src/advertiser/link.js';
import { PublicationMachine } from '../../src/advertiser/publication.js';
import { FakePublicationHost } from './fakes.js';

const lo = { address: '127.0.0.1', family: 'IPv4', internal: true, cidr: '127.0.0.1/8' };
const eth0 = { address: '198.18.0.10', family: 'IPv4', internal: false, cidr: '198.18.0.10/24' };
const eth1 = { address: '10.1.2.3', family: 'IPv4', internal: false, cidr: '10.1.2.3/16' };
const v6 = { address: 'fe80::1', family: 'IPv6', internal: false, cidr: 'fe80::1/64' };
const table: InterfaceTable = { lo: [lo], eth0: [eth0, v6], eth1: [eth1] };

/** A registrar's publication (r-1) on a fake host, with these addresses. */
const publication = (host: FakePublicationHost, addresses: string[]): PublicationMachine =>
  host.add(
    new PublicationMachine(host, {
      kind: 'muster',
      name: 'r-1',
      host: 'r-1.local',
      port: 8443,
      txt: { v: '1' },
      addresses,
    }),
  );

describe('the link of an mDNS socket', () => {
  it('parses dotted quads only', () => {
    expect(parseIPv4('198.18.0.10')).toBe(((198 * 256 + 18) * 256 + 0) * 256 + 10);
    expect(parseIPv4('::ffff:198.18.0.10')).toBe(parseIPv4('198.18.0.10'));
    for (const bad of ['256.0.0.1', '1.2.3', '1.2.3.4.5', 'fe80::1', '', ' 1.2.3.4', '1.2.3.4 '])
      expect(parseIPv4(bad), bad).toBeUndefined();
  });

  it('is every non-loopback IPv4 subnet, or only the --interface one', () => {
    const all = linkOf(table);
    expect(all.addresses).toEqual(['198.18.0.10', '10.1.2.3']);
    const on = (a: string): boolean => onSubnet(all.subnets, a);
    expect(['198.18.0.1', '198.18.0.254', '10.1.200.9'].map(on)).toEqual([true, true, true]);
    // the far subnet, loopback (never on a link), anything not IPv4
    expect(['198.18.1.10', '127.0.0.1', '10.2.0.1', 'fe80::2', 'garbage'].map(on)).toEqual([
      false,
      false,
      false,
      false,
      false,
    ]);

    const one = linkOf(table, '198.18.0.10');
    expect(one.addresses).toEqual(['198.18.0.10']);
    expect(onSubnet(one.subnets, '198.18.0.99')).toBe(true);
    expect(onSubnet(one.subnets, '10.1.2.4')).toBe(false); // another interface of the host: not served
    expect(linkOf(table, '198.18.0.77')).toEqual({ addresses: [], subnets: [] }); // not (yet) configured
  });

  it('takes the prefix from the netmask when there is no cidr, and /32 when neither', () => {
    const t: InterfaceTable = {
      a: [{ address: '192.0.2.7', family: 'IPv4', internal: false, netmask: '255.255.255.128' }],
      b: [{ address: '203.0.113.9', family: 4, internal: false }],
    };
    const { subnets } = linkOf(t);
    expect(onSubnet(subnets, '192.0.2.100')).toBe(true);
    expect(onSubnet(subnets, '192.0.2.200')).toBe(false);
    expect(onSubnet(subnets, '203.0.113.9')).toBe(true);
    expect(onSubnet(subnets, '203.0.113.8')).toBe(false);
  });

  it('drops what is off the link, and responses not from 5353; a query from another port is legacy', () => {
    const onLink = (a: string): boolean => a.startsWith('198.18.0.');
    const v = (kind: 'query' | 'response', address: string, port: number): string =>
      packetVerdict(kind, { address, port }, onLink);
    expect(v('response', '198.18.0.11', 5353)).toBe('accept');
    expect(v('query', '198.18.0.11', 5353)).toBe('accept');
    expect(v('response', '198.18.1.10', 5353)).toBe('off-link'); // §11
    expect(v('query', '198.18.1.10', 5353)).toBe('off-link'); // §5.5
    expect(v('query', '198.18.1.10', 40000)).toBe('off-link');
    expect(v('response', '198.18.0.11', 40000)).toBe('bad-port'); // §6
    expect(v('query', '198.18.0.11', 40000)).toBe('legacy-query'); // §6.7
  });
});

describe('LinkWatch: the interfaces on the injected clock', () => {
  it('reads at start, then every 2 s; reports an address that appears, moves or goes', () => {
    const clock = new ManualClock();
    let now: InterfaceTable = { lo: [lo] };
    const changes: string[][] = [];
    const w = new LinkWatch(
      { clock },
      () => now,
      undefined,
      (a) => changes.push([...a]),
    );
    w.start();
    expect(w.addresses).toEqual([]);
    expect(w.onLink('198.18.0.11')).toBe(false);
    clock.advance(10_000);
    expect(changes).toEqual([]); // nothing changed, nothing said

    now = { lo: [lo], eth0: [eth0] };
    clock.advance(ADDRESS_POLL_MS - 1);
    expect(w.addresses).toEqual([]);
    clock.advance(1);
    expect(changes).toEqual([['198.18.0.10']]);
    expect(w.onLink('198.18.0.11')).toBe(true);

    now = { lo: [lo], eth0: [{ ...eth0, address: '198.18.0.20', cidr: '198.18.0.20/24' }] };
    clock.advance(ADDRESS_POLL_MS);
    now = { lo: [lo] };
    clock.advance(ADDRESS_POLL_MS);
    expect(changes).toEqual([['198.18.0.10'], ['198.18.0.20'], []]);
    expect(w.onLink('198.18.0.11')).toBe(false);

    w.stop();
    now = { eth0: [eth0] };
    clock.advance(60_000);
    expect(changes).toHaveLength(3);
  });

  it('with --interface, waits for that address only', () => {
    const clock = new ManualClock();
    let now: InterfaceTable = { eth1: [eth1] };
    const changes: string[][] = [];
    const w = new LinkWatch(
      { clock },
      () => now,
      '198.18.0.10',
      (a) => changes.push([...a]),
    );
    w.start();
    clock.advance(ADDRESS_POLL_MS * 3);
    expect(changes).toEqual([]);
    expect(w.onLink('10.1.2.4')).toBe(false);
    now = { eth1: [eth1], eth0: [eth0] };
    clock.advance(ADDRESS_POLL_MS);
    expect(changes).toEqual([['198.18.0.10']]);
  });

  it('keeps what it had when reading the interfaces fails, and tries again', () => {
    const clock = new ManualClock();
    let fail = false;
    const errors: unknown[] = [];
    const w = new LinkWatch(
      { clock },
      () => {
        if (fail) throw new Error('uv_interface_addresses');
        return table;
      },
      undefined,
      () => undefined,
      ADDRESS_POLL_MS,
      (e) => errors.push(e),
    );
    w.start();
    fail = true;
    clock.advance(ADDRESS_POLL_MS * 2);
    expect(errors).toHaveLength(2);
    expect(w.addresses).toEqual(['198.18.0.10', '10.1.2.3']);
    expect(w.onLink('198.18.0.11')).toBe(true);
  });
});

describe('no address at boot (issue 8: `muster registrar` must not exit when the network is not up)', () => {
  it('the publication waits, sending nothing, and probes within one poll of the address appearing', () => {
    const host = new FakePublicationHost();
    const clock = host.clock;
    let now: InterfaceTable = { lo: [lo] };
    const w = new LinkWatch(
      { clock },
      () => now,
      undefined,
      (a) => pub.setAddresses(a),
    );
    w.start();
    const pub = publication(host, [...w.addresses]);
    pub.start(true);
    expect(pub.state).toBe('waiting');
    clock.advance(30_000);
    expect(host.sink.sent).toEqual([]); // no probe into a network that is not there
    expect(host.registry).toEqual([]);

    now = { lo: [lo], eth0: [eth0] }; // DHCP answers just after the poll at +30 s
    const t0 = 30_000;
    clock.advance(10_000);
    expect(pub.state).toBe('announced');
    const times = host.sink.sent.map((s) => [s.what, s.t - t0]);
    // the next poll (+32 s) starts the probes (§8.1; this host's random() makes the first wait 0 ms)
    expect(times.slice(0, 4)).toEqual([
      ['probe', 2000],
      ['probe', 2250],
      ['probe', 2500],
      ['announcement', 2750],
    ]);
    const a = host.sink.sent[3]?.packet.answers?.filter((r) => r.type === 'A').map((r) => r.data);
    expect(a).toEqual(['198.18.0.10']);
  });

  it('an announced publication whose address changes re-announces its A record with cache-flush', () => {
    const host = new FakePublicationHost();
    const pub = publication(host, ['198.18.0.10']);
    pub.start(false);
    host.clock.advance(10_000);
    const before = host.sink.sent.length;
    pub.setAddresses(['198.18.0.10']); // no change: nothing sent
    expect(host.sink.sent.length).toBe(before);
    pub.setAddresses(['198.18.0.20']);
    host.clock.advance(10_000);
    const sent = host.sink.sent.slice(before);
    expect(sent.length).toBeGreaterThan(0);
    const a = sent[0]?.packet.answers?.find((r) => r.type === 'A');
    expect(a).toMatchObject({ data: '198.18.0.20', flush: true });
    expect(host.registry.filter((r) => r.type === 'A').map((r) => r.data)).toEqual(['198.18.0.20']);
  });

  it('stop() while waiting sends nothing and rejects whenAnnounced', async () => {
    const host = new FakePublicationHost();
    const pub = publication(host, []);
    pub.start(true);
    const settled = pub.whenAnnounced().then(
      () => 'resolved',
      (e: { code?: string }) => e.code,
    );
    await pub.stop();
    pub.setAddresses(['198.18.0.10']);
    host.clock.advance(10_000);
    expect(pub.state).toBe('stopped');
    expect(host.sink.sent).toEqual([]);
    expect(await settled).toBe('MUSTER_ERR_MDNS_CLOSED');
  });
});
