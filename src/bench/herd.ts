/**
 * Target 3 (issue 12): herds of real agents, all at once, against one freshly started registrar.
 * Every node is a `runJoin` of src/node/agent.ts, the code of `muster join` (its first contact, token
 * proof, back-off, Retry-After with jitter, bundle checks, files and acknowledgement), many per
 * process in a few client processes (herd-client.ts): a process per node does not fit on 2 cores.
 * The clients prepare their nodes' state directories and keys first, then all agents start at the
 * same wall-clock instant. Per node: the time from that instant to `muster join` returning (credentials
 * checked, written and acknowledged) and to the credentials written. The per-IP rate limit is raised:
 * every client here is 127.0.0.1, where a real herd comes from N addresses.
 *
 * The registrar's RSS is sampled every 50 ms and its peak (VmHWM) read at the end; its CPU and the
 * clients' CPU are measured over the herd (they share the machine's cores).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { HerdClientConfig, HerdClientResult } from './herd-client.js';
import {
  admin,
  HERE,
  log,
  median,
  percentile,
  procCpuMs,
  procMem,
  round,
  ServerChild,
  sleep,
} from './lib.js';

export interface HerdOptions {
  dir: string;
  nodes: number;
  reps: number;
  rateLimit: number;
  /** Each agent's --timeout: a node not registered by then has failed. */
  timeoutMs: number;
  /** Client processes the agents are spread over. */
  clients: number;
}

export interface HerdRun {
  n: number;
  ok: number;
  failed: number;
  failures: Record<string, number>;
  /** From the start to `muster join` returning (registered and acknowledged). */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** From the start to the credentials written. */
  credentialsP50Ms: number;
  credentialsP99Ms: number;
  totalMs: number;
  retries: HerdClientResult['retries'];
  rssBeforeMb: number;
  rssPeakSampledMb: number;
  hwmMb: number;
  rssAfterMb: number;
  /** The registrar's CPU during the herd (all threads, /proc) and as a share of one core over the wall time. */
  registrarCpuMs: number;
  registrarCoreShare: number;
  /** The client processes' CPU during the herd, in all, and as a share of one core. */
  clientCpuMs: number;
  clientCoreShare: number;
  /** 1-minute load average at the end of the run. */
  loadAfter: number;
}

export interface HerdResult {
  nodes: number;
  rateLimit: number;
  clients: number;
  runs: HerdRun[];
  p50MedianMs: number;
  p99MedianMs: number;
  credentialsP99MedianMs: number;
  totalMedianMs: number;
  hwmMedianMb: number;
  hwmMaxMb: number;
}

/** A client process of the herd (herd-client.ts). */
class HerdClient {
  private readonly messages: Record<string, unknown>[] = [];
  private waiter: (() => void) | undefined;
  private readonly exited: Promise<number | null>;

  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m: Record<string, unknown>) => {
      this.messages.push(m);
      this.waiter?.();
    });
    this.exited = new Promise((r) => proc.once('exit', (code) => r(code)));
  }

  static start(cfg: HerdClientConfig): HerdClient {
    const c = new HerdClient(
      fork(path.join(HERE, 'herd-client.js'), [], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        // Node files are small and on tmpfs; a wider pool keeps 2,500 agents' file steps from queueing.
        env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
      }),
    );
    // Over IPC, not argv: the config carries the join token.
    c.proc.send({ cmd: 'config', cfg });
    return c;
  }

  async next<T>(type: string, timeoutMs: number): Promise<T> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const i = this.messages.findIndex((m) => m.type === type);
      if (i >= 0) {
        const m = this.messages.splice(i, 1)[0]!;
        if (typeof m.error === 'string') throw new Error(`herd client: ${m.error}`);
        return m as T;
      }
      if (this.proc.exitCode !== null) throw new Error(`herd client exited (${this.proc.exitCode})`);
      if (Date.now() > until) throw new Error(`no ${type} from a herd client within ${timeoutMs} ms`);
      await Promise.race([new Promise<void>((r) => (this.waiter = r)), sleep(500), this.exited]);
      this.waiter = undefined;
    }
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }
}

async function oneHerd(o: HerdOptions, prefix: string, dir: string): Promise<HerdRun> {
  const reg = await ServerChild.start({ mode: 'registrar', dir, rateLimit: o.rateLimit });
  // Node state on tmpfs when there is one: the nodes' own disks are not what is measured.
  const stateRoot = path.join(
    existsSync('/dev/shm') ? '/dev/shm' : dir,
    `muster-herd-${process.pid}-${prefix}`,
  );
  const clients: HerdClient[] = [];
  try {
    const { token } = await admin<{ token: string }>(reg.ready.adminSocket!, 'POST', '/v1/admin/tokens', {
      ttlMs: 24 * 3_600_000,
    });
    mkdirSync(stateRoot, { recursive: true });
    const names = Array.from({ length: o.nodes }, (_, i) => `${prefix}-${String(i).padStart(5, '0')}`);
    for (let c = 0; c < o.clients; c++) {
      clients.push(
        HerdClient.start({
          url: reg.ready.url,
          token,
          names: names.filter((_, i) => i % o.clients === c),
          stateRoot,
          timeoutMs: o.timeoutMs,
        }),
      );
    }
    await Promise.all(clients.map((c) => c.next('ready', 300_000)));
    await sleep(300);
    const rssBefore = procMem(reg.pid).rssMb;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => {
      try {
        rssPeak = Math.max(rssPeak, procMem(reg.pid).rssMb);
      } catch {
        /* exited */
      }
    }, 50);
    const at = Date.now() + 200;
    const cpu0 = procCpuMs(reg.pid);
    for (const c of clients) c.proc.send({ cmd: 'go', at });
    const results = await Promise.all(
      clients.map((c) => c.next<HerdClientResult>('done', o.timeoutMs + 120_000)),
    );
    const totalMs = Math.max(...results.map((r) => r.wallMs));
    const cpuMs = procCpuMs(reg.pid) - cpu0;
    clearInterval(sampler);
    const mem = procMem(reg.pid);
    const done = results.flatMap((r) => r.doneMs);
    const creds = results.flatMap((r) => r.credentialsMs);
    const failures: Record<string, number> = {};
    for (const r of results)
      for (const [k, v] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + v;
    const retries = { busy: 0, rateLimited: 0, unreachable: 0, other: 0, ack: 0 };
    for (const r of results)
      for (const k of Object.keys(retries) as (keyof typeof retries)[]) retries[k] += r.retries[k];
    const clientCpuMs = results.reduce((a, r) => a + r.cpuMs, 0);
    return {
      n: o.nodes,
      ok: done.length,
      failed: o.nodes - done.length,
      failures,
      p50Ms: round(percentile(done, 50), 0),
      p99Ms: round(percentile(done, 99), 0),
      maxMs: round(Math.max(...done), 0),
      credentialsP50Ms: round(percentile(creds, 50), 0),
      credentialsP99Ms: round(percentile(creds, 99), 0),
      totalMs: round(totalMs, 0),
      retries,
      rssBeforeMb: round(rssBefore, 1),
      rssPeakSampledMb: round(Math.max(rssPeak, mem.rssMb), 1),
      hwmMb: round(mem.hwmMb, 1),
      rssAfterMb: round(mem.rssMb, 1),
      registrarCpuMs: round(cpuMs, 0),
      registrarCoreShare: round(cpuMs / totalMs, 2),
      clientCpuMs: round(clientCpuMs, 0),
      clientCoreShare: round(clientCpuMs / totalMs, 2),
      loadAfter: round(os.loadavg()[0]!, 1),
    };
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await reg.stop();
    rmSync(stateRoot, { recursive: true, force: true });
  }
}

export async function benchHerd(o: HerdOptions): Promise<HerdResult> {
  const runs: HerdRun[] = [];
  for (let r = 0; r < o.reps; r++) {
    log(
      `herd ${o.nodes} ${r + 1}/${o.reps}: preparing ${o.nodes} node state directories in ${o.clients} client processes`,
    );
    const run = await oneHerd(o, `herd${o.nodes}r${r}`, `${o.dir}/herd-${o.nodes}-${r}`);
    runs.push(run);
    log(
      `herd ${o.nodes} ${r + 1}/${o.reps}: ok ${run.ok}/${run.n}, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms ` +
        `(credentials written: p99 ${run.credentialsP99Ms} ms), total ${run.totalMs} ms, ` +
        `retries busy ${run.retries.busy} / 429 ${run.retries.rateLimited} / unreachable ${run.retries.unreachable} / ` +
        `other ${run.retries.other} / ack ${run.retries.ack}, failed ${JSON.stringify(run.failures)}, peak RSS ${run.hwmMb} MB, ` +
        `registrar CPU ${run.registrarCpuMs} ms (${run.registrarCoreShare} core), clients ${run.clientCpuMs} ms ` +
        `(${run.clientCoreShare} core), load ${run.loadAfter}`,
    );
  }
  return {
    nodes: o.nodes,
    rateLimit: o.rateLimit,
    clients: o.clients,
    runs,
    p50MedianMs: median(runs.map((r) => r.p50Ms)),
    p99MedianMs: median(runs.map((r) => r.p99Ms)),
    credentialsP99MedianMs: median(runs.map((r) => r.credentialsP99Ms)),
    totalMedianMs: median(runs.map((r) => r.totalMs)),
    hwmMedianMb: median(runs.map((r) => r.hwmMb)),
    hwmMaxMb: Math.max(...runs.map((r) => r.hwmMb)),
  };
}
