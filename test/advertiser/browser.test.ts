// A browse on a ManualClock with a recording sink: the §5.2 query schedule, resolves, goodbye expiry,
// handler failures and stop(), without a socket or a sleep.
import { describe, expect, it } from 'vitest';
import { Browser } from '../../src/advertiser/browser.js';
import type { Discovered } from '../../src/advertiser/browse-cache.js';
import { buildRecords, goodbye, type PublicationSpec } from '../../src/advertiser/records.js';
import { isMusterError } from '../../src/common/errors.js';
import { FakeBrowserHost } from './fakes.js';

const TYPE = '_muster._tcp.local';
const spec: PublicationSpec = {
  kind: 'muster',
  name: 'reg1',
  host: 'reg1.local',
  port: 8443,
  txt: { v: '1', mode: 'closed' },
  addresses: ['198.18.0.2'],
};
const recs = buildRecords(spec);
const from = { address: '198.18.0.2' };

function setup(
  handlers: Partial<Record<'up' | 'update' | 'down', (s: Discovered) => void>> = {},
  max?: number,
) {
  const host = new FakeBrowserHost(() => 0.3); // first query after 20 + 0.3 * 100 = 50 ms
  const events: string[] = [];
  const rec = (kind: string) => (s: Discovered) => {
    events.push(`${kind} ${s.name}@${host.clock.now() - t0}`);
    handlers[kind as 'up']?.(s);
  };
  const t0 = host.clock.now();
  const b = new Browser(host, TYPE, { up: rec('up'), update: rec('update'), down: rec('down') }, max);
  return { host, b, events, sink: host.sink, clock: host.clock };
}

describe('Browser (RFC 6762 §5.2, §7.1)', () => {
  it('queries for the PTR after a random 20-120 ms, then 1 s, 2 s, 4 s ... apart, up to the cap', () => {
    const { b, sink, clock } = setup({}, 4000);
    b.start();
    clock.advance(20_000);
    expect(sink.times('browse query')).toEqual([50, 1050, 3050, 7050, 11_050, 15_050, 19_050]);
    expect(sink.sent[0]?.packet).toEqual({
      type: 'query',
      questions: [{ name: TYPE, type: 'PTR' }],
      answers: [],
    });
  });

  it('lists what it knows as known answers in the next query (§7.1)', () => {
    const { b, sink, clock } = setup();
    b.start();
    clock.advance(100);
    b.onResponse({ answers: [recs.ptr, recs.srv, recs.txt, ...recs.a] }, from);
    clock.advance(1000);
    expect(sink.sent.filter((s) => s.what === 'browse query').at(-1)?.packet.answers).toEqual([
      { name: TYPE, type: 'PTR', ttl: 4499, data: recs.fqdn },
    ]);
  });

  it('asks for what a response left out, at most once a second per question', () => {
    const { b, sink, clock, events } = setup();
    b.onResponse({ answers: [recs.ptr] }, from);
    b.onResponse({ answers: [recs.ptr] }, from);
    clock.advance(999);
    b.onResponse({ answers: [recs.ptr] }, from);
    clock.advance(1);
    b.onResponse({ answers: [recs.ptr] }, from);
    const resolves = sink.sent.filter((s) => s.what === 'resolve query');
    expect(resolves.map((s) => s.t)).toEqual([0, 1000]);
    expect(resolves[0]?.packet.questions).toEqual([
      { name: recs.fqdn, type: 'SRV' },
      { name: recs.fqdn, type: 'TXT' },
    ]);
    b.onResponse({ answers: [recs.srv, recs.txt, ...recs.a] }, from);
    expect(events).toEqual(['up reg1@1000']);
  });

  it('a goodbye takes the service down one second later on the clock (§10.1)', () => {
    const { b, clock, events } = setup();
    b.onResponse({ answers: [recs.ptr, recs.srv, recs.txt, ...recs.a] }, from);
    clock.advance(5000);
    b.onResponse({ answers: [goodbye(recs.ptr)] }, from);
    clock.advance(999);
    expect(events).toEqual(['up reg1@0']);
    clock.advance(1);
    expect(events).toEqual(['up reg1@0', 'down reg1@6000']);
    expect(b.list()).toEqual([]);
  });

  it('a TXT-only change is one update', () => {
    const { b, clock, events } = setup();
    b.onResponse({ answers: [recs.ptr, recs.srv, recs.txt, ...recs.a] }, from);
    clock.advance(2000);
    b.onResponse({ answers: [buildRecords({ ...spec, txt: { v: '1', mode: 'open' } }).txt] }, from);
    expect(events).toEqual(['up reg1@0', 'update reg1@2000']);
  });

  it('a handler that throws is reported as MUSTER_ERR_MDNS_HANDLER and browsing goes on', () => {
    const { b, host, events } = setup({
      up: () => {
        throw new Error('boom');
      },
    });
    b.onResponse({ answers: [recs.ptr, recs.srv, recs.txt, ...recs.a] }, from);
    expect(events).toEqual(['up reg1@0']);
    expect(host.errors).toHaveLength(1);
    expect(isMusterError(host.errors[0], 'MUSTER_ERR_MDNS_HANDLER')).toBe(true);
    expect(host.errors[0]?.message).toContain('boom');
    b.onResponse({ answers: [goodbye(recs.ptr)] }, from);
    host.clock.advance(1000);
    expect(events).toEqual(['up reg1@0', 'down reg1@1000']);
  });

  it('stop() cancels the queries and the expiry timer: nothing is sent or emitted afterwards', () => {
    const { b, host, sink, clock, events } = setup();
    b.start();
    clock.advance(100);
    b.onResponse({ answers: [recs.ptr, recs.srv, recs.txt, ...recs.a] }, from);
    b.onResponse({ answers: [goodbye(recs.ptr)] }, from);
    const sent = sink.sent.length;
    b.stop();
    expect(host.forgotten).toEqual([b]);
    clock.advance(3_600_000);
    b.onResponse({ answers: [buildRecords({ ...spec, name: 'reg2', host: 'reg2.local' }).ptr] }, from);
    expect(sink.sent).toHaveLength(sent);
    expect(events).toEqual(['up reg1@100']); // and no down for the goodbye, no up for reg2
  });
});
