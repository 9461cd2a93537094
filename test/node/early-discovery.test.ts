/**
 * The browse `muster join` starts before the agent loads (src/node/early-discovery.ts, issue 12 target
 * 4). With a fake mDNS stack (no packet is sent) and a ManualClock: it asks at once and decides 150 ms
 * after its query exactly as discovery.ts does; it does not start for a node that holds credentials
 * or a CA, nor for a pin runJoin will refuse; runJoin adopts it (no second stack, its node advertised
 * on that one) only when it asked for what runJoin asks for, and closes it otherwise and on every
 * way out. The real LAN is in test/lan/discovery.test.ts and the `mdns` bench.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type {
  BrowseHandlers,
  BrowseOptions,
  Discovered,
  Mdns,
  PublishSpec,
} from '../../src/advertiser/index.js';
import { ManualClock } from '../../src/common/clock.js';
import { isMusterError } from '../../src/common/errors.js';
import { memoryLogger } from '../../src/common/log.js';
import { DEFAULT_SETTLE_MS } from '../../src/node/discovery.js';
import { startEarlyDiscovery, type EarlyDiscoveryOptions } from '../../src/node/early-discovery.js';
import {
  joinNode,
  opensslVerify,
  startTestRegistrar,
  tempDir,
  type TestRegistrar,
} from '../helpers/registrar.js';

const fp = (seed: string): string => createHash('sha256').update(seed).digest('base64url');

function advert(id: string, ca: string, cluster: string, port = 8443, address = '198.18.0.10'): Discovered {
  return {
    type: '_muster._tcp.local',
    name: id,
    fqdn: `${id}._muster._tcp.local`,
    host: `${id}.local`,
    port,
    addresses: [address],
    txt: new Map([
      ['v', '1'],
      ['role', 'main'],
      ['cluster', cluster],
      ['ca', ca],
      ['mode', 'open'],
      ['id', id],
    ]),
    rawTxt: [],
  };
}

/** A fake stack: records how it was used; `hear` hands an advertisement to its browser. */
function fakeStack(heardAtOnce: Discovered[] = []) {
  const s = {
    created: 0,
    closed: 0,
    browses: [] as (BrowseOptions | undefined)[],
    published: [] as PublishSpec[],
    handlers: undefined as BrowseHandlers | undefined,
    hear: (d: Discovered) => s.handlers!.up(d),
    create: (): Mdns => {
      s.created++;
      return {
        ready: async () => undefined,
        publish: (spec: PublishSpec) => {
          s.published.push(spec);
          return { stop: async () => undefined } as never;
        },
        browse: (_type: string, h: BrowseHandlers, o?: BrowseOptions) => {
          s.handlers = h;
          s.browses.push(o);
          return { stop: () => undefined, list: () => heardAtOnce };
        },
        close: async () => {
          s.closed++;
        },
      };
    },
  };
  return s;
}

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir('muster-early-discovery-');
});
afterEach(() => t.cleanup());

const settled = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

function options(over: Partial<EarlyDiscoveryOptions> & { createMdns: () => Mdns }): EarlyDiscoveryOptions {
  return {
    stateDir: path.join(t.dir, 'node'),
    cluster: 'alpha',
    log: memoryLogger('node').log,
    timeoutMs: 5000,
    ...over,
  };
}

describe('early discovery on its own', () => {
  it('asks at once and resolves the registrars heard 150 ms after its query; nothing is published', async () => {
    const clock = new ManualClock();
    const f = fakeStack();
    const early = await startEarlyDiscovery(options({ createMdns: f.create, clock }));
    expect(early).toBeDefined();
    expect(f.browses).toEqual([{ queryAtOnce: true }]);
    let got: string[] | undefined;
    void early!.candidates(new AbortController().signal).then((c) => (got = c.map((x) => x.id)));
    clock.advance(10);
    f.hear(advert('r1', fp('one'), 'alpha'));
    f.hear(advert('other', fp('two'), 'beta')); // another cluster: ignored, as discovery.ts does
    clock.advance(DEFAULT_SETTLE_MS - 11);
    await settled();
    expect(got).toBeUndefined(); // still listening for a second registrar
    clock.advance(1);
    await settled();
    expect(got).toEqual(['r1']);
    expect(f.published).toEqual([]); // the node's own advertisement waits for its key (runJoin)
    await early!.release();
    expect(f.closed).toBe(1);
  });

  it('a registrar heard late, within 150 ms of the query, is still in the list (left to the choice)', async () => {
    const clock = new ManualClock();
    const f = fakeStack();
    const early = await startEarlyDiscovery(options({ createMdns: f.create, clock, cluster: '' }));
    let got: string[] | undefined;
    void early!.candidates(new AbortController().signal).then((c) => (got = c.map((x) => x.ca)));
    clock.advance(1);
    f.hear(advert('r1', fp('one'), 'alpha'));
    clock.advance(DEFAULT_SETTLE_MS - 2);
    f.hear(advert('r2', fp('two'), 'alpha'));
    clock.advance(1);
    await settled();
    expect(got).toEqual([fp('one'), fp('two')]);
    await early!.release();
  });

  for (const file of ['node.crt', 'ca.crt', 'bundle.json']) {
    it(`no head start for a state directory holding ${file}: no stack, no query`, async () => {
      const f = fakeStack();
      const dir = path.join(t.dir, 'node');
      mkdirSync(dir);
      writeFileSync(path.join(dir, file), 'x');
      expect(await startEarlyDiscovery(options({ createMdns: f.create }))).toBeUndefined();
      expect(f.created).toBe(0);
    });
  }

  it('no head start when --ca-fingerprint and the token pin different CAs (runJoin refuses it)', async () => {
    const f = fakeStack();
    const early = await startEarlyDiscovery(
      options({
        createMdns: f.create,
        caFingerprint: fp('one'),
        token: `abcdefgh.${'s'.repeat(32)}.${fp('two')}`,
      }),
    );
    expect(early).toBeUndefined();
    expect(f.created).toBe(0);
  });

  it('stopping the caller stops the browse: candidates() rejects with its reason', async () => {
    const clock = new ManualClock();
    const f = fakeStack();
    const early = await startEarlyDiscovery(options({ createMdns: f.create, clock }));
    const stop = new AbortController();
    const p = early!.candidates(stop.signal);
    stop.abort(new Error('stopped by SIGTERM'));
    await expect(p).rejects.toThrow('stopped by SIGTERM');
    await early!.release();
    expect(f.closed).toBe(1);
  });
});

describe('runJoin with an early discovery (real registrar, fake mDNS)', () => {
  let reg: TestRegistrar;
  beforeEach(async () => {
    reg = await startTestRegistrar(path.join(t.dir, 'reg'), { mdns: false, cluster: 'alpha' });
  });
  afterEach(async () => reg?.close());

  const tokenOf = async (): Promise<string> =>
    (await reg.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {})).token;
  const heardReg = (): Discovered => advert(reg.id, reg.caFingerprint, 'alpha', reg.port, '127.0.0.1');

  it('adopted: joins the registrar it heard, on its one stack, which then carries the node advertisement', async () => {
    const f = fakeStack([heardReg()]);
    const dir = path.join(t.dir, 'node');
    const token = await tokenOf(); // it pins the registrar's CA: the early browse asks for that pin too
    const early = await startEarlyDiscovery(options({ createMdns: f.create, stateDir: dir, token }));
    const runJoinOwn = fakeStack();
    const r = await joinNode({ url: '' }, dir, {
      registrarUrl: undefined as never,
      name: 'early-1',
      cluster: 'alpha',
      mdns: true,
      token,
      discoveryTimeoutMs: 5000,
      timeoutMs: 20_000,
      createMdns: runJoinOwn.create,
      early: early!,
    });
    expect(r.status).toBe('registered');
    expect(opensslVerify(path.join(dir, 'ca.crt'), path.join(dir, 'node.crt')).ok).toBe(true);
    expect(runJoinOwn.created).toBe(0); // no second stack, no second browse
    expect(f.created).toBe(1);
    expect(f.browses).toHaveLength(1);
    expect(f.published).toHaveLength(1);
    expect(f.published[0]).toMatchObject({ type: 'muster-join', name: 'early-1', host: 'early-1.local' });
    expect(f.closed).toBe(1); // goodbye and close by runJoin, once
    expect(r.logs.lines().find((l) => l.msg === 'found the registrar by mDNS')).toMatchObject({
      registrar: reg.id,
    });
    // The first contact made while discovery listened is the one the join used (warm-contact.ts).
    expect(await reg.metrics.requestCount('GET', '/v1/ca')).toBe(1);
    expect(await reg.metrics.requestCount('GET', '/v1/info')).toBe(1);
    // Pinned by the token and one cluster asked for: no second choice can come, so the node decided
    // once that contact checked out, without waiting out the window.
    expect(
      r.logs.lines().find((l) => l.msg === 'the first registrar heard checked out: deciding now'),
    ).toMatchObject({ registrar: reg.id });
  });

  it('pinned, one cluster, a forged copy heard first: its contact fails, the window is waited out, the real one joined', async () => {
    const forged = advert(reg.id, reg.caFingerprint, 'alpha', 9, '127.0.0.1'); // nothing listens on 9
    const f = fakeStack([forged, heardReg()]);
    const dir = path.join(t.dir, 'node');
    const token = await tokenOf();
    const early = await startEarlyDiscovery(options({ createMdns: f.create, stateDir: dir, token }));
    const r = await joinNode({ url: '' }, dir, {
      registrarUrl: undefined as never,
      name: 'early-6',
      cluster: 'alpha',
      mdns: true,
      token,
      discoveryTimeoutMs: 5000,
      timeoutMs: 20_000,
      createMdns: fakeStack().create,
      early: early!,
    });
    expect(r.status).toBe('registered');
    expect(r.logs.text()).not.toContain('deciding now');
    expect(r.fingerprint).toBe(reg.caFingerprint);
  });

  it('pinned but any cluster: the window is waited out (a registrar of another cluster may still answer)', async () => {
    const f = fakeStack([heardReg()]);
    const dir = path.join(t.dir, 'node');
    const token = await tokenOf();
    const early = await startEarlyDiscovery(
      options({ createMdns: f.create, stateDir: dir, token, cluster: '' }),
    );
    const r = await joinNode({ url: '' }, dir, {
      registrarUrl: undefined as never,
      name: 'early-5',
      cluster: '',
      mdns: true,
      token,
      discoveryTimeoutMs: 5000,
      timeoutMs: 20_000,
      createMdns: fakeStack().create,
      early: early!,
    });
    expect(r.status).toBe('registered');
    expect(r.logs.text()).not.toContain('deciding now');
    expect(await reg.metrics.requestCount('GET', '/v1/info')).toBe(1);
  });

  it('two CAs heard and nothing pinned: no join is sent, though the first one heard was contacted', async () => {
    const rogue = advert('rogue', fp('rogue'), 'alpha', 9, '127.0.0.1');
    const f = fakeStack([heardReg(), rogue]);
    const dir = path.join(t.dir, 'node');
    const early = await startEarlyDiscovery(options({ createMdns: f.create, stateDir: dir }));
    const err = await joinNode({ url: '' }, dir, {
      registrarUrl: undefined as never,
      name: 'early-4',
      cluster: 'alpha',
      mdns: true,
      discoveryTimeoutMs: 5000,
      timeoutMs: 1500,
      createMdns: fakeStack().create,
      early: early!,
    }).then(
      () => new Error('the join succeeded'),
      (e: unknown) => e as Error,
    );
    expect(isMusterError(err, 'MUSTER_ERR_TIMEOUT'), String(err)).toBe(true);
    expect(await reg.metrics.requestCount('GET', '/v1/info')).toBeGreaterThanOrEqual(1);
    expect(await reg.metrics.requestCount('POST', '/v1/join')).toBe(0);
    expect(readdirSync(dir)).toEqual(['node.key']);
  });

  it('asked for another cluster than runJoin: closed unused, runJoin browses on a stack of its own', async () => {
    const f = fakeStack([heardReg()]);
    const dir = path.join(t.dir, 'node');
    const token = await tokenOf();
    const early = await startEarlyDiscovery(
      options({ createMdns: f.create, stateDir: dir, cluster: 'beta', token }),
    );
    const own = fakeStack([heardReg()]);
    const r = await joinNode({ url: '' }, dir, {
      registrarUrl: undefined as never,
      name: 'early-2',
      cluster: 'alpha',
      mdns: true,
      token,
      discoveryTimeoutMs: 5000,
      timeoutMs: 20_000,
      createMdns: own.create,
      early: early!,
    });
    expect(r.status).toBe('registered');
    expect(f.closed).toBe(1);
    expect(f.published).toEqual([]);
    expect(own.created).toBe(1);
    expect(own.published).toHaveLength(1);
  });

  it('released when runJoin fails before it browses (state directory unusable): nothing advertised', async () => {
    const f = fakeStack([heardReg()]);
    const blocker = path.join(t.dir, 'file');
    writeFileSync(blocker, 'not a directory');
    const dir = path.join(blocker, 'node');
    const early = await startEarlyDiscovery(options({ createMdns: f.create, stateDir: dir }));
    const err = await joinNode({ url: '' }, dir, {
      registrarUrl: undefined as never,
      name: 'early-3',
      cluster: 'alpha',
      mdns: true,
      timeoutMs: 5000,
      early: early!,
    }).then(
      () => new Error('the join succeeded'),
      (e: unknown) => e as Error,
    );
    expect(isMusterError(err, 'MUSTER_ERR_STATE_DIR'), String(err)).toBe(true);
    expect(f.closed).toBe(1);
    expect(f.published).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    expect(await reg.metrics.requestCount('POST', '/v1/join')).toBe(0);
    expect(readdirSync(t.dir).sort()).toEqual(['file', 'reg']);
  });
});
