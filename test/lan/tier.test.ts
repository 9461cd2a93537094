/**
 * Tier registrars on the test LAN (issue 11, item 1; seed 004): real processes of the real CLI in
 * network namespaces on 198.18.0.0/24. A main registrar; a tier registrar with `--parent auto` that
 * finds it by mDNS and waits for its operator; a node with `muster join --cluster rack1` that asked
 * before the tier was registered (heard by it), finds the tier by mDNS once it advertises, and gets a
 * certificate that chains to the main's root through the tier's intermediate. Nothing here sends a
 * packet outside those namespaces.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { certFingerprint } from '../../src/common/x509.js';
import { BIN, muster } from '../helpers/cli.js';
import {
  killChild,
  netnsSuite,
  registrarReady,
  spawnLanRegistrar,
  testLanFixture,
} from '../helpers/netlan.js';
import { opensslVerify } from '../helpers/registrar.js';

const gate = netnsSuite('test/lan/tier.test.ts');

async function until<T>(what: string, f: () => T | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.skipIf(gate.skip)('tier registrars on a test LAN', () => {
  const fx = testLanFixture('muster-lan-tier-');
  const children: ChildProcess[] = [];

  afterAll(async () => {
    for (const c of children.reverse()) await killChild(c);
  });

  it('parent main + tier with --parent auto + a node joining by mDNS: the node gets a certificate chaining to the root', async () => {
    const env = { ...process.env, MUSTER_LOG_FORMAT: 'json' };
    const registrar = (name: string, cluster: string, extra: string[]) => {
      return fx.lan.addHost(name, 'lan').then((h) => {
        const sock = path.join(fx.dir, `${name}.sock`);
        const child = spawnLanRegistrar(h, { cluster, stateDir: path.join(fx.dir, name), sock, extra });
        children.push(child);
        return { h, child, sock, admin: (args: string[]) => muster([...args, '--admin-socket', sock]) };
      });
    };
    const nodes = (admin: (a: string[]) => { stdout: string }) =>
      JSON.parse(admin(['nodes', 'list', '--json']).stdout).items as {
        name: string;
        state: string;
        role: string;
      }[];

    const main = await registrar('main', 'cloud', []);
    const { ready: mainReady } = await registrarReady<{ ca: string }>(main.child, 'main registrar');

    // A node asks for cluster rack1 before its registrar exists: it advertises and keeps looking.
    const nodeHost = await fx.lan.addHost('node', 'lan');
    const nodeDir = path.join(fx.dir, 'rack1-node');
    const node = nodeHost.spawn(
      process.execPath,
      [
        BIN,
        'join',
        '--cluster',
        'rack1',
        '--name',
        'worker-1',
        '--state-dir',
        nodeDir,
        '--interface',
        nodeHost.ip,
        '--ca-fingerprint',
        mainReady.ca,
      ],
      { env },
    );
    children.push(node);
    let nodeOut = '';
    node.stdout!.on('data', (c: Buffer) => (nodeOut += c));
    node.stderr!.on('data', (c: Buffer) => (nodeOut += c));
    const nodeExit = new Promise<number>((resolve) => node.on('exit', (code) => resolve(code ?? -1)));

    // The tier finds the main by mDNS and waits for its operator (no token: approval).
    const tier = await registrar('tier', 'rack1', [
      '--parent',
      'auto',
      '--parent-ca-fingerprint',
      mainReady.ca,
    ]);
    const tierReady = registrarReady<{ ca: string; url: string }>(tier.child, 'tier registrar', 60_000);
    tierReady.catch(() => undefined);
    await until('the tier pending at the main', () =>
      nodes(main.admin).find((n) => n.name === 'rack1' && n.state === 'pending') ? true : undefined,
    );
    expect(main.admin(['nodes', 'approve', 'rack1']).code).toBe(0);
    const { ready, out: tierOut } = await tierReady;
    // Heard while unregistered, recorded as it started (before "registrar ready"), not heard afresh.
    const log = tierOut();
    const heardAt = log.search(
      /"node":"worker-1"[^\n]*"heard a node over mDNS"|"heard a node over mDNS"[^\n]*"node":"worker-1"/,
    );
    expect(heardAt, log).toBeGreaterThan(-1);
    expect(heardAt).toBeLessThan(log.indexOf('"registrar ready"'));
    expect(ready.ca).toBe(mainReady.ca); // the tier advertises and serves the main's root as its anchor

    // What the tier heard before it was registered is on its record now.
    await until('the heard node on the tier', () =>
      nodes(tier.admin).find((n) => n.name === 'worker-1') ? true : undefined,
    );
    expect(tier.admin(['install-mode', 'on', '--for', '10m']).code).toBe(0);
    const code = await Promise.race([nodeExit, new Promise<number>((r) => setTimeout(() => r(-2), 45_000))]);
    expect(code, nodeOut).toBe(0);
    expect(nodeOut).toContain('found the registrar by mDNS');

    const ca = readFileSync(path.join(nodeDir, 'ca.crt'), 'utf8');
    expect(certFingerprint(ca)).toBe(mainReady.ca);
    const v = opensslVerify(
      path.join(nodeDir, 'ca.crt'),
      path.join(nodeDir, 'node.crt'),
      path.join(nodeDir, 'chain.pem'),
    );
    expect(v.ok, v.out).toBe(true);
    const bundle = JSON.parse(readFileSync(path.join(nodeDir, 'bundle.json'), 'utf8'));
    expect(bundle).toMatchObject({ cluster: 'rack1', node: 'worker-1' });
    expect(nodes(main.admin).find((n) => n.name === 'rack1')).toMatchObject({ role: 'cluster' });
  }, 120_000);
});
