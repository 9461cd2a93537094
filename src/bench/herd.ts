/**
 * Target 3: 1,000 nodes at once. N token joins start at the same instant, each on a fresh TLS
 * connection, against one freshly started registrar (per-IP rate limit raised: every client here is
 * 127.0.0.1, where a real herd comes from N addresses). A node that gets 429/503 honours Retry-After
 * with the agent's jitter (hint + up to 20 %), one that cannot connect retries after 0.1-1 s; all
 * stop at a deadline. Per node: time from the start to its 201/200. The registrar's RSS is sampled
 * every 50 ms and its peak (VmHWM) read at the end.
 */
import {
  createToken,
  httpsRequest,
  joinBody,
  log,
  makeNodes,
  median,
  percentile,
  procCpuMs,
  procMem,
  round,
  ServerChild,
  retryAfterMs,
  sleep,
  type NodeIdentity,
} from './lib.js';

export interface HerdOptions {
  dir: string;
  nodes: number;
  reps: number;
  rateLimit: number;
  deadlineMs: number;
}

export interface HerdRun {
  n: number;
  ok: number;
  failed: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  totalMs: number;
  status429: number;
  status503: number;
  connectErrors: number;
  otherStatuses: Record<string, number>;
  rssBeforeMb: number;
  rssPeakSampledMb: number;
  hwmMb: number;
  rssAfterMb: number;
  /** The registrar's CPU during the herd (all threads, /proc) and as a share of one core over the wall time. */
  registrarCpuMs: number;
  registrarCoreShare: number;
}

export interface HerdResult {
  nodes: number;
  rateLimit: number;
  runs: HerdRun[];
  p50MedianMs: number;
  p99MedianMs: number;
  totalMedianMs: number;
  hwmMedianMb: number;
  hwmMaxMb: number;
}

async function oneHerd(o: HerdOptions, nodes: NodeIdentity[], dir: string): Promise<HerdRun> {
  const reg = await ServerChild.start({ mode: 'registrar', dir, rateLimit: o.rateLimit });
  try {
    const token = await createToken(reg.ready.adminSocket!);
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
    const counts = { s429: 0, s503: 0, conn: 0 };
    const other: Record<string, number> = {};
    const times: number[] = [];
    let failed = 0;
    const cpu0 = procCpuMs(reg.pid);
    const t0 = performance.now();
    const deadline = t0 + o.deadlineMs;
    const one = async (n: NodeIdentity): Promise<void> => {
      while (performance.now() < deadline) {
        let delay: number;
        try {
          const r = await httpsRequest(reg.ready.url, 'POST', '/v1/join', joinBody(n, token), o.deadlineMs);
          if (r.status === 201 || r.status === 200) {
            times.push(r.endAt - t0);
            return;
          }
          if (r.status === 429) counts.s429++;
          else if (r.status === 503) counts.s503++;
          else {
            other[r.status] = (other[r.status] ?? 0) + 1;
            failed++;
            return;
          }
          const hint = retryAfterMs(r) ?? 2000;
          delay = hint + Math.random() * Math.min(hint * 0.2, 5000);
        } catch {
          counts.conn++;
          delay = 100 + Math.random() * 900;
        }
        await sleep(Math.min(delay, Math.max(0, deadline - performance.now())));
      }
      failed++;
    };
    await Promise.all(nodes.map(one));
    const totalMs = performance.now() - t0;
    const cpuMs = procCpuMs(reg.pid) - cpu0;
    clearInterval(sampler);
    const mem = procMem(reg.pid);
    return {
      n: nodes.length,
      ok: times.length,
      failed,
      p50Ms: round(percentile(times, 50), 0),
      p99Ms: round(percentile(times, 99), 0),
      maxMs: round(Math.max(...times), 0),
      totalMs: round(totalMs, 0),
      status429: counts.s429,
      status503: counts.s503,
      connectErrors: counts.conn,
      otherStatuses: other,
      rssBeforeMb: round(rssBefore, 1),
      rssPeakSampledMb: round(Math.max(rssPeak, mem.rssMb), 1),
      hwmMb: round(mem.hwmMb, 1),
      rssAfterMb: round(mem.rssMb, 1),
      registrarCpuMs: round(cpuMs, 0),
      registrarCoreShare: round(cpuMs / totalMs, 2),
    };
  } finally {
    await reg.stop();
  }
}

export async function benchHerd(o: HerdOptions): Promise<HerdResult> {
  const runs: HerdRun[] = [];
  for (let r = 0; r < o.reps; r++) {
    log(`herd ${r + 1}/${o.reps}: making ${o.nodes} node keys and CSRs`);
    const nodes = makeNodes(`herd${r}`, o.nodes);
    const run = await oneHerd(o, nodes, `${o.dir}/herd-${r}`);
    runs.push(run);
    log(
      `herd ${r + 1}/${o.reps}: ok ${run.ok}/${run.n}, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms, total ${run.totalMs} ms, ` +
        `429 x${run.status429}, 503 x${run.status503}, connect errors ${run.connectErrors}, peak RSS ${run.hwmMb} MB, ` +
        `registrar CPU ${run.registrarCpuMs} ms (${run.registrarCoreShare} core)`,
    );
  }
  return {
    nodes: o.nodes,
    rateLimit: o.rateLimit,
    runs,
    p50MedianMs: median(runs.map((r) => r.p50Ms)),
    p99MedianMs: median(runs.map((r) => r.p99Ms)),
    totalMedianMs: median(runs.map((r) => r.totalMs)),
    hwmMedianMb: median(runs.map((r) => r.hwmMb)),
    hwmMaxMb: Math.max(...runs.map((r) => r.hwmMb)),
  };
}
