/**
 * A throwaway etcd cluster on loopback, for the tests (test/helpers/etcd.ts) and the `scale` bench:
 * `members` etcd processes on free loopback ports, data in a temp dir, killed and removed by stop().
 * Never etcd's default ports 2379/2380: a machine where the Debian package started a system etcd is
 * not touched. Not in the package (package.json leaves dist/bench out).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';

export interface EtcdCluster {
  /** host:port of each member's client URL. */
  endpoints: string[];
  /** Process ids of the running members (for their CPU). */
  pids(): number[];
  /** Kills member i (SIGKILL: a crash, not a clean stop). */
  kill(i: number): Promise<void>;
  /** Starts member i again on its data dir and ports. */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

/** Whether an `etcd` binary is on PATH. */
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
        await client.get('muster-health');
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

export async function startEtcdCluster(opts: { members?: number } = {}): Promise<EtcdCluster> {
  if (!haveEtcd()) throw new Error('no etcd on PATH (Debian: apt-get install etcd-server)');
  const n = opts.members ?? 3;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-etcd-'));
  const members: { name: string; client: number; peer: number; proc?: ChildProcess; log: string[] }[] = [];
  for (let i = 0; i < n; i++) {
    members.push({ name: `m${i}`, client: await freePort(), peer: await freePort(), log: [] });
  }
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(',');
  const token = `muster-${path.basename(dir)}`;

  const launch = (i: number): void => {
    const m = members[i]!;
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
        `--initial-cluster-token=${token}`,
        // etcd's own defaults (100 ms, 1 s): shorter ones let a loaded machine (the whole test
        // suite on two cores) starve heartbeats into needless elections.
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
  };
  const killMember = async (i: number): Promise<void> => {
    const p = members[i]!.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  };
  const endpoints = members.map((m) => `127.0.0.1:${m.client}`);
  const stop = async (): Promise<void> => {
    for (let i = 0; i < n; i++) await killMember(i);
    rmSync(dir, { recursive: true, force: true });
  };

  for (let i = 0; i < n; i++) launch(i);
  try {
    await waitHealthy(endpoints, 20_000);
  } catch (err) {
    const logs = members.map((m) => `${m.name}: ${m.log.join('').slice(-2000)}`).join('\n');
    await stop();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
  return {
    endpoints,
    pids: () => members.map((m) => m.proc?.pid ?? 0),
    kill: killMember,
    async restart(i) {
      await killMember(i);
      launch(i);
      await waitHealthy([endpoints[i]!], 20_000);
    },
    stop,
  };
}
