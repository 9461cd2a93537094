/**
 * Target 2: an approved node has its bundle p99 < 50 ms after the approval.
 * N nodes ask to join without a token (202 pending), then each waits in its long poll
 * (GET /v1/join/:name?key=..&wait=60, own TLS connection). The operator approves them through the
 * admin socket. Latency = from the start of the approve call to the node holding its whole 200
 * answer. Two modes:
 *   sequential: one approval at a time (the next once the node has its bundle): pure latency;
 *   burst:      all N approvals sent at once (a script approving a rack): latency under queueing.
 */
import {
  admin,
  httpsRequest,
  joinBody,
  log,
  makeNodes,
  median,
  percentile,
  pool,
  round,
  ServerChild,
  sleep,
  type HttpResult,
  type NodeIdentity,
} from './lib.js';

export interface ApproveOptions {
  dir: string;
  nodes: number;
  reps: number;
}

export interface ApproveRun {
  mode: 'sequential' | 'burst';
  n: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** How long the admin approve call itself took (it answers once the certificate is durable). */
  approveCallP50Ms: number;
  errors: number;
}

export interface ApproveResult {
  nodes: number;
  sequential: ApproveRun[];
  burst: ApproveRun[];
  p50MedianMs: number;
  p99MedianMs: number;
  burstP99MedianMs: number;
}

async function oneRun(
  reg: ServerChild,
  nodes: NodeIdentity[],
  mode: 'sequential' | 'burst',
): Promise<ApproveRun> {
  const url = reg.ready.url;
  const sock = reg.ready.adminSocket!;
  // 1. Every node asks to join without a token: pending.
  await pool(nodes.length, 8, async (i) => {
    const r = await httpsRequest(url, 'POST', '/v1/join', joinBody(nodes[i]!));
    if (r.status !== 202)
      throw new Error(`join of ${nodes[i]!.name}: expected 202, got ${r.status} ${JSON.stringify(r.body)}`);
  });
  // 2. Every node opens its long poll.
  let early = 0;
  const polls = new Map<string, Promise<HttpResult>>();
  for (const n of nodes) {
    const p = httpsRequest(url, 'GET', `/v1/join/${n.name}?key=${n.fp}&wait=60`);
    polls.set(n.name, p);
    void p.then(
      (r) => {
        if (r.status !== 200) early++;
      },
      () => early++,
    );
  }
  // Let all polls reach the registrar and park (handshakes of N connections, then one read each).
  await sleep(Math.max(1000, nodes.length * 8));
  const lat: number[] = [];
  const calls: number[] = [];
  let errors = 0;
  const approveAndWait = async (n: NodeIdentity): Promise<void> => {
    const t0 = performance.now();
    await admin(sock, 'POST', `/v1/admin/nodes/${n.name}/approve`, { operator: 'bench' });
    calls.push(performance.now() - t0);
    const r = await polls.get(n.name)!;
    if (r.status !== 200 || (r.body as { node?: string }).node !== n.name) {
      errors++;
      return;
    }
    lat.push(r.endAt - t0);
  };
  if (mode === 'sequential') {
    for (const n of nodes) await approveAndWait(n);
  } else {
    await Promise.all(nodes.map(approveAndWait));
  }
  return {
    mode,
    n: nodes.length,
    p50Ms: round(percentile(lat, 50)),
    p99Ms: round(percentile(lat, 99)),
    maxMs: round(Math.max(...lat)),
    approveCallP50Ms: round(percentile(calls, 50)),
    errors: errors + early,
  };
}

export async function benchApprove(o: ApproveOptions): Promise<ApproveResult> {
  const runs = o.reps + 1;
  log(`approve: making ${runs * o.nodes} node keys and CSRs`);
  const all = makeNodes('apr', runs * o.nodes);
  const reg = await ServerChild.start({ mode: 'registrar', dir: o.dir, rateLimit: 10_000_000 });
  try {
    const sequential: ApproveRun[] = [];
    const burst: ApproveRun[] = [];
    for (let r = 0; r < runs; r++) {
      const mode = r < o.reps ? 'sequential' : 'burst';
      const run = await oneRun(reg, all.slice(r * o.nodes, (r + 1) * o.nodes), mode);
      (mode === 'sequential' ? sequential : burst).push(run);
      log(
        `approve ${mode} ${r + 1}/${runs}: p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms, max ${run.maxMs} ms, errors ${run.errors}`,
      );
    }
    return {
      nodes: o.nodes,
      sequential,
      burst,
      p50MedianMs: median(sequential.map((s) => s.p50Ms)),
      p99MedianMs: median(sequential.map((s) => s.p99Ms)),
      burstP99MedianMs: median(burst.map((s) => s.p99Ms)),
    };
  } finally {
    await reg.stop();
  }
}
