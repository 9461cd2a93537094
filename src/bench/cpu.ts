/**
 * Issue 12, targets 1 and 5a: CPU per join against a floor, for token joins and install-mode joins,
 * and CPU per join on a large registry against an empty one.
 * Floor: a bare node:https server (TLS handshake + one RSA-2048 signature of 300 bytes per request).
 * Essential: a bare node:https server doing only the work no registrar can skip for a token join
 * (bench/child.ts startEssential: the floor's work, plus the CSR's proof of possession, the token
 * HMAC, an fsync'd group-committed write and a ~3 kB answer): what of muster's gap to the floor is
 * essential, and what is muster's own (issue 12: "why the rest cannot go").
 * Muster: POST /v1/join with a valid token proof (one registrar), and without one while install mode
 * is on for any address (a second registrar, so that neither rule sees the other's state). Every
 * request is a fresh TLS connection (no keep-alive, no session resumption), `concurrency` at a time
 * (the issue's measurement: 100), each server in its own child process; CPU = the child's
 * process.cpuUsage() delta over the measured requests (all its threads), joins/s = requests over
 * the wall time of the repetition. Floor and registrars take turns within each repetition, so
 * background load touches all alike; ratios are taken within a repetition, then the median.
 * With `bigStore`, a third registrar runs on a copy of a store of that many records (bench/store.ts
 * buildStore) and takes token joins in the same turns: CPU per join there over the empty one's.
 * Then one profiled run of the token registrar (V8 CPU profiler in the child) says where its CPU goes.
 */
import { copyFileSync, linkSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseToken } from '../common/proof.js';
import { summariseProfile, type ProfileSummary } from './profile.js';
import {
  admin,
  createToken,
  httpsRequest,
  joinBody,
  log,
  makeNodes,
  median,
  pool,
  procThreadsCpuMs,
  retryAfterMs,
  round,
  ServerChild,
  sleep,
  type NodeIdentity,
} from './lib.js';
import { cachedStore } from './store.js';

export interface CpuOptions {
  dir: string;
  reps: number;
  perRep: number;
  concurrency: number;
  profile: boolean;
  /** Records in the large registry (target 5a: 1,000,000); 0 or absent: no large-registry runs. */
  bigStore?: number;
}

/** One server's figures over the repetitions. */
export interface ServerRuns {
  /** CPU ms per request, per repetition. */
  msPerReq: number[];
  /** Requests per second (wall), per repetition. */
  perSec: number[];
  /** CPU ms per request by thread, summed over all repetitions (/proc, 10 ms ticks). */
  threadsMsPerReq: Record<string, number>;
  medianMs: number;
  medianPerSec: number;
}

export interface CpuResult {
  perRep: number;
  reps: number;
  concurrency: number;
  floor: ServerRuns;
  essential: ServerRuns;
  token: ServerRuns;
  install: ServerRuns;
  /** Per repetition: registrar CPU per join / floor CPU per request, and joins/s over the floor's. */
  ratios: { token: number[]; install: number[]; tokenRate: number[]; installRate: number[] };
  /**
   * Per repetition: the essential server's CPU per join and joins/s over the floor's, and the token
   * registrar's CPU per join over the essential server's (muster's own overhead).
   */
  essentialRatios: { cpu: number[]; rate: number[]; tokenOverEssential: number[] };
  ratioEssential: number;
  rateRatioEssential: number;
  ratioTokenEssential: number;
  ratioToken: number;
  ratioInstall: number;
  rateRatioToken: number;
  rateRatioInstall: number;
  /** Answers 503 (load shed) over the whole run, each asked again. */
  shed: number;
  big?: { records: number; runs: ServerRuns; ratios: number[]; ratio: number; buildMs: number };
  profile?: {
    muster: ProfileSummary;
    floor: ProfileSummary;
    essential: ProfileSummary;
    musterFile: string;
    floorFile: string;
    essentialFile: string;
  };
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

/** The essential server's steps (bench/child.ts startEssential) whose inclusive time its profile reports. */
export const ESSENTIAL_FUNCTIONS = [
  'provenSpki@bench/child.js',
  'joinProofMac@common/proof.js',
  'flush@bench/child.js',
  'signOneShot@node:internal/crypto/sig',
  'verifyOneShot@node:internal/crypto/sig',
  'createPublicKey@node:internal/crypto/keys',
  'parserOnIncoming@node:_http_server',
  'tlsConnectionListener@node:_tls_wrap',
  'onhandshakedone@node:_tls_wrap',
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

/**
 * A copy of a built store that a registrar may write to, cheap on a million records: leveldb never
 * rewrites a table file (.ldb) in place, so those are hard links; everything else (its log, MANIFEST,
 * CURRENT, the CA) is copied.
 */
function linkCopy(from: string, to: string): void {
  mkdirSync(to, { recursive: true, mode: 0o700 });
  for (const name of readdirSync(from)) {
    const src = path.join(from, name);
    const dst = path.join(to, name);
    if (statSync(src).isDirectory()) linkCopy(src, dst);
    else if (name.endsWith('.ldb')) linkSync(src, dst);
    else copyFileSync(src, dst);
  }
}

interface Turn {
  child: ServerChild;
  request: (n: NodeIdentity) => Promise<number>;
  cpu: number[];
  perSec: number[];
  threads: Map<string, number>;
}

const summary = (t: Turn, requests: number): ServerRuns => ({
  msPerReq: t.cpu.map((x) => round(x, 3)),
  perSec: t.perSec.map((x) => round(x, 0)),
  threadsMsPerReq: Object.fromEntries(
    [...t.threads].filter(([, v]) => v > 0).map(([k, v]) => [k, round(v / requests, 3)]),
  ),
  medianMs: median(t.cpu),
  medianPerSec: median(t.perSec),
});

export async function benchCpu(o: CpuOptions): Promise<CpuResult> {
  // Requests each server answers before anything is measured: a registrar serves thousands of joins
  // in its life, and V8 settles its code over the first several hundred (main thread 2.67 -> 2.08 ->
  // 1.96 ms a join over three windows of 1,000; docs/benchmarks.md "A token join, third session").
  // The floor gets the same.
  const warm = 400;
  const profiled = o.profile ? o.perRep : 0;
  const kinds = o.bigStore ? 3 : 2;
  const total = warm * kinds + o.reps * o.perRep * kinds + profiled;
  log(`cpu: making ${total} EC P-256 node keys and CSRs`);
  const nodes = makeNodes('cpu', total);
  let cursor = 0;
  const take = (n: number): NodeIdentity[] => nodes.slice(cursor, (cursor += n));

  let big: { child: ServerChild; token: { id: string; secret: string }; buildMs: number } | undefined;
  const children: ServerChild[] = [];
  const start = async (c: Parameters<typeof ServerChild.start>[0]): Promise<ServerChild> => {
    const child = await ServerChild.start(c);
    children.push(child);
    return child;
  };
  try {
    const floor = await start({ mode: 'floor', dir: o.dir });
    const tokenReg = await start({
      mode: 'registrar',
      dir: path.join(o.dir, 'token'),
      rateLimit: 10_000_000,
    });
    const installReg = await start({
      mode: 'registrar',
      dir: path.join(o.dir, 'install'),
      rateLimit: 10_000_000,
    });
    const token = await createToken(tokenReg.ready.adminSocket!);
    // Checks the proofs of the same token: it answers the very bodies the token registrar answers.
    const essential = await start({ mode: 'essential', dir: path.join(o.dir, 'essential'), token });
    // Install mode for any address (the bench talks over loopback, which is no advertised link).
    await admin(installReg.ready.adminSocket!, 'POST', '/v1/admin/install-mode', {
      on: true,
      forMs: 24 * 3_600_000,
      remote: true,
    });
    if (o.bigStore) {
      const { store, buildMs } = await cachedStore(o.bigStore);
      const stateDir = path.join(o.dir, 'big-state');
      log(`cpu: linking a copy of the ${o.bigStore}-record store into ${stateDir}`);
      linkCopy(store.stateDir, stateDir);
      const child = await start({
        mode: 'registrar',
        dir: path.join(o.dir, 'big'),
        stateDir,
        cluster: 'bench',
        rateLimit: 10_000_000,
      });
      const parsed = parseToken(store.token);
      if (!parsed) throw new Error('the built store has a malformed token');
      big = { child, token: parsed, buildMs };
    }

    // A registrar that sheds load answers 503 with Retry-After: the node asks again, as a real one
    // does (a fresh proof, since its timestamp moved on). The refused requests' CPU counts against
    // the joins, and their wait against joins/s.
    let shed = 0;
    const post = (child: ServerChild, t?: { id: string; secret: string }) => async (n: NodeIdentity) => {
      for (let attempt = 1; ; attempt++) {
        const res = await httpsRequest(child.ready.url, 'POST', '/v1/join', joinBody(n, t));
        if (res.status !== 503 || attempt === 20) return res.status;
        shed++;
        await sleep(Math.min(retryAfterMs(res) ?? 1000, 2000));
      }
    };
    const turn = (child: ServerChild, request: Turn['request']): Turn => ({
      child,
      request,
      cpu: [],
      perSec: [],
      threads: new Map(),
    });
    const turns = {
      floor: turn(floor, post(floor, token)),
      essential: turn(essential, post(essential, token)),
      token: turn(tokenReg, post(tokenReg, token)),
      install: turn(installReg, post(installReg)),
      ...(big ? { big: turn(big.child, post(big.child, big.token)) } : {}),
    };
    const registrars = Object.entries(turns).filter(([k]) => k !== 'floor' && k !== 'essential');

    // Warm each (JIT, lazy module paths; the big store's first reads), then measure.
    const w = take(warm * registrars.length);
    await runRequests(warm, o.concurrency, (i) => turns.floor.request(w[i]!));
    await runRequests(warm, o.concurrency, (i) => turns.essential.request(w[i]!));
    for (const [i, [, t]] of registrars.entries())
      await runRequests(warm, o.concurrency, (j) => t.request(w[i * warm + j]!));

    for (let r = 0; r < o.reps; r++) {
      const batches = registrars.map(() => take(o.perRep));
      // The floor answers the same bodies as the token registrar (it never looks at them), and so
      // does the essential server (its own database: the names are new to it). Each body's proof is
      // stamped when it is sent, so every turn is within the proof window.
      const all: [string, Turn, NodeIdentity[]][] = [
        ['floor', turns.floor, batches[0]!],
        ['essential', turns.essential, batches[0]!],
        ...registrars.map(([k, t], i): [string, Turn, NodeIdentity[]] => [k, t, batches[i]!]),
      ];
      // Each repetition starts with the next server: no server always runs first or after another.
      const order = all.map((_, i) => all[(i + r) % all.length]!);
      const line: string[] = [];
      for (const [name, t, batch] of order) {
        const c0 = await t.child.cpuMs();
        const t0 = procThreadsCpuMs(t.child.pid);
        const res = await runRequests(o.perRep, o.concurrency, (i) => t.request(batch[i]!));
        const t1 = procThreadsCpuMs(t.child.pid);
        const c1 = await t.child.cpuMs();
        if ((res.statuses.get(201) ?? 0) !== o.perRep)
          throw new Error(
            `${name === 'floor' || name === 'essential' ? `the ${name} server` : `the ${name} registrar`} answered ${fmtStatuses(res.statuses)}`,
          );
        for (const [k, v] of t1) t.threads.set(k, (t.threads.get(k) ?? 0) + v - (t0.get(k) ?? 0));
        t.cpu.push((c1 - c0) / o.perRep);
        t.perSec.push((1000 * o.perRep) / res.wallMs);
        line.push(
          `${name} ${((c1 - c0) / o.perRep).toFixed(3)} ms, ${((1000 * o.perRep) / res.wallMs).toFixed(0)}/s`,
        );
      }
      log(
        `cpu rep ${r + 1}/${o.reps}: ${line.join('; ')}${shed ? ` (${shed} answers 503 so far, asked again)` : ''}`,
      );
    }

    const n = o.reps * o.perRep;
    const ratio = (a: number[], b: number[]): number[] => a.map((x, i) => round(x / b[i]!, 2));
    const ratios = {
      token: ratio(turns.token.cpu, turns.floor.cpu),
      install: ratio(turns.install.cpu, turns.floor.cpu),
      tokenRate: ratio(turns.token.perSec, turns.floor.perSec),
      installRate: ratio(turns.install.perSec, turns.floor.perSec),
    };
    const essentialRatios = {
      cpu: ratio(turns.essential.cpu, turns.floor.cpu),
      rate: ratio(turns.essential.perSec, turns.floor.perSec),
      tokenOverEssential: ratio(turns.token.cpu, turns.essential.cpu),
    };
    const res: CpuResult = {
      perRep: o.perRep,
      reps: o.reps,
      concurrency: o.concurrency,
      floor: summary(turns.floor, n),
      essential: summary(turns.essential, n),
      token: summary(turns.token, n),
      install: summary(turns.install, n),
      ratios,
      essentialRatios,
      ratioEssential: median(essentialRatios.cpu),
      rateRatioEssential: median(essentialRatios.rate),
      ratioTokenEssential: median(essentialRatios.tokenOverEssential),
      ratioToken: median(ratios.token),
      ratioInstall: median(ratios.install),
      rateRatioToken: median(ratios.tokenRate),
      rateRatioInstall: median(ratios.installRate),
      shed,
    };
    if (big && turns.big) {
      const bigRatios = ratio(turns.big.cpu, turns.token.cpu);
      res.big = {
        records: o.bigStore!,
        runs: summary(turns.big, n),
        ratios: bigRatios,
        ratio: median(bigRatios),
        buildMs: round(big.buildMs, 0),
      };
    }

    if (o.profile) {
      const batch = take(profiled);
      const musterFile = path.join(o.dir, 'muster-join.cpuprofile');
      const floorFile = path.join(o.dir, 'floor.cpuprofile');
      await tokenReg.profileStart(250);
      await runRequests(profiled, o.concurrency, (i) => turns.token.request(batch[i]!));
      await tokenReg.profileStop(musterFile);
      await floor.profileStart(250);
      await runRequests(profiled, o.concurrency, (i) => turns.floor.request(batch[i]!));
      await floor.profileStop(floorFile);
      const essentialFile = path.join(o.dir, 'essential.cpuprofile');
      await essential.profileStart(250);
      await runRequests(profiled, o.concurrency, (i) => turns.essential.request(batch[i]!));
      await essential.profileStop(essentialFile);
      res.profile = {
        muster: summariseProfile(musterFile, JOIN_PATH_FUNCTIONS, 25),
        floor: summariseProfile(floorFile, ['sign@node:internal/crypto/sig'], 10),
        essential: summariseProfile(essentialFile, ESSENTIAL_FUNCTIONS, 15),
        musterFile,
        floorFile,
        essentialFile,
      };
    }
    return res;
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}
