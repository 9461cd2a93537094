/**
 * One forged packet never stops a boot job (issue 8, hole 4), on the test LAN: the real CLI in network
 * namespaces on 198.18.0.0/24; nothing here sends a packet outside them.
 *
 * A rogue host runs its own registrar (its own CA, mDNS off) and publishes a forged `_muster._tcp`
 * advertisement for the cluster: the real registrar's CA in `ca=`, its own address. A node holding a
 * (pinned) join token finds only the forged one at first: it must skip it (TLS shows another CA),
 * keep looking, and register with the real registrar once that one is back on the LAN, sending the
 * rogue neither its CSR nor its proof. Before issue 8 the node exited 5 at the forged advertisement,
 * which `RestartPreventExitStatus` never retries.
 *
 * MUSTER_LAN_BIN runs this against another build of the CLI (e.g. the old main, to see it fail).
 */
import { afterAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { BIN, muster } from '../helpers/cli.js';
import {
  killChild,
  netnsSuite,
  registrarReady,
  spawnLanRegistrar,
  testLanFixture,
  type LanHost,
} from '../helpers/netlan.js';
import { opensslVerify } from '../helpers/registrar.js';
import { MdnsProc } from '../advertiser/driver.js';

const CLI = process.env.MUSTER_LAN_BIN ?? BIN;
const gate = netnsSuite('test/lan/node-forged-advert.test.ts');

interface Reg {
  child: ChildProcess;
  ca: string;
  sock: string;
  stop(): Promise<void>;
}

describe.skipIf(gate.skip)('a forged registrar advertisement on the LAN', () => {
  const fx = testLanFixture('muster-lan-forged-');
  const cleanup: (() => Promise<void>)[] = [];

  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  /** `muster registrar` in `h`, resolved once it logs "registrar ready". */
  async function startReg(h: LanHost, name: string, extra: string[] = []): Promise<Reg> {
    const dir = path.join(fx.dir, `reg-${name}`);
    const sock = path.join(fx.dir, `${name}.sock`);
    const child = spawnLanRegistrar(h, { cluster: 'omega', stateDir: dir, sock, extra, bin: CLI });
    const { ready } = await registrarReady<{ ca: string }>(child, `registrar ${name}`);
    const reg: Reg = { child, ca: ready.ca, sock, stop: () => killChild(child, 5000) };
    cleanup.push(reg.stop);
    return reg;
  }

  /** Requests the registrar answered, by method and route (its Prometheus metrics, admin socket). */
  function requests(reg: Reg, method: string, route: string): Promise<number> {
    return new Promise((resolve, reject) => {
      http
        .get({ socketPath: reg.sock, path: '/metrics' }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c));
          res.on('end', () => {
            let n = 0;
            for (const line of body.split('\n')) {
              if (!line.startsWith('muster_http_requests_total{')) continue;
              if (line.includes(`method="${method}"`) && line.includes(`route="${route}"`))
                n += Number(line.split(' ').at(-1));
            }
            resolve(n);
          });
        })
        .on('error', reject);
    });
  }

  it('the node skips it, keeps looking, and registers with the real registrar; the rogue gets nothing', async () => {
    const [realHost, rogueHost, nodeHost] = [
      await fx.lan.addHost('real', 'lan'),
      await fx.lan.addHost('rogue', 'lan'),
      await fx.lan.addHost('node', 'lan'),
    ];
    let real = await startReg(realHost, 'real');
    const token = muster(['tokens', 'create', '--admin-socket', real.sock]).stdout.trim();
    expect(token.split('.')).toHaveLength(3); // it carries the CA pin
    // The real registrar leaves the LAN for now (goodbye sent): the forged advertisement is all there is.
    await real.stop();

    const rogue = await startReg(rogueHost, 'rogue', ['--mdns', 'off']);
    expect(rogue.ca).not.toBe(real.ca);
    const forger = await MdnsProc.start(rogueHost);
    cleanup.push(() => forger.terminate());
    await forger.call('publish', {
      pub: 'forged',
      spec: {
        type: 'muster',
        name: 'registrar-forged',
        port: 8443,
        txt: { v: '1', role: 'main', cluster: 'omega', ca: real.ca, mode: 'open' },
      },
    });

    const dir = path.join(fx.dir, 'node');
    const node = nodeHost.spawn(
      process.execPath,
      [
        CLI,
        'join',
        '--cluster',
        'omega',
        '--name',
        'omega-1',
        '--state-dir',
        dir,
        '--interface',
        nodeHost.ip,
      ],
      { env: { ...process.env, MUSTER_LOG_FORMAT: 'json', MUSTER_TOKEN: token } },
    );
    cleanup.push(() => killChild(node, 5000));
    let stderr = '';
    let stdout = '';
    node.stdout!.on('data', (c: Buffer) => (stdout += c));
    node.stderr!.on('data', (c: Buffer) => (stderr += c));
    const exited = new Promise<number>((r) => node.on('exit', (code, sig) => r(code ?? (sig ? 128 : -1))));

    // The node tries the forged advertisement and skips it (it does not exit).
    const skipped = await Promise.race([
      (async () => {
        for (let i = 0; i < 300 && !/skipping a registrar found by mDNS/.test(stderr); i++)
          await new Promise((r) => setTimeout(r, 100));
        return /skipping a registrar found by mDNS/.test(stderr);
      })(),
      exited.then(() => false),
    ]);
    expect(skipped, `the node did not skip the forged advertisement:\n${stderr}`).toBe(true);
    expect(node.exitCode, stderr).toBeNull();

    // The real registrar comes back (same state: same CA and id), the node finds it and registers.
    real = await startReg(realHost, 'real');
    const code = await Promise.race([exited, new Promise<number>((r) => setTimeout(() => r(-2), 60_000))]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('registered omega-1');
    expect(opensslVerify(path.join(dir, 'ca.crt'), path.join(dir, 'node.crt')).ok).toBe(true);
    const list = JSON.parse(muster(['nodes', 'list', '--json', '--admin-socket', real.sock]).stdout) as {
      items: { name: string; state: string }[];
    };
    expect(list.items.find((n) => n.name === 'omega-1')).toMatchObject({ state: 'active' });
    // The rogue saw at most the public GET /v1/ca of the first contact: never the join (CSR, proof).
    expect(await requests(rogue, 'POST', '/v1/join')).toBe(0);
    expect(await requests(rogue, 'GET', '/v1/info')).toBe(0);
    expect(await requests(rogue, 'GET', '/v1/ca')).toBeGreaterThan(0);
    const skip = stderr
      .split('\n')
      .filter((l) => l.includes('skipping a registrar found by mDNS'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
    expect(skip).toMatchObject({ url: `https://${rogueHost.ip}:8443`, code: 'MUSTER_ERR_CA_PIN' });
  }, 120_000);
});
