// RFC 6762 §8.1/§8.2 probing as a state machine: ManualClock, a recording sink, no socket, no sleeps.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import {
  PROBE_COUNT,
  PROBE_DEFER_MS,
  PROBE_INTERVAL_MS,
  Prober,
  type ProberEvents,
} from '../../src/advertiser/prober.js';
import { buildRecords, type DnsRecord, type PublicationSpec } from '../../src/advertiser/records.js';
import { RecordingSink } from './fakes.js';

const spec: PublicationSpec = {
  kind: 'muster-join',
  name: 'node1',
  host: 'node1.local',
  port: 9000,
  txt: { v: '1', state: 'ready' },
  addresses: ['198.18.0.10'],
};
const ours = buildRecords(spec);
const theirs = buildRecords({
  ...spec,
  port: 9001,
  txt: { v: '1', state: 'other' },
  addresses: ['198.18.0.11'],
});

function setup(random = 0) {
  const clock = new ManualClock();
  const sink = new RecordingSink(clock);
  const log: string[] = [];
  const conflicts: { hit: DnsRecord; from: string }[] = [];
  const events: ProberEvents = {
    won: () => log.push(`won@${clock.now() - t0}`),
    conflict: (hit, from) => {
      log.push(`conflict@${clock.now() - t0}`);
      conflicts.push({ hit, from });
    },
    deferred: (name) => log.push(`deferred:${name}`),
  };
  const t0 = clock.now();
  let claim = { records: ours, host: spec.host };
  const prober = new Prober({ clock, random: () => random, sink }, () => claim, events);
  return { clock, sink, log, conflicts, prober, setClaim: (c: typeof claim) => (claim = c) };
}

describe('Prober (RFC 6762 §8.1)', () => {
  it('sends three probes 250 ms apart after the random 0-250 ms delay, then wins 250 ms after the last', () => {
    const { clock, sink, log, prober } = setup(0.4); // 0.4 * 250 = 100 ms
    prober.start();
    clock.advance(99);
    expect(sink.sent).toEqual([]);
    clock.advance(10_000);
    expect(sink.times('probe')).toEqual([100, 350, 600]);
    expect(sink.sent).toHaveLength(PROBE_COUNT);
    expect(log).toEqual(['won@850']);
    expect(prober.state).toBe('won');
  });

  it('draws the first delay from random() over 0-250 ms', () => {
    for (const [r, first] of [
      [0, 0],
      [0.999, 249.75],
    ] as const) {
      const { clock, sink, prober } = setup(r);
      prober.start();
      clock.advance(1000);
      expect(sink.times('probe')[0]).toBe(first);
    }
  });

  it('asks ANY for the instance and host names, claiming SRV, TXT and A without cache-flush (§10.2)', () => {
    const { clock, sink, prober } = setup();
    prober.start();
    clock.advance(0);
    const p = sink.sent[0]?.packet;
    expect(p?.type).toBe('query');
    expect(p?.questions).toEqual([
      { name: ours.fqdn, type: 'ANY' },
      { name: 'node1.local', type: 'ANY' },
    ]);
    expect(p?.authorities?.map((r) => r.type)).toEqual(['SRV', 'TXT', 'A']);
    expect(p?.authorities?.every((r) => r.flush === undefined)).toBe(true);
    expect(p?.answers).toBeUndefined();
  });

  it('probes with the claim as it is at each probe (a TXT changed while probing)', () => {
    const { clock, sink, prober, setClaim } = setup();
    prober.start();
    clock.advance(0);
    const changed = buildRecords({ ...spec, txt: { v: '1', state: 'registered' } });
    setClaim({ records: changed, host: spec.host });
    clock.advance(PROBE_INTERVAL_MS);
    const txts = sink.sent.map((s) => s.packet.authorities?.find((r) => r.type === 'TXT')?.data);
    expect(txts).toEqual([ours.txt.data, changed.txt.data]);
  });

  it('a conflicting answer during probing is reported once, and nothing more is sent', () => {
    const { clock, sink, log, conflicts, prober } = setup();
    prober.start();
    clock.advance(PROBE_INTERVAL_MS); // two probes out
    prober.onResponse([theirs.ptr, theirs.srv], '198.18.0.11');
    expect(conflicts).toEqual([{ hit: theirs.srv, from: '198.18.0.11' }]);
    prober.onResponse([theirs.txt], '198.18.0.11'); // already over
    clock.advance(10_000);
    expect(sink.sent).toHaveLength(2);
    expect(log).toEqual(['conflict@250']);
    expect(prober.state).toBe('conflict');
  });

  it('a conflict is noticed even during the first random delay; identical data and goodbyes are none', () => {
    const { clock, sink, conflicts, prober } = setup(0.9);
    prober.start();
    prober.onResponse([ours.srv, ours.txt, ...ours.a], '198.18.0.10'); // the same claim: not a conflict
    prober.onResponse([{ ...theirs.srv, ttl: 0 }], '198.18.0.11'); // a goodbye claims nothing
    expect(conflicts).toEqual([]);
    prober.onResponse([theirs.a[0]!], '198.18.0.11'); // another address for our host name
    expect(conflicts.map((c) => c.hit.type)).toEqual(['A']);
    clock.advance(10_000);
    expect(sink.sent).toEqual([]);
  });

  it('stop() cancels the pending probes: nothing is sent and nothing is won afterwards', () => {
    const { clock, sink, log, prober } = setup();
    prober.start();
    clock.advance(0);
    prober.stop();
    clock.advance(10_000);
    expect(sink.sent).toHaveLength(1);
    expect(log).toEqual([]);
    expect(prober.state).toBe('stopped');
    prober.onResponse([theirs.srv], '198.18.0.11');
    expect(log).toEqual([]);
  });
});

describe('Prober simultaneous probe tie-break (RFC 6762 §8.2)', () => {
  it('defers one second and starts three fresh probes when the other claim sorts later', () => {
    const { clock, sink, log, prober } = setup();
    prober.start();
    clock.advance(PROBE_INTERVAL_MS); // probes at 0 and 250
    // Their SRV has port 9001 > 9000: our data sorts earlier, we lose.
    prober.onProbe([theirs.srv, theirs.txt], '198.18.0.11');
    expect(log).toEqual([`deferred:${ours.fqdn}`]);
    expect(prober.probesSent).toBe(0);
    clock.advance(10_000);
    expect(sink.times('probe')).toEqual([0, 250, 250 + PROBE_DEFER_MS, 1500, 1750]);
    expect(log.at(-1)).toBe('won@2000');
  });

  it('keeps probing when our claim sorts later, or when the claim is our own looped back', () => {
    const { clock, sink, log, prober } = setup();
    prober.start();
    clock.advance(0);
    const lower = buildRecords({ ...spec, port: 80 });
    prober.onProbe([lower.srv], '198.18.0.11');
    prober.onProbe([ours.srv, ours.txt, ...ours.a], '198.18.0.10');
    prober.onProbe([buildRecords({ ...spec, name: 'node2', host: 'node2.local' }).srv], '198.18.0.12');
    clock.advance(10_000);
    expect(sink.times('probe')).toEqual([0, 250, 500]);
    expect(log).toEqual(['won@750']);
  });
});
