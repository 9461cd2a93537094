// One publication's life (probe, announce, TXT update, conflict, goodbye) on a ManualClock with a
// recording sink: what goes on the wire, and when, without a socket or a sleep.
import { describe, expect, it } from 'vitest';
import { PublicationMachine } from '../../src/advertiser/publication.js';
import { buildRecords, type DnsRecord, type PublicationSpec } from '../../src/advertiser/records.js';
import { TxtEncodeError, decodeTxt } from '../../src/advertiser/txt.js';
import { isMusterError } from '../../src/common/errors.js';
import { FakePublicationHost, settle } from './fakes.js';

const spec: PublicationSpec = {
  kind: 'muster-join',
  name: 'node1',
  host: 'node1.local',
  port: 9000,
  txt: { v: '1', state: 'ready' },
  addresses: ['198.18.0.10'],
};
const OTHER = '198.18.0.11';

function setup(s: PublicationSpec = spec, host = new FakePublicationHost()) {
  const pub = host.add(new PublicationMachine(host, s));
  let announced: string = 'pending';
  pub.whenAnnounced().then(
    () => (announced = 'resolved'),
    (e: Error & { code?: string }) => (announced = `rejected ${e.code}`),
  );
  return { host, pub, sink: host.sink, clock: host.clock, announced: () => announced };
}

const stateOf = (records: DnsRecord[] | undefined): string | null | undefined =>
  decodeTxt(records?.find((r) => r.type === 'TXT')?.data as Buffer[]).get('state');

describe('PublicationMachine: probing, then announcing (RFC 6762 §8.1, §8.3)', () => {
  it('probes three times, then announces at once and at +1 s and +3 s; queries are answered from then on', async () => {
    const { pub, sink, clock, host, announced } = setup();
    pub.start(true);
    clock.advance(749);
    expect(pub.state).toBe('probing');
    expect(host.registry).toEqual([]); // nobody is answered from records not yet ours
    clock.advance(1);
    expect(pub.state).toBe('announced');
    expect(host.registry).toEqual(pub.allRecords());
    await settle();
    expect(announced()).toBe('resolved');
    clock.advance(60_000);
    expect(sink.sent.map((s) => [s.t, s.what])).toEqual([
      [0, 'probe'],
      [250, 'probe'],
      [500, 'probe'],
      [750, 'announcement'],
      [1750, 'announcement'],
      [3750, 'announcement'],
    ]);
    const a = sink.sent[3]?.packet.answers ?? [];
    expect(a.map((r) => `${r.type}${r.flush ? '+flush' : ''}`)).toEqual([
      'PTR',
      'SRV+flush',
      'TXT+flush',
      'A+flush',
      'PTR',
    ]);
  });

  it('without probing, announces at once', () => {
    const { pub, sink } = setup();
    pub.start(false);
    expect(pub.state).toBe('announced');
    expect(sink.sent.map((s) => [s.t, s.what])).toEqual([[0, 'announcement']]);
  });
});

describe('PublicationMachine: TXT update (RFC 6762 §8.4)', () => {
  it('is a re-announcement at once with the cache-flush bit on the new TXT; the only goodbye is for the old TXT data', () => {
    const { pub, sink, clock, host } = setup();
    pub.start(false);
    clock.advance(10_000); // the first announcements are over
    const before = sink.sent.length;
    pub.updateTxt({ v: '1', state: 'registered' });
    clock.advance(60_000);
    const after = sink.sent.slice(before);
    expect(after.map((s) => [s.t, s.what])).toEqual([
      [10_000, 'announcement'],
      [11_000, 'announcement'],
    ]);
    for (const s of after) {
      const txt = s.packet.answers?.find((r) => r.type === 'TXT');
      expect(txt?.flush).toBe(true);
      expect(stateOf(s.packet.answers)).toBe('registered');
    }
    // No goodbye for the service (PTR, SRV, A): browsers must see an update, not the service leaving.
    // Only the replaced TXT rdata gets one, so that no cache keeps it beside the new one.
    const byes = after.map((s) => (s.packet.answers ?? []).filter((r) => r.ttl === 0));
    for (const b of byes) expect(b.map((r) => [r.type, stateOf([r])])).toEqual([['TXT', 'ready']]);
    expect(stateOf(host.registry)).toBe('registered'); // queries are answered with the new TXT
    expect(pub.state).toBe('announced');
  });

  it('during the first announcements: the stale ones still due are not sent', () => {
    const { pub, sink, clock } = setup();
    pub.start(false);
    clock.advance(500);
    pub.updateTxt({ v: '1', state: 'registered' });
    clock.advance(60_000);
    expect(sink.sent.map((s) => [s.t, stateOf(s.packet.answers)])).toEqual([
      [0, 'ready'],
      [500, 'registered'],
      [1500, 'registered'],
    ]);
  });

  it('the old TXT data gets a goodbye in answers too: no cache keeps it beside the new one (§10.1, §10.2)', () => {
    const { pub, clock, host } = setup();
    pub.start(false);
    clock.advance(500); // a cache-flush record 500 ms after `ready` would leave `ready` in RFC caches
    pub.updateTxt({ v: '1', state: 'registered' });
    const txts = host.registry.filter((r) => r.type === 'TXT').map((r) => [stateOf([r]), r.ttl, r.flush]);
    expect(txts).toEqual([
      ['registered', 4500, true],
      ['ready', 0, undefined], // no cache-flush bit: it removes that rdata and nothing else
    ]);
    // the service itself is never said goodbye to
    expect(host.registry.filter((r) => r.ttl === 0 && r.type !== 'TXT')).toEqual([]);
  });

  it('back to an old TXT: the goodbye names the data just replaced, never the current one', () => {
    const { pub, sink, clock } = setup();
    pub.start(false);
    clock.advance(10_000);
    pub.updateTxt({ v: '1', state: 'registered' });
    clock.advance(10_000);
    const before = sink.sent.length;
    pub.updateTxt({ v: '1', state: 'ready' });
    clock.advance(10_000);
    const after = sink.sent.slice(before);
    expect(after).toHaveLength(2);
    for (const s of after) {
      const txts = (s.packet.answers ?? []).filter((r) => r.type === 'TXT');
      expect(txts.map((r) => [stateOf([r]), r.ttl])).toEqual([
        ['ready', 4500],
        ['registered', 0],
      ]);
    }
  });

  it('during probing: the remaining probes and the announcements carry the new TXT, no extra packet', () => {
    const { pub, sink, clock } = setup();
    pub.start(true);
    clock.advance(0);
    pub.updateTxt({ v: '1', state: 'registered' });
    clock.advance(60_000);
    expect(sink.sent).toHaveLength(6);
    expect(stateOf(sink.sent[0]?.packet.authorities)).toBe('ready');
    expect(sink.sent.slice(1).map((s) => stateOf(s.packet.authorities ?? s.packet.answers))).toEqual(
      Array(5).fill('registered'),
    );
  });

  it('refuses a TXT that cannot be encoded and changes nothing', () => {
    const { pub, sink, clock } = setup();
    pub.start(false);
    expect(() => pub.updateTxt({ 'much-too-long-key': 'x' })).toThrow(TxtEncodeError);
    let err: unknown;
    try {
      pub.updateTxt({ 'a=b': 'x' });
    } catch (e) {
      err = e;
    }
    expect(isMusterError(err, 'MUSTER_ERR_TXT_ENCODE')).toBe(true); // a code of the one registry
    clock.advance(60_000);
    expect(sink.sent.map((s) => stateOf(s.packet.answers))).toEqual(['ready', 'ready', 'ready']);
  });
});

describe('PublicationMachine: name conflicts (RFC 6762 §8.1, §9)', () => {
  const theirs = buildRecords({ ...spec, port: 9001, addresses: [OTHER] });

  it('during probing: reported with the other address, never announced, no goodbye', async () => {
    const { pub, sink, clock, host, announced } = setup();
    pub.start(true);
    clock.advance(250);
    pub.onResponse([theirs.ptr, theirs.srv, theirs.txt], OTHER, false);
    await settle();
    expect(pub.state).toBe('conflict');
    expect(announced()).toBe('rejected MUSTER_ERR_MDNS_NAME_CONFLICT');
    expect(host.errors).toHaveLength(1);
    expect(host.errors[0]?.message).toContain(OTHER);
    expect(isMusterError(host.errors[0], 'MUSTER_ERR_MDNS_NAME_CONFLICT')).toBe(true);
    clock.advance(60_000);
    await pub.stop();
    expect(sink.sent.map((s) => s.what)).toEqual(['probe', 'probe']);
    expect(host.pubs.has(pub)).toBe(false);
  });

  it('once announced: a claim from another host withdraws ours without a goodbye; our own echo does not', () => {
    const { pub, sink, clock, host } = setup();
    pub.start(false);
    pub.onResponse(theirs.a, OTHER, true); // from one of our own addresses: ignored
    expect(pub.state).toBe('announced');
    clock.advance(500);
    pub.onResponse([theirs.srv], OTHER, false);
    expect(pub.state).toBe('conflict');
    expect(host.registry).toEqual([]); // no longer answered
    clock.advance(60_000);
    expect(sink.sent.map((s) => [s.t, s.what])).toEqual([[0, 'announcement']]);
    expect(sink.records().filter((r) => r.ttl === 0)).toEqual([]);
  });
});

describe('PublicationMachine: stop() and goodbyes (RFC 6762 §10.1)', () => {
  it('sends PTR, SRV, TXT, A and the meta PTR with TTL 0 once, and nothing afterwards', async () => {
    const { pub, sink, clock, host } = setup();
    pub.start(false);
    clock.advance(500);
    const p1 = pub.stop();
    expect(pub.stop()).toBe(p1); // idempotent: one goodbye
    await p1;
    clock.advance(60_000);
    expect(sink.sent.map((s) => [s.t, s.what])).toEqual([
      [0, 'announcement'],
      [500, 'goodbye'],
    ]);
    const bye = sink.sent[1]?.packet.answers ?? [];
    expect(bye.map((r) => `${r.type} ${r.name} ${r.ttl}`)).toEqual([
      'PTR _muster-join._tcp.local 0',
      'SRV node1._muster-join._tcp.local 0',
      'TXT node1._muster-join._tcp.local 0',
      'A node1.local 0',
      'PTR _services._dns-sd._udp.local 0',
    ]);
    expect(pub.state).toBe('stopped');
    expect(host.registry).toEqual([]);
  });

  it('keeps the A records and the meta PTR that another live publication still needs', async () => {
    const host = new FakePublicationHost();
    const reg = setup({ ...spec, kind: 'muster', name: 'reg1', host: 'node1.local' }, host);
    const node = setup(spec, host);
    const other = setup({ ...spec, name: 'node2', host: 'node2.local' }, host);
    for (const p of [reg.pub, node.pub, other.pub]) p.start(false);
    await node.pub.stop();
    const bye = host.sink.sent.at(-1)?.packet.answers ?? [];
    // node1.local is still reg1's host; node2 still needs the _muster-join._tcp meta PTR.
    expect(bye.map((r) => r.type)).toEqual(['PTR', 'SRV', 'TXT']);
  });

  it('while probing: nothing to withdraw, nothing sent, whenAnnounced() rejects', async () => {
    const { pub, sink, clock, announced } = setup();
    pub.start(true);
    clock.advance(300);
    await pub.stop();
    await settle();
    clock.advance(60_000);
    expect(sink.sent.map((s) => s.what)).toEqual(['probe', 'probe']);
    expect(announced()).toBe('rejected MUSTER_ERR_MDNS_CLOSED');
    pub.updateTxt({ v: '1', state: 'registered' }); // ignored, no throw
    expect(sink.sent).toHaveLength(2);
  });
});
