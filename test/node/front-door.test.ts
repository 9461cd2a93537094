/**
 * The node's side of the front door (issue 8), on loopback with real registrars (real level, real
 * HTTPS on 127.0.0.1:0, each with its own CA): a rogue registrar is one more `startTestRegistrar`.
 * mDNS is a fake stack that "hears" the advertisements a test gives it (no packet is sent); the same
 * attacks over real multicast are in test/lan/node-forged-advert.test.ts.
 *
 * - the token's CA pin: a node holding a pinned token, or --ca-fingerprint, refuses a rogue registrar
 *   and sends it neither its CSR nor its proof; a token pin and a flag that differ are a usage error;
 * - hole 4: a forged advertisement (the real CA, the rogue's address) is skipped and the node registers
 *   with the real registrar; an ambiguity is never picked and never ends the run;
 * - a failed ack is retried within the run (a registrar that is down for a moment, behind a proxy);
 * - a refused poll signature (the node clock 10 min ahead) is logged as such and retried.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Discovered, Mdns } from '../../src/advertiser/index.js';
import type { Clock } from '../../src/common/clock.js';
import { isMusterError } from '../../src/common/errors.js';
import { createLogger } from '../../src/common/log.js';
import { parseToken } from '../../src/common/proof.js';
import { nodeClock } from '../../src/node/clock.js';
import { musterAsync } from '../helpers/cli.js';
import { joinNode, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let real: TestRegistrar;
let rogue: TestRegistrar;

beforeEach(async () => {
  t = tempDir('muster-front-door-');
  real = await startTestRegistrar(path.join(t.dir, 'real'), { mdns: false });
  rogue = await startTestRegistrar(path.join(t.dir, 'rogue'), { mdns: false });
});
afterEach(async () => {
  await real?.close();
  await rogue?.close();
  t.cleanup();
});

const tokenOf = async (reg: TestRegistrar): Promise<string> =>
  (await reg.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {})).token;
/** The same token without the CA pin it carries (as tokens were before issue 8). */
const unpinned = (token: string): string => token.split('.').slice(0, 2).join('.');
const nodesOf = async (reg: TestRegistrar): Promise<{ name: string; state: string }[]> =>
  (await reg.admin.request<{ nodes: { name: string; state: string }[] }>('GET', '/v1/admin/nodes')).nodes;
const stateOf = async (reg: TestRegistrar, name: string): Promise<string | undefined> =>
  (await nodesOf(reg)).find((n) => n.name === name)?.state;
/** What the rogue was sent beyond GET /v1/ca (which any client fetches to see the CA). */
const sentToRogue = async (): Promise<Record<string, number>> => ({
  join: await rogue.metrics.requestCount('POST', '/v1/join'),
  info: await rogue.metrics.requestCount('GET', '/v1/info'),
});
const failure = (p: Promise<unknown>): Promise<Error> =>
  p.then(
    () => new Error('the join succeeded'),
    (e: unknown) => e as Error,
  );

/** A `_muster._tcp` advertisement as the browse cache hands it over: untrusted, like any packet. */
function advert(id: string, port: number, ca: string, cluster = 'test'): Discovered {
  return {
    type: '_muster._tcp.local',
    name: id,
    fqdn: `${id}._muster._tcp.local`,
    host: `${id}.local`,
    port,
    addresses: ['127.0.0.1'],
    txt: new Map([
      ['v', '1'],
      ['role', 'main'],
      ['cluster', cluster],
      ['ca', ca],
      ['mode', 'closed'],
      ['id', id],
    ]),
    rawTxt: [],
  };
}

/** An mDNS stack that hears `adverts` (in that order) and sends nothing. */
function hearing(adverts: Discovered[]): () => Mdns {
  return () => ({
    ready: async () => undefined,
    publish: () => ({ stop: async () => undefined }) as never,
    browse: () => ({ stop: () => undefined, list: () => adverts }) as never,
    close: async () => undefined,
  });
}

/** A LAN that answers each browse with the next of `rounds` (the last one again once they run out). */
function hearingRounds(rounds: Discovered[][]): () => Mdns {
  let browses = 0;
  return () => ({
    ready: async () => undefined,
    publish: () => ({ stop: async () => undefined }) as never,
    browse: () => {
      const adverts = rounds[Math.min(browses++, rounds.length - 1)]!;
      return { stop: () => undefined, list: () => adverts } as never;
    },
    close: async () => undefined,
  });
}

describe("the token's CA pin (issue 8, hole 6)", () => {
  it('a node holding a pinned token refuses a rogue registrar and sends it neither CSR nor proof', async () => {
    const token = await tokenOf(real);
    expect(parseToken(token)?.ca).toBe(real.caFingerprint);
    const dir = path.join(t.dir, 'node');
    const err = await failure(joinNode(rogue, dir, { name: 'pin-1', token }));
    expect(isMusterError(err, 'MUSTER_ERR_CA_PIN'), String(err)).toBe(true);
    expect(err.message).toContain(`not the pinned ${real.caFingerprint}`);
    expect(await sentToRogue()).toEqual({ join: 0, info: 0 });
    expect(await nodesOf(rogue)).toEqual([]);
    expect(readdirSync(dir)).toEqual(['node.key']);

    // The same token with the real registrar: pinned by the token, no trust on first use.
    const ok = await joinNode(real, path.join(t.dir, 'node-2'), { name: 'pin-2', token });
    expect(ok.status).toBe('registered');
    const verified = ok.logs.lines().find((l) => l.msg === 'registrar verified');
    expect(verified).toMatchObject({ trust: 'pinned', pinnedBy: 'the join token' });
    expect(ok.logs.text()).not.toContain('TRUST ON FIRST USE');
  });

  it('a node with --ca-fingerprint refuses a rogue registrar and sends it neither CSR nor proof', async () => {
    const dir = path.join(t.dir, 'node');
    const err = await failure(
      joinNode(rogue, dir, {
        name: 'pin-3',
        token: unpinned(await tokenOf(real)),
        caFingerprint: real.caFingerprint,
      }),
    );
    expect(isMusterError(err, 'MUSTER_ERR_CA_PIN'), String(err)).toBe(true);
    expect(await sentToRogue()).toEqual({ join: 0, info: 0 });
    expect(await nodesOf(rogue)).toEqual([]);
    expect(readdirSync(dir)).toEqual(['node.key']);
  });

  it("a registered node given a token that pins another CA says so (exit 5) instead of 'already registered'", async () => {
    const dir = path.join(t.dir, 'node');
    await joinNode(real, dir, { name: 'pin-6', token: await tokenOf(real) });
    const before = readdirSync(dir).sort();
    const err = await failure(joinNode(real, dir, { name: 'pin-6', token: await tokenOf(rogue) }));
    expect(isMusterError(err, 'MUSTER_ERR_CA_PIN'), String(err)).toBe(true);
    expect(err.message).toContain(`not the pinned ${rogue.caFingerprint} (the join token)`);
    expect(readdirSync(dir).sort()).toEqual(before);
    expect(await sentToRogue()).toEqual({ join: 0, info: 0 });
  });

  it('a token pin and --ca-fingerprint that differ are a usage error (exit 2): nothing is made or sent', async () => {
    const token = await tokenOf(real);
    const dir = path.join(t.dir, 'node');
    const err = await failure(
      joinNode(real, dir, { name: 'pin-4', token, caFingerprint: rogue.caFingerprint }),
    );
    expect(isMusterError(err, 'MUSTER_ERR_USAGE'), String(err)).toBe(true);
    expect(err.message).toContain(real.caFingerprint);
    expect(err.message).toContain(rogue.caFingerprint);
    expect(existsSync(dir)).toBe(false);

    const r = await musterAsync(
      [
        ...['join', '--registrar', real.url, '--name', 'pin-5', '--mdns', 'off'],
        ...['--state-dir', dir, '--ca-fingerprint', rogue.caFingerprint],
      ],
      { MUSTER_TOKEN: token },
    );
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/pins CA .* but --ca-fingerprint is/);
    expect(r.stderr).not.toContain(parseToken(token)!.secret);
    expect(existsSync(dir)).toBe(false);
    expect(await real.metrics.requestCount('GET', '/v1/ca')).toBe(0);
    expect(await nodesOf(real)).toEqual([]);
  });
});

describe('registrars found by mDNS are hints (issue 8, hole 4)', () => {
  it.each([
    ['a pinned token', (tk: string) => tk],
    ['a token without a pin', unpinned],
  ])(
    'with %s, a forged advertisement (the real CA, the rogue address) is skipped: the node registers with the real registrar',
    async (_what, form) => {
      const token = form(await tokenOf(real));
      // Heard first, under another id; then the real one.
      const forged = advert('registrar-x', rogue.port, real.caFingerprint);
      const r = await joinNode({ url: '' }, path.join(t.dir, 'node'), {
        registrarUrl: undefined as never,
        name: 'hint-1',
        token,
        mdns: true,
        discoveryTimeoutMs: 50,
        createMdns: hearing([forged, advert(real.id, real.port, real.caFingerprint)]),
      });
      expect(r.status).toBe('registered');
      expect(await stateOf(real, 'hint-1')).toBe('active');
      expect(await sentToRogue()).toEqual({ join: 0, info: 0 });
      const skipped = r.logs.lines().find((l) => /skipping a registrar found by mDNS/.test(String(l.msg)));
      expect(skipped).toMatchObject({ url: `https://127.0.0.1:${rogue.port}`, code: 'MUSTER_ERR_CA_PIN' });
    },
  );

  it("a forged advertisement under the real registrar's own id does not push the real one out", async () => {
    const token = await tokenOf(real);
    const r = await joinNode({ url: '' }, path.join(t.dir, 'node'), {
      registrarUrl: undefined as never,
      name: 'hint-2',
      token,
      mdns: true,
      discoveryTimeoutMs: 50,
      createMdns: hearing([
        advert(real.id, real.port, real.caFingerprint),
        advert(real.id, rogue.port, real.caFingerprint),
      ]),
    });
    expect(r.status).toBe('registered');
    expect(await stateOf(real, 'hint-2')).toBe('active');
    expect(await sentToRogue()).toEqual({ join: 0, info: 0 });
  });

  it('a later round that hears only one of two registrars with different CAs does not pick it', async () => {
    // The first round hears both; every later one only the real registrar (the other's answer lost,
    // or held back: a responder answers a record at most once a second, RFC 6762 §6).
    const token = unpinned(await tokenOf(real));
    const both = [
      advert(real.id, real.port, real.caFingerprint),
      advert(rogue.id, rogue.port, rogue.caFingerprint),
    ];
    const err = await failure(
      joinNode({ url: '' }, path.join(t.dir, 'node'), {
        registrarUrl: undefined as never,
        name: 'amb-3',
        token,
        mdns: true,
        discoveryTimeoutMs: 50,
        timeoutMs: 1500,
        createMdns: hearingRounds([both, [both[0]!]]),
      }),
    );
    expect(isMusterError(err, 'MUSTER_ERR_TIMEOUT'), String(err)).toBe(true);
    expect(await real.metrics.requestCount('POST', '/v1/join')).toBe(0);
    expect(await sentToRogue()).toEqual({ join: 0, info: 0 });
    expect(await nodesOf(real)).not.toContainEqual(expect.objectContaining({ name: 'amb-3' }));
  });

  it('two registrars with different CAs and nothing pinned: neither is asked, the node keeps looking', async () => {
    const token = unpinned(await tokenOf(real));
    const ads = hearing([
      advert(real.id, real.port, real.caFingerprint),
      advert(rogue.id, rogue.port, rogue.caFingerprint),
    ]);
    const err = await failure(
      joinNode({ url: '' }, path.join(t.dir, 'node'), {
        registrarUrl: undefined as never,
        name: 'amb-1',
        token,
        mdns: true,
        discoveryTimeoutMs: 50,
        timeoutMs: 1500,
        createMdns: ads,
      }),
    );
    // Not MUSTER_ERR_AMBIGUOUS (exit 5, never retried by the unit): the run went on to its --timeout.
    expect(isMusterError(err, 'MUSTER_ERR_TIMEOUT'), String(err)).toBe(true);
    expect(await real.metrics.requestCount('POST', '/v1/join')).toBe(0);
    expect(await sentToRogue()).toEqual({ join: 0, info: 0 });

    // With a --registrar URL to go on with, that is where the node goes.
    const r = await joinNode(real, path.join(t.dir, 'node-2'), {
      name: 'amb-2',
      token,
      mdns: true,
      discoveryTimeoutMs: 50,
      createMdns: ads,
    });
    expect(r.status).toBe('registered');
    expect(await stateOf(real, 'amb-2')).toBe('active');
    const skipped = r.logs.lines().find((l) => /skipping the registrars found by mDNS/.test(String(l.msg)));
    expect(String(skipped?.err)).toMatch(/different CAs/);
    expect(String(skipped?.err)).toContain(rogue.caFingerprint);
  });
});

/**
 * A TCP proxy in front of a registrar (TLS passes through: the node checks the registrar id in the
 * certificate, not the address). `down()` drops every connection and refuses the next `refusals`.
 */
async function tcpProxy(port: number): Promise<{
  url: string;
  down(refusals: number): void;
  refused: () => number;
  close(): Promise<void>;
}> {
  const sockets = new Set<net.Socket>();
  let dropNext = 0;
  let refused = 0;
  const server = net.createServer((client) => {
    if (dropNext > 0) {
      dropNext--;
      refused++;
      client.destroy();
      return;
    }
    const upstream = net.connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    down(n) {
      dropNext = n;
      for (const s of sockets) s.destroy();
    },
    refused: () => refused,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

describe('the acknowledgement', () => {
  it('is retried within the run when the registrar is down for a moment: the record becomes active', async () => {
    const proxy = await tcpProxy(real.port);
    try {
      const lines: string[] = [];
      // The registrar "goes down" the moment the credentials are written, before the ack is sent.
      const log = createLogger({
        name: 'node',
        level: 'debug',
        stream: {
          write(s: string) {
            lines.push(s);
            if (s.includes('"credentials written"')) proxy.down(2);
          },
        },
      });
      const dir = path.join(t.dir, 'node');
      const r = await joinNode({ url: proxy.url }, dir, { name: 'ack-1', token: await tokenOf(real), log });
      expect(r.status).toBe('registered');
      expect(proxy.refused()).toBe(2);
      expect(await stateOf(real, 'ack-1')).toBe('active');
      expect(existsSync(path.join(dir, 'acknowledged'))).toBe(true);
      const retried = lines.filter((l) => l.includes('could not acknowledge the credentials; retrying'));
      // The two refused connections, and the kept-alive one if the ack went out on it as it dropped.
      expect(retried.length).toBeGreaterThanOrEqual(2);
      expect(retried.join('\n')).not.toContain('MUSTER_ERR_TLS'); // a drop mid-handshake is the network
    } finally {
      await proxy.close();
    }
  });
});

describe('a refused poll signature', () => {
  it("with the node clock 10 minutes ahead: logged as the clock's fault and retried until --timeout", async () => {
    const ahead: Clock = { ...nodeClock, now: () => Date.now() + 600_000 };
    const logs: string[] = [];
    const log = createLogger({
      name: 'node',
      level: 'debug',
      stream: { write: (s: string) => void logs.push(s) },
    });
    // No token, no install mode: the node waits (pending) and signs its long polls with its clock.
    const err = await failure(
      joinNode(real, path.join(t.dir, 'node'), { name: 'skew-1', clock: ahead, timeoutMs: 2500, log }),
    );
    expect(isMusterError(err, 'MUSTER_ERR_TIMEOUT'), String(err)).toBe(true);
    expect(await stateOf(real, 'skew-1')).toBe('pending');
    const refused = logs
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => /refused this node's signature on the long poll/.test(String(l.msg)));
    expect(refused.length).toBeGreaterThanOrEqual(2); // retried, with back-off
    expect(refused[0]).toMatchObject({ level: 50 });
    expect(String(refused[0]!.msg)).toMatch(/clock/);
    expect(Math.abs(Number(refused[0]!.clockSkewS) - 600)).toBeLessThanOrEqual(2);
  });
});
