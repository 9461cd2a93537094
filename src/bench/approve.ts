/**
 * Target 5b (issue 12): an approved node has its bundle p99 < 20 ms after the approval, with 1,000
 * other nodes waiting in their long polls.
 *
 * `waiting + approvals` nodes ask to join without a token (202 pending), then each waits in its long
 * poll (GET /v1/join/:name?key=..&wait=60&ts=..&sig=.., signed with its key as a node signs it, own
 * TLS connection), re-polling when a poll runs out or its connection is refused. The nodes come from 16 loopback addresses
 * (127.0.0.x), as a rack's nodes come from their own: the registrar bounds pending records and
 * parked polls per source address (service.ts, fallback/api.ts). The operator approves through the
 * admin socket; latency = from the start of the approve call to the node holding its whole 200
 * answer. After one approval on a new admin connection (timed alone: the approver's identity is read
 * once per connection), two modes, each with at least `waiting` others parked throughout:
 *   sequential: `approvals` approvals one at a time (the next once the node has its bundle);
 *   burst:      `burst` approvals sent at once (a script approving a rack): latency under queueing.
 */
import { nodeSignedPayload, signNode } from '../common/proof.js';
import {
  admin,
  httpsRequest,
  joinBody,
  log,
  makeNodes,
  percentile,
  pool,
  procCpuMs,
  round,
  ServerChild,
  sleep,
  type HttpResult,
  type NodeIdentity,
} from './lib.js';

export interface ApproveOptions {
  dir: string;
  /** Nodes left waiting in their long polls while the measured ones are approved. */
  waiting: number;
  /** Approvals measured one at a time. */
  approvals: number;
  /** Approvals sent at once. */
  burst: number;
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
  /** Nodes parked in their long polls besides the ones approved (the least there were at any time). */
  nodes: number;
  /** approve -> bundle of the first approval, on a new admin connection (the approver's identity read). */
  coldApproveMs: number;
  sequential: ApproveRun;
  burst: ApproveRun;
  p50MedianMs: number;
  p99MedianMs: number;
  burstP99MedianMs: number;
}

const SOURCES = 16;
const source = (i: number): string => `127.0.0.${2 + (i % SOURCES)}`;

/** A node's long poll, signed with its key (DESIGN "HTTPS API": a fingerprint alone is public). */
function pollPath(n: NodeIdentity, waitS: number): string {
  const ts = Math.floor(Date.now() / 1000);
  const sig = signNode(n.key, nodeSignedPayload('poll', n.name, n.fp, ts));
  return `/v1/join/${n.name}?key=${n.fp}&wait=${waitS}&ts=${ts}&sig=${sig}`;
}

export async function benchApprove(o: ApproveOptions): Promise<ApproveResult> {
  const total = o.waiting + 1 + o.approvals + o.burst;
  log(`approve: making ${total} node keys and CSRs`);
  const nodes = makeNodes('apr', total);
  const reg = await ServerChild.start({ mode: 'registrar', dir: o.dir, rateLimit: 10_000_000 });
  let stopping = false;
  try {
    const url = reg.ready.url;
    const sock = reg.ready.adminSocket!;
    // 1. Every node asks to join without a token: pending.
    await pool(total, 8, async (i) => {
      const r = await httpsRequest(url, 'POST', '/v1/join', joinBody(nodes[i]!), 120_000, source(i));
      if (r.status !== 202)
        throw new Error(`join of ${nodes[i]!.name}: expected 202, got ${r.status} ${JSON.stringify(r.body)}`);
    });
    log(`approve: ${total} nodes pending; opening their long polls`);
    // 2. Every node waits in its long poll, and polls again when one runs out (202), until it has its
    // bundle (200) or the bench ends.
    let early = 0;
    const bundles = new Map<string, Promise<HttpResult>>();
    // Nodes that came at different times re-poll at different times: the first waits are spread over
    // 20-60 s (all polls opened at once would all run out, and come back, in the same second).
    const parkedFor = (n: NodeIdentity, i: number): Promise<HttpResult> =>
      (async () => {
        let waitS = 60 - Math.floor((40 * i) / total);
        for (;;) {
          let r: HttpResult;
          try {
            r = await httpsRequest(url, 'GET', pollPath(n, waitS), undefined, 90_000, source(i));
            waitS = 60;
          } catch (err) {
            // The registrar sheds TLS handshakes beyond its queue (a thousand at once): a node retries.
            if (stopping) throw err;
            await sleep(200 + Math.random() * 800);
            continue;
          }
          if (r.status === 202 && !stopping) continue;
          if (r.status !== 200 && !stopping) early++;
          return r;
        }
      })();
    nodes.forEach((n, i) => {
      const p = parkedFor(n, i);
      p.catch(() => undefined);
      bundles.set(n.name, p);
    });
    // Let all polls reach the registrar and park (handshakes of N connections, then one read each):
    // until the registrar has been idle for a second (under 5% of a core), at most two minutes.
    await sleep(1000);
    for (let t = 0, last = procCpuMs(reg.pid); t < 120; t++) {
      await sleep(1000);
      const now = procCpuMs(reg.pid);
      if (now - last < 50) break;
      last = now;
    }

    const measure = async (
      mode: ApproveRun['mode'],
      batch: NodeIdentity[],
      parallel: boolean,
    ): Promise<ApproveRun> => {
      const lat: number[] = [];
      const calls: number[] = [];
      let errors = 0;
      const approveAndWait = async (n: NodeIdentity): Promise<void> => {
        const t0 = performance.now();
        await admin(sock, 'POST', `/v1/admin/nodes/${n.name}/approve`, { operator: 'bench' });
        calls.push(performance.now() - t0);
        const r = await bundles.get(n.name)!.catch((err: Error) => err);
        if (r instanceof Error || r.status !== 200 || (r.body as { node?: string }).node !== n.name) {
          if (errors++ === 0)
            log(
              `approve: ${n.name}: ${r instanceof Error ? r.message : `${r.status} ${JSON.stringify(r.body)}`}`,
            );
          return;
        }
        lat.push(r.endAt - t0);
      };
      if (parallel) await Promise.all(batch.map(approveAndWait));
      else for (const n of batch) await approveAndWait(n);
      const run: ApproveRun = {
        mode,
        n: batch.length,
        p50Ms: round(percentile(lat, 50)),
        p99Ms: round(percentile(lat, 99)),
        maxMs: round(Math.max(...lat)),
        approveCallP50Ms: round(percentile(calls, 50)),
        errors,
      };
      log(
        `approve ${mode} (${batch.length}, ${o.waiting}+ waiting): p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms, ` +
          `max ${run.maxMs} ms, approve call p50 ${run.approveCallP50Ms} ms, errors ${errors}`,
      );
      return run;
    };
    // The first approval on a new admin connection also reads who is approving (peer-cred.ts: a perl
    // process, once per connection, cached on it): timed on its own, then the measured approvals go
    // over that one kept-alive connection, as an operator's script or the admin page would.
    const cold = await measure('sequential', nodes.slice(o.waiting, o.waiting + 1), false);
    const sequential = await measure(
      'sequential',
      nodes.slice(o.waiting + 1, o.waiting + 1 + o.approvals),
      false,
    );
    const burst = await measure('burst', nodes.slice(o.waiting + 1 + o.approvals), true);
    sequential.errors += early;
    return {
      nodes: o.waiting,
      coldApproveMs: cold.p50Ms,
      sequential,
      burst,
      p50MedianMs: sequential.p50Ms,
      p99MedianMs: sequential.p99Ms,
      burstP99MedianMs: burst.p99Ms,
    };
  } finally {
    stopping = true;
    await reg.stop();
  }
}
