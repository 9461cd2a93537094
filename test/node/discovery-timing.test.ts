/**
 * When a node decides which registrars it heard (src/node/discovery.ts), on a ManualClock with a fake
 * mDNS stack (no packet is sent): its first query goes out at once, and it listens 150 ms after that
 * query for other registrars (RFC 6762 §6: shared answers come within 120 ms), so that several CAs
 * are seen and left to choice.ts, never a silent pick (DESIGN "Discovery").
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { BrowseHandlers, BrowseOptions, Discovered, Mdns } from '../../src/advertiser/index.js';
import { ManualClock } from '../../src/common/clock.js';
import { createLogger } from '../../src/common/log.js';
import { DEFAULT_SETTLE_MS, discoverRegistrar, type Candidate } from '../../src/node/discovery.js';

function advert(id: string, ca: string): Discovered {
  return {
    type: '_muster._tcp.local',
    name: id,
    fqdn: `${id}._muster._tcp.local`,
    host: `${id}.local`,
    port: 8443,
    addresses: ['198.18.0.10'],
    txt: new Map([
      ['v', '1'],
      ['role', 'main'],
      ['cluster', 'alpha'],
      ['ca', ca],
      ['mode', 'open'],
      ['id', id],
    ]),
    rawTxt: [],
  };
}

const ca = (seed: string): string => createHash('sha256').update(seed).digest('base64url');
const CA1 = ca('one');
const CA2 = ca('two');

/** A stack whose browser hears what the test hands to `hear`, and records how it was asked to browse. */
function fakeMdns(): {
  mdns: Mdns;
  hear: (s: Discovered) => void;
  browseOpts: () => BrowseOptions | undefined;
} {
  let handlers: BrowseHandlers | undefined;
  let opts: BrowseOptions | undefined;
  const mdns = {
    ready: async () => undefined,
    publish: () => ({ stop: async () => undefined }) as never,
    browse: (_type: string, h: BrowseHandlers, o?: BrowseOptions) => {
      handlers = h;
      opts = o;
      return { stop: () => undefined, list: () => [] };
    },
    close: async () => undefined,
  } as Mdns;
  return { mdns, hear: (s) => handlers!.up(s), browseOpts: () => opts };
}

function start(
  clock: ManualClock,
  mdns: Mdns,
  decideWhen?: Promise<unknown>,
): { result: () => Candidate[] | undefined } {
  let result: Candidate[] | undefined;
  void discoverRegistrar({
    mdns,
    log: createLogger({ name: 'test', level: 'silent' }),
    clock,
    timeoutMs: 5000,
    ...(decideWhen ? { decideWhen } : {}),
  }).then((r) => (result = r));
  return { result: () => result };
}

const settled = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe('discoverRegistrar timing', () => {
  it('asks at once and decides 150 ms after its query when a registrar answers at once', async () => {
    const clock = new ManualClock();
    const f = fakeMdns();
    const d = start(clock, f.mdns);
    expect(f.browseOpts()).toEqual({ queryAtOnce: true });
    clock.advance(5);
    f.hear(advert('r1', CA1));
    clock.advance(DEFAULT_SETTLE_MS - 6);
    await settled();
    expect(d.result()).toBeUndefined(); // still listening for others
    clock.advance(1);
    await settled();
    expect(d.result()?.map((c) => c.id)).toEqual(['r1']);
  });

  it('a second registrar answering up to 150 ms after the query is heard too (left to the choice)', async () => {
    const clock = new ManualClock();
    const f = fakeMdns();
    const d = start(clock, f.mdns);
    clock.advance(2);
    f.hear(advert('r1', CA1));
    clock.advance(DEFAULT_SETTLE_MS - 3); // an RFC responder's delayed shared answer, at the edge
    f.hear(advert('r2', CA2));
    clock.advance(1);
    await settled();
    expect(d.result()?.map((c) => c.ca)).toEqual([CA1, CA2]);
  });

  it('decideWhen: decides at once with what was heard, before the window ends; not while nothing is heard', async () => {
    const clock = new ManualClock();
    const f = fakeMdns();
    let decideNow = (): void => undefined;
    const d = start(clock, f.mdns, new Promise<void>((r) => (decideNow = r)));
    decideNow(); // nothing heard yet: keeps listening
    await settled();
    clock.advance(10);
    await settled();
    expect(d.result()).toBeUndefined();
    f.hear(advert('r1', CA1));
    clock.advance(DEFAULT_SETTLE_MS - 11);
    await settled();
    expect(d.result()).toBeUndefined(); // decideWhen fired before anything was heard: the window runs
    clock.advance(1);
    await settled();
    expect(d.result()?.map((c) => c.id)).toEqual(['r1']);

    const g = fakeMdns();
    let now = (): void => undefined;
    const e = start(clock, g.mdns, new Promise<void>((r) => (now = r)));
    clock.advance(5);
    g.hear(advert('r1', CA1));
    clock.advance(10);
    now();
    await settled();
    expect(e.result()?.map((c) => c.id)).toEqual(['r1']); // 15 ms after the query, not 150
  });

  it('a registrar first heard later (its answer to a later query) gets the full 150 ms after it', async () => {
    const clock = new ManualClock();
    const f = fakeMdns();
    const d = start(clock, f.mdns);
    clock.advance(1000);
    f.hear(advert('r1', CA1));
    clock.advance(DEFAULT_SETTLE_MS - 1);
    await settled();
    expect(d.result()).toBeUndefined();
    f.hear(advert('r2', CA2));
    clock.advance(1);
    await settled();
    expect(d.result()?.map((c) => c.id)).toEqual(['r1', 'r2']);
  });
});
