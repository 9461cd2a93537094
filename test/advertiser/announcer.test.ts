// RFC 6762 §8.3/§8.4/§10.1 announcing as a state machine: ManualClock, a recording sink, no sleeps.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { ANNOUNCE_COUNT, Announcer, UPDATE_ANNOUNCE_COUNT } from '../../src/advertiser/announcer.js';
import { buildRecords, type DnsRecord, type PublicationSpec } from '../../src/advertiser/records.js';
import { decodeTxt } from '../../src/advertiser/txt.js';
import { RecordingSink, settle } from './fakes.js';

const spec: PublicationSpec = {
  kind: 'muster',
  name: 'reg1',
  host: 'reg1.local',
  port: 8443,
  txt: { v: '1', mode: 'closed' },
  addresses: ['198.18.0.2'],
};
const all = (txt: Record<string, string>): DnsRecord[] => {
  const r = buildRecords({ ...spec, txt });
  return [r.ptr, r.srv, r.txt, ...r.a, r.meta];
};

function setup() {
  const clock = new ManualClock();
  const sink = new RecordingSink(clock);
  let records = all({ v: '1', mode: 'closed' });
  const announcer = new Announcer({ clock, sink }, () => records);
  return { clock, sink, announcer, setRecords: (r: DnsRecord[]) => (records = r) };
}

const modeOf = (records: DnsRecord[] | undefined): string | null | undefined =>
  decodeTxt(records?.find((r) => r.type === 'TXT')?.data as Buffer[]).get('mode');

describe('Announcer (RFC 6762 §8.3)', () => {
  it('sends three unsolicited responses at 0 s, 1 s and 3 s (one second apart, then doubling), then stops', async () => {
    const { clock, sink, announcer } = setup();
    let first = false;
    void announcer.announce().then(() => (first = true));
    await settle();
    expect(first).toBe(true); // resolved by the first send, not the whole series
    clock.advance(3_600_000);
    expect(sink.times('announcement')).toEqual([0, 1000, 3000]);
    expect(ANNOUNCE_COUNT).toBe(3);
    for (const s of sink.sent) {
      expect(s.packet.type).toBe('response');
      expect(s.packet.answers?.map((r) => r.type)).toEqual(['PTR', 'SRV', 'TXT', 'A', 'PTR']);
      expect(s.packet.answers?.every((r) => r.ttl! > 0)).toBe(true);
    }
    expect(announcer.running).toBe(false);
  });

  it('each announcement carries the records current when it is sent', () => {
    const { clock, sink, announcer, setRecords } = setup();
    void announcer.announce();
    setRecords(all({ v: '1', mode: 'open' }));
    clock.advance(10_000);
    expect(sink.sent.map((s) => modeOf(s.packet.answers))).toEqual(['closed', 'open', 'open']);
  });
});

describe('Announcer update (RFC 6762 §8.4) and goodbye (§10.1)', () => {
  it('update() replaces a running series with two announcements of the new records and sends no goodbye', () => {
    const { clock, sink, announcer, setRecords } = setup();
    void announcer.announce();
    clock.advance(1500); // announcements at 0 and 1000; the third was due at 3000
    setRecords(all({ v: '1', mode: 'open' }));
    void announcer.update();
    clock.advance(3_600_000);
    expect(sink.times()).toEqual([0, 1000, 1500, 2500]);
    expect(UPDATE_ANNOUNCE_COUNT).toBe(2);
    expect(sink.sent.slice(2).map((s) => modeOf(s.packet.answers))).toEqual(['open', 'open']);
    // The new TXT replaces the old one in caches by the cache-flush bit (§10.2), never by a goodbye.
    expect(sink.sent[2]?.packet.answers?.find((r) => r.type === 'TXT')?.flush).toBe(true);
    expect(sink.records().filter((r) => r.ttl === 0)).toEqual([]);
  });

  it('goodbye() cancels the series and sends the given records once with TTL 0', async () => {
    const { clock, sink, announcer } = setup();
    void announcer.announce();
    const records = all({ v: '1', mode: 'closed' }).slice(0, 3);
    let done = false;
    void announcer.goodbye(records).then(() => (done = true));
    await settle();
    expect(done).toBe(true);
    void announcer.announce(); // nothing after a goodbye
    clock.advance(3_600_000);
    expect(sink.sent.map((s) => [s.t, s.what])).toEqual([
      [0, 'announcement'],
      [0, 'goodbye'],
    ]);
    expect(sink.sent[1]?.packet.answers).toEqual(records.map((r) => ({ ...r, ttl: 0 })));
  });

  it('cancel() stops what is still due', () => {
    const { clock, sink, announcer } = setup();
    void announcer.announce();
    announcer.cancel();
    clock.advance(3_600_000);
    expect(sink.times()).toEqual([0]);
  });
});
