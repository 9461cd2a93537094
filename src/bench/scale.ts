/**
 * Scale out (README "Scale out"; issue 11, and issue 12's target: two registrars on one etcd do at
 * least 1.6 x the joins/s of one). Token joins per second, and CPU per join, in three setups:
 *   one-level  one registrar on its embedded level store (the default);
 *   one-etcd   one registrar on a registry in etcd (a three-member cluster on loopback, started here);
 *   two-etcd   two registrars on one registry in etcd (one root CA: the second gets a copy of the
 *              first's, as README "Scale out" says), the clients split between them.
 * Every join is a fresh TLS connection (no keep-alive, no resumption) with a new name and key; a fixed
 * count per repetition at a fixed total concurrency. All registrars start once and are warmed; the
 * repetitions then alternate the setups (each rep in another order), so background load touches all
 * alike. CPU per join is the registrars' (process.cpuUsage() in each child), etcd's (/proc, all
 * members) and this client's (TLS handshakes and CSRs signing on the same cores) over the joins.
 */
import { cpSync } from 'node:fs';
import path from 'node:path';
import { startEtcdCluster, type EtcdCluster } from './etcd.js';
import {
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
  type NodeIdentity,
} from './lib.js';

export const SETUPS = ['one-level', 'one-etcd', 'two-etcd'] as const;
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
  medianJoinsPerSec: number;
  medianRegistrarCpuMs: number;
  medianEtcdCpuMs: number;
  medianClientCpuMs: number;
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
}

interface Setup {
  name: SetupName;
  children: ServerChild[];
  token: { id: string; secret: string };
}

async function startSetup(name: SetupName, dir: string, etcd: EtcdCluster): Promise<Setup> {
  const store = name === 'one-level' ? undefined : `etcd://${etcd.endpoints.join(',')}/bench-${name}`;
  const base = { mode: 'registrar' as const, rateLimit: 10_000_000, ...(store ? { store } : {}) };
  const first = await ServerChild.start({ ...base, dir: path.join(dir, `${name}-0`) });
  const children = [first];
  try {
    if (name === 'two-etcd') {
      const second = path.join(dir, `${name}-1`);
      cpSync(path.join(dir, `${name}-0`, 'registrar', 'ca'), path.join(second, 'registrar', 'ca'), {
        recursive: true,
      });
      children.push(await ServerChild.start({ ...base, dir: second }));
    }
    // One token for the setup: made on the first registrar, in the shared registry for both.
    return { name, children, token: await createToken(first.ready.adminSocket!) };
  } catch (err) {
    await Promise.all(children.map((c) => c.stop()));
    throw err;
  }
}

/** `nodes` joined through the setup's registrars (node i through registrar i mod k); throws unless all get 201. */
async function joinAll(
  s: Setup,
  nodes: NodeIdentity[],
  concurrency: number,
): Promise<{ wallMs: number; statuses: Map<number, number> }> {
  const statuses = new Map<number, number>();
  const t0 = performance.now();
  await pool(nodes.length, concurrency, async (i) => {
    const reg = s.children[i % s.children.length]!;
    const r = await httpsRequest(reg.ready.url, 'POST', '/v1/join', joinBody(nodes[i]!, s.token));
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
    for (const s of setups) await joinAll(s, take(warm), o.concurrency);

    const res = Object.fromEntries(
      SETUPS.map((name) => [
        name,
        {
          registrars: name === 'two-etcd' ? 2 : 1,
          joinsPerSec: [] as number[],
          registrarCpuMsPerJoin: [] as number[],
          etcdCpuMsPerJoin: [] as number[],
          clientCpuMsPerJoin: [] as number[],
        },
      ]),
    ) as Record<SetupName, SetupResult>;
    for (let r = 0; r < o.reps; r++) {
      // Each repetition in another order: none is always first or last.
      const order = setups.map((_, i) => setups[(i + r) % setups.length]!);
      for (const s of order) {
        const batch = take(o.joins);
        const cpu0 = await Promise.all(s.children.map((c) => c.cpuMs()));
        const e0 = etcdCpuMs(etcd);
        const c0 = clientCpuMs();
        const { wallMs } = await joinAll(s, batch, o.concurrency);
        const c1 = clientCpuMs();
        const e1 = etcdCpuMs(etcd);
        const cpu1 = await Promise.all(s.children.map((c) => c.cpuMs()));
        const regMs = cpu1.reduce((a, x, i) => a + x - cpu0[i]!, 0);
        const out = res[s.name];
        out.joinsPerSec.push(round((1000 * o.joins) / wallMs, 0));
        out.registrarCpuMsPerJoin.push(round(regMs / o.joins, 3));
        out.etcdCpuMsPerJoin.push(round((e1 - e0) / o.joins, 3));
        out.clientCpuMsPerJoin.push(round((c1 - c0) / o.joins, 3));
        log(
          `scale rep ${r + 1}/${o.reps} ${s.name}: ${out.joinsPerSec.at(-1)} joins/s, registrar CPU ` +
            `${out.registrarCpuMsPerJoin.at(-1)} ms/join, etcd ${out.etcdCpuMsPerJoin.at(-1)} ms/join, ` +
            `client ${out.clientCpuMsPerJoin.at(-1)} ms/join`,
        );
      }
    }
    for (const name of SETUPS) {
      const x = res[name];
      x.medianJoinsPerSec = median(x.joinsPerSec);
      x.medianRegistrarCpuMs = median(x.registrarCpuMsPerJoin);
      x.medianEtcdCpuMs = median(x.etcdCpuMsPerJoin);
      x.medianClientCpuMs = median(x.clientCpuMsPerJoin);
    }
    return {
      joins: o.joins,
      reps: o.reps,
      concurrency: o.concurrency,
      setups: res,
      ratioTwoOverOne: round(res['two-etcd'].medianJoinsPerSec / res['one-etcd'].medianJoinsPerSec, 2),
      ratioTwoOverLevel: round(res['two-etcd'].medianJoinsPerSec / res['one-level'].medianJoinsPerSec, 2),
    };
  } finally {
    await Promise.all(setups.flatMap((s) => s.children.map((c) => c.stop())));
    await etcd.stop();
  }
}
