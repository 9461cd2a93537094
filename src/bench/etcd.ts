/**
 * A throwaway etcd cluster for the benchmarks (the `scale` bench): `members` etcd processes on free
 * loopback ports, data in a temp dir, killed and removed by stop(). The same cluster as the tests'
 * (test/helpers/etcd.ts), without vitest: never etcd's default ports, etcd's default heartbeat and
 * election timeouts. Not in the package (package.json leaves dist/bench out).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';

export interface BenchEtcd {
  /** host:port of each member's client URL. */
  endpoints: string[];
  /** Process ids of the members (for their CPU). */
  pids: number[];
  stop(): Promise<void>;
}

/** Whether an `etcd` binary is on PATH (the bench that needs it reports an error without it). */
export function haveEtcd(): boolean {
  return spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitHealthy(endpoints: string[], ms: number): Promise<void> {
  const client = new Etcd3({
    hosts: endpoints.map((e) => `http://${e}`),
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 1000 }),
  });
  const until = Date.now() + ms;
  try {
    for (;;) {
      try {
        // A linearizable read needs a leader: the cluster answers it only once it is usable.
        await client.get('muster-bench-health');
        return;
      } catch (err) {
        if (Date.now() > until) throw new Error(`etcd did not become healthy: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    client.close();
  }
}

export async function startBenchEtcd(members = 3): Promise<BenchEtcd> {
  if (!haveEtcd()) throw new Error('no etcd on PATH (Debian: apt-get install etcd-server)');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-bench-etcd-'));
  const ms: { name: string; client: number; peer: number; proc?: ChildProcess; log: string[] }[] = [];
  for (let i = 0; i < members; i++) {
    ms.push({ name: `m${i}`, client: await freePort(), peer: await freePort(), log: [] });
  }
  const initialCluster = ms.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(',');
  for (const m of ms) {
    const proc = spawn(
      'etcd',
      [
        `--name=${m.name}`,
        `--data-dir=${path.join(dir, m.name)}`,
        `--listen-client-urls=http://127.0.0.1:${m.client}`,
        `--advertise-client-urls=http://127.0.0.1:${m.client}`,
        `--listen-peer-urls=http://127.0.0.1:${m.peer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${m.peer}`,
        `--initial-cluster=${initialCluster}`,
        '--initial-cluster-state=new',
        `--initial-cluster-token=muster-bench-${path.basename(dir)}`,
        '--heartbeat-interval=100',
        '--election-timeout=1000',
        '--logger=zap',
        '--log-level=error',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    proc.stderr!.on('data', (d: Buffer) => {
      m.log.push(d.toString());
      if (m.log.length > 50) m.log.shift();
    });
    m.proc = proc;
  }
  const endpoints = ms.map((m) => `127.0.0.1:${m.client}`);
  const stop = async (): Promise<void> => {
    for (const m of ms) {
      const p = m.proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitHealthy(endpoints, 20_000);
  } catch (err) {
    const logs = ms.map((m) => `${m.name}: ${m.log.join('').slice(-2000)}`).join('\n');
    await stop();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
  return { endpoints, pids: ms.map((m) => m.proc!.pid!), stop };
}
