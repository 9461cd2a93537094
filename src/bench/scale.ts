/**
 * Scale out (README "Scale out"; issue 11, and issue 12's target: two registrars on one etcd do at
 * least 1.6 x the joins/s of one). Token joins per second, and CPU per join, in these setups:
 *   one-level  one registrar on its embedded level store (the default);
 *   one-etcd   one registrar on a registry in etcd (a three-member cluster on loopback, started here);
 *   two-etcd   two registrars on one registry in etcd (one root CA: the second gets a copy of the
 *              first's, as README "Scale out" says), the clients split between them;
 *   one-etcd-own-token, two-etcd-own-token
 *              the same, each node with a one-use token of its own instead of one token for all.
 * The target is taken on one shared token (a fleet imaged with one token is the common case, and its
 * use count is then a counter every join advances); the own-token setups show what is left when
 * joins share no token.
 * Every join is a fresh TLS connection (no keep-alive, no resumption) with a new name and key; a fixed
 * count per repetition at a fixed total concurrency. All registrars start once and are warmed; the
 * repetitions then alternate the setups (each rep in another order), so background load touches all
 * alike. CPU per join is the registrars' (process.cpuUsage() in each child), etcd's (/proc, all
 * members) and this client's (TLS handshakes and CSRs signing on the same cores) over the joins;
 * with it the share of the machine's cores they used (and of the whole machine, /proc/stat: other
 * work on the machine counts there) and joins per CPU-second of the three together. On a machine
 * whose cores one registrar already fills, a second adds no capacity: joins per CPU-second then
 * says whether the second costs CPU per join. The registrars' etcd calls and commits that lost a
 * compare (store/etcd.ts etcdStats()) are counted per join.
 */
import { cpSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseToken } from '../common/proof.js';
import type { EtcdStats } from '../store/etcd.js';
import { startEtcdCluster, type EtcdCluster } from './etcd.js';
import {
  admin,
  createToken,
  httpsRequest,
  joinBody,
  log,
  makeNodes,
  median,
  pool,
  procCpuMs,
  round,
  ServerChild,
  type ChildCpu,
  type NodeIdentity,
} from './lib.js';

export const SETUPS = [
  'one-level',
  'one-etcd',
  'two-etcd',
  'one-etcd-own-token',
  'two-etcd-own-token',
] as const;
export type SetupName = (typeof SETUPS)[number];

export interface ScaleOptions {
  dir: string;
  /** Joins per setup per repetition. */
  joins: number;
  reps: number;
  /** Requests in flight at once, over all registrars of a setup. */
  concurrency: number;
}

export interface SetupResult {
  registrars: number;
  joinsPerSec: number[];
  registrarCpuMsPerJoin: number[];
  etcdCpuMsPerJoin: number[];
  clientCpuMsPerJoin: number[];
  /** etcd calls of the registrars per join (reads, commits, leases). */
  etcdCallsPerJoin: number[];
  /** Commits that lost their compare to another writer, per join. */
  lostPerJoin: number[];
  /** Commit transactions per join (a group commit carries several joins). */
  commitsPerJoin: number[];
  /** (registrars + etcd + client CPU) / (wall x cores): the share of the cores this setup used. */
  coreShare: number[];
  /** The whole machine's busy share of its cores meanwhile (/proc/stat: other work counts too). */
  machineShare: number[];
  /** Joins per CPU-second of registrars, etcd and client together. */
  joinsPerCpuSec: number[];
  medianJoinsPerSec: number;
  medianRegistrarCpuMs: number;
  medianEtcdCpuMs: number;
  medianClientCpuMs: number;
  medianEtcdCallsPerJoin: number;
  medianLostPerJoin: number;
  medianCommitsPerJoin: number;
  medianCoreShare: number;
  medianMachineShare: number;
  medianJoinsPerCpuSec: number;
}

export interface ScaleResult {
  joins: number;
  reps: number;
  concurrency: number;
  setups: Record<SetupName, SetupResult>;
  /** two-etcd / one-etcd joins/s (medians): the issue 12 target is >= 1.6. */
  ratioTwoOverOne: number;
  /** two-etcd / one-level joins/s (medians). */
  ratioTwoOverLevel: number;
  /** two-etcd-own-token / one-etcd-own-token joins/s (medians). */
  ratioTwoOverOneOwnToken: number;
  /** two-etcd / one-etcd joins per CPU-second (medians): 1.0 = the second registrar costs no CPU per join. */
  cpuEfficiencyTwoOverOne: number;
  cores: number;
}

type Token = { id: string; secret: string };

interface Setup {
  name: SetupName;
  children: ServerChild[];
  /** One token for every node of the setup; absent: each node gets a one-use token (ownTokens()). */
  token?: Token;
}

const twoRegistrars = (name: SetupName): boolean => name.startsWith('two-');

async function startSetup(name: SetupName, dir: string, etcd: EtcdCluster): Promise<Setup> {
  const store = name === 'one-level' ? undefined : `etcd://${etcd.endpoints.join(',')}/bench-${name}`;
  const base = { mode: 'registrar' as const, rateLimit: 10_000_000, ...(store ? { store } : {}) };
  const first = await ServerChild.start({ ...base, dir: path.join(dir, `${name}-0`) });
  const children = [first];
  try {
    if (twoRegistrars(name)) {
      const second = path.join(dir, `${name}-1`);
      cpSync(path.join(dir, `${name}-0`, 'registrar', 'ca'), path.join(second, 'registrar', 'ca'), {
        recursive: true,
      });
      children.push(await ServerChild.start({ ...base, dir: second }));
    }
    if (name.endsWith('-own-token')) return { name, children };
    // One token for the setup: made on the first registrar, in the shared registry for both.
    return { name, children, token: await createToken(first.ready.adminSocket!) };
  } catch (err) {
    await Promise.all(children.map((c) => c.stop()));
    throw err;
  }
}

/** A one-use token for each node (made before the measured window, on the first registrar). */
async function ownTokens(s: Setup, n: number): Promise<Token[] | undefined> {
  if (s.token) return undefined;
  const out: Token[] = [];
  await pool(n, 8, async (i) => {
    const { token } = await admin<{ token: string }>(
      s.children[0]!.ready.adminSocket!,
      'POST',
      '/v1/admin/tokens',
      {
        ttlMs: 24 * 3_600_000,
        uses: 1,
      },
    );
    const parsed = parseToken(token);
    if (!parsed) throw new Error('the registrar returned a malformed token');
    out[i] = parsed;
  });
  return out;
}

/** `nodes` joined through the setup's registrars (node i through registrar i mod k); throws unless all get 201. */
async function joinAll(
  s: Setup,
  nodes: NodeIdentity[],
  concurrency: number,
  tokens?: Token[],
): Promise<{ wallMs: number; statuses: Map<number, number> }> {
  const statuses = new Map<number, number>();
  const t0 = performance.now();
  await pool(nodes.length, concurrency, async (i) => {
    const reg = s.children[i % s.children.length]!;
    const token = tokens?.[i] ?? s.token;
    const r = await httpsRequest(reg.ready.url, 'POST', '/v1/join', joinBody(nodes[i]!, token));
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  });
  const wallMs = performance.now() - t0;
  if ((statuses.get(201) ?? 0) !== nodes.length) {
    throw new Error(`${s.name}: answers ${[...statuses].map(([k, v]) => `${k}x${v}`).join(' ')}`);
  }
  return { wallMs, statuses };
}

const etcdCpuMs = (etcd: EtcdCluster): number => etcd.pids().reduce((a, pid) => a + procCpuMs(pid), 0);
const clientCpuMs = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};
/** The machine's busy and total CPU time so far (/proc/stat, ms summed over cores). */
function machineCpuMs(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, x) => a + x, 0);
  const idle = f[3]! + f[4]!; // idle + iowait
  const tick = 1000 / 100; // USER_HZ
  return { busy: (total - idle) * tick, total: total * tick };
}
type Sample = { cpuMs: number; etcd: EtcdStats };
async function sample(children: ServerChild[]): Promise<Sample[]> {
  return Promise.all(
    children.map(async (c) => {
      const r = await c.request<ChildCpu & { etcd?: EtcdStats }>({ cmd: 'cpu' }, 'cpu');
      return { cpuMs: r.userMs + r.systemMs, etcd: r.etcd ?? { calls: 0, commits: 0, lost: 0, changes: 0 } };
    }),
  );
}
const sum = (xs: number[]): number => xs.reduce((a, x) => a + x, 0);

export async function benchScale(o: ScaleOptions): Promise<ScaleResult> {
  const warm = 40;
  const total = SETUPS.length * (warm + o.reps * o.joins);
  log(`scale: making ${total} EC P-256 node keys and CSRs`);
  const nodes = makeNodes('scale', total);
  let cursor = 0;
  const take = (n: number): NodeIdentity[] => nodes.slice(cursor, (cursor += n));

  log('scale: starting a three-member etcd cluster on loopback');
  const etcd = await startEtcdCluster({ members: 3 });
  const setups: Setup[] = [];
  try {
    for (const name of SETUPS) setups.push(await startSetup(name, o.dir, etcd));
    // Warm each (JIT, lazy paths, the first serial lease) before anything is measured.
    for (const s of setups) {
      const w = take(warm);
      await joinAll(s, w, o.concurrency, await ownTokens(s, w.length));
    }

    const res = Object.fromEntries(
      SETUPS.map((name) => [
        name,
        {
          registrars: twoRegistrars(name) ? 2 : 1,
          joinsPerSec: [] as number[],
          registrarCpuMsPerJoin: [] as number[],
          etcdCpuMsPerJoin: [] as number[],
          clientCpuMsPerJoin: [] as number[],
          etcdCallsPerJoin: [] as number[],
          lostPerJoin: [] as number[],
          commitsPerJoin: [] as number[],
          coreShare: [] as number[],
          machineShare: [] as number[],
          joinsPerCpuSec: [] as number[],
        },
      ]),
    ) as Record<SetupName, SetupResult>;
    const cores = os.cpus().length;
    for (let r = 0; r < o.reps; r++) {
      // Each repetition in another order: none is always first or last.
      const order = setups.map((_, i) => setups[(i + r) % setups.length]!);
      for (const s of order) {
        const batch = take(o.joins);
        const tokens = await ownTokens(s, batch.length);
        const s0 = await sample(s.children);
        const e0 = etcdCpuMs(etcd);
        const c0 = clientCpuMs();
        const m0 = machineCpuMs();
        const { wallMs } = await joinAll(s, batch, o.concurrency, tokens);
        const m1 = machineCpuMs();
        const c1 = clientCpuMs();
        const e1 = etcdCpuMs(etcd);
        const s1 = await sample(s.children);
        const d = (f: (x: Sample) => number): number => sum(s1.map(f)) - sum(s0.map(f));
        const regMs = d((x) => x.cpuMs);
        const etcdMs = s.name === 'one-level' ? 0 : e1 - e0;
        const ourMs = regMs + etcdMs + (c1 - c0);
        const out = res[s.name];
        out.joinsPerSec.push(round((1000 * o.joins) / wallMs, 0));
        out.registrarCpuMsPerJoin.push(round(regMs / o.joins, 3));
        out.etcdCpuMsPerJoin.push(round(etcdMs / o.joins, 3));
        out.clientCpuMsPerJoin.push(round((c1 - c0) / o.joins, 3));
        out.etcdCallsPerJoin.push(round(d((x) => x.etcd.calls) / o.joins, 2));
        out.lostPerJoin.push(round(d((x) => x.etcd.lost) / o.joins, 3));
        out.commitsPerJoin.push(round(d((x) => x.etcd.commits) / o.joins, 3));
        out.coreShare.push(round(ourMs / (wallMs * cores), 2));
        out.machineShare.push(round((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total), 2));
        out.joinsPerCpuSec.push(round((1000 * o.joins) / ourMs, 1));
        log(
          `scale rep ${r + 1}/${o.reps} ${s.name}: ${out.joinsPerSec.at(-1)} joins/s, registrar CPU ` +
            `${out.registrarCpuMsPerJoin.at(-1)} ms/join, etcd ${out.etcdCpuMsPerJoin.at(-1)} ms/join, ` +
            `client ${out.clientCpuMsPerJoin.at(-1)} ms/join; etcd calls ${out.etcdCallsPerJoin.at(-1)}/join, ` +
            `lost commits ${out.lostPerJoin.at(-1)}/join; ${Math.round(100 * out.coreShare.at(-1)!)} % of ` +
            `${cores} cores (machine ${Math.round(100 * out.machineShare.at(-1)!)} %)`,
        );
      }
    }
    for (const name of SETUPS) {
      const x = res[name];
      x.medianJoinsPerSec = median(x.joinsPerSec);
      x.medianRegistrarCpuMs = median(x.registrarCpuMsPerJoin);
      x.medianEtcdCpuMs = median(x.etcdCpuMsPerJoin);
      x.medianClientCpuMs = median(x.clientCpuMsPerJoin);
      x.medianEtcdCallsPerJoin = median(x.etcdCallsPerJoin);
      x.medianLostPerJoin = median(x.lostPerJoin);
      x.medianCommitsPerJoin = median(x.commitsPerJoin);
      x.medianCoreShare = median(x.coreShare);
      x.medianMachineShare = median(x.machineShare);
      x.medianJoinsPerCpuSec = median(x.joinsPerCpuSec);
    }
    const ratio = (a: SetupName, b: SetupName, f: (x: SetupResult) => number): number =>
      round(f(res[a]) / f(res[b]), 2);
    return {
      joins: o.joins,
      reps: o.reps,
      concurrency: o.concurrency,
      setups: res,
      ratioTwoOverOne: ratio('two-etcd', 'one-etcd', (x) => x.medianJoinsPerSec),
      ratioTwoOverLevel: ratio('two-etcd', 'one-level', (x) => x.medianJoinsPerSec),
      ratioTwoOverOneOwnToken: ratio('two-etcd-own-token', 'one-etcd-own-token', (x) => x.medianJoinsPerSec),
      cpuEfficiencyTwoOverOne: ratio('two-etcd', 'one-etcd', (x) => x.medianJoinsPerCpuSec),
      cores,
    };
  } finally {
    await Promise.all(setups.flatMap((s) => s.children.map((c) => c.stop())));
    await etcd.stop();
  }
}
