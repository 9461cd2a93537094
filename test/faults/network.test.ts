/**
 * Nodes against a registrar that is unreachable, resetting connections, slow, or restarting while
 * they wait (issue 8 "Faults"; DESIGN "HTTPS API": nodes retry with jitter, never in a busy loop).
 * The nodes are the real agent (runJoin, mDNS off) and the registrar the real CLI, with a TCP proxy
 * on 127.0.0.1 between them (proxy.ts) that switches faults and counts every connection made to it.
 *
 * Each scenario checks that every node finishes, registered, and that the connections made while
 * the registrar was failing stay under what the back-off allows: a node waits at least MIN_RETRY_MS
 * between attempts (join-loop.ts), so in a fault window of W ms n nodes make at most
 * n · (1 + W / MIN_RETRY_MS) attempts. A hot loop makes thousands.
 */
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AdminClient } from '../../src/admin/client.js';
import { memoryLogger } from '../../src/common/log.js';
import { runJoin, type JoinResult } from '../../src/node/agent.js';
import { MIN_RETRY_MS } from '../../src/node/join-loop.js';
import { localRegistrarArgs, muster, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { tempDir } from '../helpers/registrar.js';
import { FaultProxy } from './proxy.js';

let t: ReturnType<typeof tempDir>;
let reg: SpawnedRegistrar | undefined;
let proxy: FaultProxy | undefined;
let sock: string;
const abort = new AbortController();

beforeEach(() => {
  t = tempDir('muster-netfault-');
  sock = path.join(t.dir, 'admin.sock');
});
afterEach(async () => {
  await proxy?.close();
  await reg?.stop('SIGKILL');
  reg = undefined;
  t.cleanup();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const BACKOFF = { baseMs: 100, maxMs: 800 };

function startRegistrar(): Promise<SpawnedRegistrar> {
  return spawnRegistrar(localRegistrarArgs(t.dir, sock, 'faults'));
}
const portOf = (r: SpawnedRegistrar): number => Number(new URL(r.url).port);

function node(name: string, token?: string): Promise<JoinResult> {
  return runJoin({
    registrarUrl: proxy!.url,
    ...(token ? { token } : {}),
    name,
    role: 'worker',
    cluster: '',
    stateDir: path.join(t.dir, 'nodes', name),
    log: memoryLogger(name).log,
    mdns: false,
    backoff: BACKOFF,
    waitS: 5,
    timeoutMs: 90_000,
    signal: abort.signal,
  });
}

/** The most attempts `nodes` nodes may make in `ms` with a back-off of at least MIN_RETRY_MS. */
const bound = (nodes: number, ms: number): number => nodes * (1 + Math.ceil(ms / MIN_RETRY_MS));

describe('nodes against a failing registrar (real agent, real CLI, a fault proxy)', () => {
  it('unreachable, then resetting every connection, then slow: all finish, with bounded retries', async () => {
    reg = await startRegistrar();
    proxy = await FaultProxy.start(portOf(reg), { delayMs: 150 });
    const token = muster(['tokens', 'create', '--admin-socket', sock]).stdout.trim();
    expect(token).toMatch(/^[a-z0-9]+\./);

    const N = 6;
    await proxy.set('refuse');
    const nodes = Array.from({ length: N }, (_, i) => node(`net${i}`, token));
    await sleep(1500);
    await proxy.set('reset');
    const resetFrom = Date.now();
    await sleep(1500);
    const resetMs = Date.now() - resetFrom;
    await proxy.set('slow');
    const slowFrom = Date.now();
    const results = await Promise.all(nodes);

    expect(results.map((r) => r.status)).toEqual(Array(N).fill('registered'));
    const resets = proxy.count('reset');
    console.log(
      `network faults: ${N} nodes; ${resets} connections in ${resetMs} ms of resets (bound ${bound(N, resetMs)}); ` +
        `${proxy.count('slow')} slow connections, all registered ${Date.now() - slowFrom} ms after`,
    );
    // Every node kept trying through the resets, and none in a hot loop.
    expect(resets).toBeGreaterThanOrEqual(N);
    expect(resets).toBeLessThanOrEqual(bound(N, resetMs));
    const list = muster(['nodes', 'list', '--admin-socket', sock, '--json']);
    expect(list.code, list.stderr).toBe(0);
    const names = (JSON.parse(list.stdout) as { items: { name: string; state: string }[] }).items;
    expect(
      names.filter((n) => n.name.startsWith('net') && (n.state === 'active' || n.state === 'issued')),
    ).toHaveLength(N);
  }, 120_000);

  it('the registrar is killed and restarted while nodes wait for approval: all finish once approved', async () => {
    reg = await startRegistrar();
    proxy = await FaultProxy.start(portOf(reg));
    const admin = new AdminClient(sock);
    const N = 4;
    const names = Array.from({ length: N }, (_, i) => `wait${i}`);
    const nodes = names.map((n) => node(n));
    // All of them pending, their long polls parked at the registrar.
    for (let i = 0; i < 200; i++) {
      const r = await admin.request<{ nodes: { name: string }[] }>('GET', '/v1/admin/nodes?state=pending');
      if (r.nodes.length === N) break;
      await sleep(100);
    }
    await sleep(300);

    await reg.stop('SIGKILL');
    reg = undefined;
    const downFrom = Date.now();
    await sleep(1500);
    reg = await startRegistrar();
    const downMs = Date.now() - downFrom;
    const down = proxy.connections.filter((c) => c.at >= downFrom && c.at < downFrom + downMs).length;
    proxy.setUpstream(portOf(reg));

    for (const n of names) await admin.request('POST', `/v1/admin/nodes/${n}/approve`, { operator: 'test' });
    const results = await Promise.all(nodes);
    expect(results.map((r) => r.status)).toEqual(Array(N).fill('registered'));
    console.log(
      `network faults: ${N} waiting nodes; registrar down ${downMs} ms; ${down} connections meanwhile (bound ${bound(N, downMs)}); ` +
        `${proxy.count()} connections in all`,
    );
    expect(down).toBeLessThanOrEqual(bound(N, downMs));
    for (const n of names) {
      const shown = await admin.request<{ node: { state: string } }>('GET', `/v1/admin/nodes/${n}`);
      expect(['issued', 'active']).toContain(shown.node.state);
    }
  }, 120_000);
});
