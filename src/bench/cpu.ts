/**
 * Target 1: CPU per registration at most 2x the floor.
 * Floor: a bare node:https server (TLS handshake + one RSA-2048 signature of 300 bytes per request).
 * Muster: POST /v1/join with a valid token proof. Both: a fresh TLS connection per request (no
 * keep-alive, no session resumption), server in a child process, CPU = the child's process.cpuUsage()
 * delta over the measured requests. Floor and muster repetitions alternate, so background load
 * touches both alike. Then one profiled run of each (V8 CPU profiler in the child) says where the
 * registrar's CPU goes.
 */
import path from 'node:path';
import { summariseProfile, type ProfileSummary } from './profile.js';
import {
  createToken,
  httpsRequest,
  joinBody,
  log,
  makeNodes,
  median,
  pool,
  procThreadsCpuMs,
  round,
  ServerChild,
  type NodeIdentity,
} from './lib.js';

export interface CpuOptions {
  dir: string;
  reps: number;
  perRep: number;
  concurrency: number;
  profile: boolean;
}

export interface CpuResult {
  perRep: number;
  reps: number;
  concurrency: number;
  floorMsPerReq: number[];
  musterMsPerJoin: number[];
  ratios: number[];
  floorMedianMs: number;
  musterMedianMs: number;
  ratioMedian: number;
  musterJoinsPerSec: number[];
  /** The registrar's CPU per join by thread (from /proc, 10 ms ticks summed over all repetitions). */
  musterThreadsMsPerJoin: Record<string, number>;
  floorThreadsMsPerReq: Record<string, number>;
  floorReqPerSec: number[];
  profile?: { muster: ProfileSummary; floor: ProfileSummary; musterFile: string; floorFile: string };
}

/**
 * The functions of the join path whose inclusive time the profile reports, as `name@part-of-its-url`
 * (a test checks that each of muster's and its dependencies' names is still defined there). In order:
 * route -> registration (join, joinLocked, admitLocked, issueLocked) -> admission (decide, each
 * provisioner's evaluate, the token proof) -> issuer (certify, bundle) -> store (apply, flush,
 * getNode), with the CSR and certificate code and the runtime's crypto, HTTP and TLS below.
 */
export const JOIN_PATH_FUNCTIONS = [
  'join@registrar/registration.js',
  'joinLocked@registrar/registration.js',
  'admitLocked@registrar/registration.js',
  'issueLocked@registrar/registration.js',
  'decide@registrar/admission/authorizer.js',
  'evaluate@registrar/admission/token.js',
  'evaluate@registrar/admission/install-mode.js',
  'checkProof@registrar/policy.js',
  'certify@registrar/issuer.js',
  'bundle@registrar/issuer.js',
  'apply@store/level.js',
  'flush@store/level.js',
  'getNode@store/level.js',
  'parseCsrAsync@common/x509.js',
  'importNodeKey@common/x509.js',
  'keyProblem@common/x509.js',
  'issueCertificateAsync@common/x509.js',
  'signOneShot@node:internal/crypto/sig',
  'verifyOneShot@node:internal/crypto/sig',
  'createPublicKey@node:internal/crypto/keys',
  'LOG@pino/lib/tools.js',
  'parserOnIncoming@node:_http_server',
  'tlsConnectionListener@node:_tls_wrap',
  'onhandshakedone@node:_tls_wrap',
  'runPreParsing@fastify/lib/route.js',
  'validate@fastify/lib/validation.js',
  'serialize@fastify/lib/reply.js',
];

async function runRequests(
  n: number,
  concurrency: number,
  make: (i: number) => Promise<number>,
): Promise<{ wallMs: number; statuses: Map<number, number> }> {
  const statuses = new Map<number, number>();
  const t0 = performance.now();
  await pool(n, concurrency, async (i) => {
    const s = await make(i);
    statuses.set(s, (statuses.get(s) ?? 0) + 1);
  });
  return { wallMs: performance.now() - t0, statuses };
}

const fmtStatuses = (m: Map<number, number>): string => [...m].map(([s, c]) => `${s}x${c}`).join(' ');

export async function benchCpu(o: CpuOptions): Promise<CpuResult> {
  const warm = 40;
  const profiled = o.profile ? o.perRep : 0;
  log(`cpu: making ${warm + o.reps * o.perRep + profiled} EC P-256 node keys and CSRs`);
  const nodes = makeNodes('cpu', warm + o.reps * o.perRep + profiled);
  let cursor = 0;
  const take = (n: number): NodeIdentity[] => nodes.slice(cursor, (cursor += n));

  const floor = await ServerChild.start({ mode: 'floor', dir: o.dir });
  const muster = await ServerChild.start({ mode: 'registrar', dir: o.dir, rateLimit: 10_000_000 });
  try {
    const token = await createToken(muster.ready.adminSocket!);
    const floorReq = async (n: NodeIdentity): Promise<number> =>
      (await httpsRequest(floor.ready.url, 'POST', '/v1/join', joinBody(n, token))).status;
    const joinReq = async (n: NodeIdentity): Promise<number> =>
      (await httpsRequest(muster.ready.url, 'POST', '/v1/join', joinBody(n, token))).status;

    // Warm both (JIT, lazy module paths), then measure.
    const w = take(warm);
    await runRequests(warm, o.concurrency, (i) => floorReq(w[i]!));
    await runRequests(warm, o.concurrency, (i) => joinReq(w[i]!));

    const res: CpuResult = {
      perRep: o.perRep,
      reps: o.reps,
      concurrency: o.concurrency,
      floorMsPerReq: [],
      musterMsPerJoin: [],
      ratios: [],
      floorMedianMs: NaN,
      musterMedianMs: NaN,
      ratioMedian: NaN,
      musterJoinsPerSec: [],
      floorReqPerSec: [],
      musterThreadsMsPerJoin: {},
      floorThreadsMsPerReq: {},
    };
    const threads = new Map<string, number>();
    const floorThreads = new Map<string, number>();
    for (let r = 0; r < o.reps; r++) {
      const batch = take(o.perRep);
      const f0 = await floor.cpuMs();
      const ft0 = procThreadsCpuMs(floor.pid);
      const fr = await runRequests(o.perRep, o.concurrency, (i) => floorReq(batch[i]!));
      const ft1 = procThreadsCpuMs(floor.pid);
      const f1 = await floor.cpuMs();
      for (const [k, v] of ft1) floorThreads.set(k, (floorThreads.get(k) ?? 0) + v - (ft0.get(k) ?? 0));
      const m0 = await muster.cpuMs();
      const t0 = procThreadsCpuMs(muster.pid);
      const mr = await runRequests(o.perRep, o.concurrency, (i) => joinReq(batch[i]!));
      const t1 = procThreadsCpuMs(muster.pid);
      const m1 = await muster.cpuMs();
      for (const [k, v] of t1) threads.set(k, (threads.get(k) ?? 0) + v - (t0.get(k) ?? 0));
      if ((fr.statuses.get(201) ?? 0) !== o.perRep)
        throw new Error(`floor answered ${fmtStatuses(fr.statuses)}`);
      if ((mr.statuses.get(201) ?? 0) !== o.perRep)
        throw new Error(`registrar answered ${fmtStatuses(mr.statuses)}`);
      const fms = (f1 - f0) / o.perRep;
      const mms = (m1 - m0) / o.perRep;
      res.floorMsPerReq.push(round(fms, 3));
      res.musterMsPerJoin.push(round(mms, 3));
      res.ratios.push(round(mms / fms, 2));
      res.floorReqPerSec.push(round((1000 * o.perRep) / fr.wallMs, 0));
      res.musterJoinsPerSec.push(round((1000 * o.perRep) / mr.wallMs, 0));
      log(
        `cpu rep ${r + 1}/${o.reps}: floor ${fms.toFixed(3)} ms/req, muster ${mms.toFixed(3)} ms/join, ratio ${(mms / fms).toFixed(2)}`,
      );
    }
    for (const [k, v] of threads)
      if (v > 0) res.musterThreadsMsPerJoin[k] = round(v / (o.reps * o.perRep), 3);
    for (const [k, v] of floorThreads)
      if (v > 0) res.floorThreadsMsPerReq[k] = round(v / (o.reps * o.perRep), 3);
    res.floorMedianMs = median(res.floorMsPerReq);
    res.musterMedianMs = median(res.musterMsPerJoin);
    res.ratioMedian = median(res.ratios);

    if (o.profile) {
      const batch = take(profiled);
      const musterFile = path.join(o.dir, 'muster-join.cpuprofile');
      const floorFile = path.join(o.dir, 'floor.cpuprofile');
      await muster.profileStart(250);
      await runRequests(profiled, o.concurrency, (i) => joinReq(batch[i]!));
      await muster.profileStop(musterFile);
      await floor.profileStart(250);
      await runRequests(profiled, o.concurrency, (i) => floorReq(batch[i]!));
      await floor.profileStop(floorFile);
      res.profile = {
        muster: summariseProfile(musterFile, JOIN_PATH_FUNCTIONS, 25),
        floor: summariseProfile(floorFile, ['sign@node:internal/crypto/sig'], 10),
        musterFile,
        floorFile,
      };
    }
    return res;
  } finally {
    await Promise.all([floor.stop(), muster.stop()]);
  }
}
