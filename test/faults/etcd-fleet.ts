/**
 * Several real registrar processes on one etcd registry, and the nodes that join through them, for
 * the fault tests across registrars (issue 11, item 4; DESIGN "Store backends", "Exactly once").
 *
 * Each registrar is the compiled CLI (`dist/cli/main.js registrar --mdns off`, HTTPS on 127.0.0.1) with
 * a state directory of its own holding the SAME root CA: the first one creates it, the others get a
 * copy before their first start (README "Scale out"). The registry is checked afterwards through the
 * Registry interface (EtcdRegistry.open on the same prefix), never through a registrar.
 */
import { X509Certificate } from 'node:crypto';
import { cpSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { joinProofMac, parseToken } from '../../src/common/proof.js';
import { EtcdRegistry } from '../../src/store/etcd.js';
import type { MusterEvent, NodeRecord, SerialRecord, TokenRecord } from '../../src/store/registry.js';
import { musterAsync, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { api, csrFor, tempDir } from '../helpers/registrar.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Fleet {
  /** The registrars by index; undefined once stopped. */
  registrars: (SpawnedRegistrar | undefined)[];
  /** etcd://... of the registry they share. */
  store: string;
  prefix: string;
  /** The shared root CA (PEM), as the first registrar wrote it. */
  caPem: string;
  socket(i: number): string;
  /** A token (ID.SECRET) made through registrar i's admin socket with the CLI. */
  token(i: number, uses?: number): Promise<{ id: string; secret: string }>;
  /** A registry client on the same prefix, for the checks (close it). */
  open(): Promise<EtcdRegistry>;
  stop(): Promise<void>;
}

/**
 * The lifecycle every fault suite shares, registered in the calling describe(): one three-member etcd
 * cluster for the file, and a fleet (with its temp dir) per test, stopped and removed after it.
 */
export function fleetPerTest(): {
  readonly cluster: EtcdCluster;
  /** The current test's temp dir. */
  readonly dir: string;
  start(prefix: string, registrars: number): Promise<Fleet>;
} {
  let cluster: EtcdCluster | undefined;
  let t: ReturnType<typeof tempDir> | undefined;
  let fleet: Fleet | undefined;
  beforeAll(async () => {
    cluster = await startEtcdCluster({ members: 3 });
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  afterEach(async () => {
    await fleet?.stop();
    fleet = undefined;
    t?.cleanup();
    t = undefined;
  });
  return {
    get cluster() {
      return cluster!;
    },
    get dir() {
      return t!.dir;
    },
    async start(prefix, registrars) {
      t = tempDir(prefix);
      fleet = await startFleet(t.dir, cluster!, registrars);
      return fleet;
    },
  };
}

export async function startFleet(dir: string, cluster: EtcdCluster, n: number): Promise<Fleet> {
  const prefix = `/faults-${path.basename(dir)}/`;
  const store = `etcd://${cluster.endpoints.join(',')}${prefix.replace(/\/$/, '')}`;
  const stateDir = (i: number): string => path.join(dir, `r${i}`, 'reg');
  const socket = (i: number): string => path.join(dir, `r${i}`, 'admin.sock');
  const args = (i: number): string[] => [
    '--state-dir',
    stateDir(i),
    '--listen',
    '127.0.0.1:0',
    '--admin-socket',
    socket(i),
    '--cluster',
    'herd',
    '--store',
    store,
    // Every node of these tests comes from 127.0.0.1: no per-client limit on refusals.
    '--rate-limit',
    '1000000',
  ];
  const registrars: (SpawnedRegistrar | undefined)[] = [await spawnRegistrar(args(0))];
  try {
    for (let i = 1; i < n; i++)
      cpSync(path.join(stateDir(0), 'ca'), path.join(stateDir(i), 'ca'), { recursive: true });
    registrars.push(
      ...(await Promise.all(Array.from({ length: n - 1 }, (_, i) => spawnRegistrar(args(i + 1))))),
    );
  } catch (err) {
    for (const r of registrars) await r?.stop('SIGKILL');
    throw err;
  }
  const caPem = readFileSync(path.join(stateDir(0), 'ca', 'ca.crt'), 'utf8');
  return {
    registrars,
    store,
    prefix,
    caPem,
    socket,
    async token(i, uses) {
      const r = await musterAsync([
        'tokens',
        'create',
        '--ttl',
        '2h',
        ...(uses ? ['--uses', String(uses)] : []),
        '--admin-socket',
        socket(i),
      ]);
      const t = parseToken(r.stdout.trim());
      if (!t) throw new Error(`tokens create: ${r.stderr}`);
      return t;
    },
    open: () => EtcdRegistry.open({ endpoints: cluster.endpoints, prefix }),
    async stop() {
      for (const r of registrars.splice(0)) await r?.stop('SIGKILL');
    },
  };
}

export interface HerdNode {
  name: string;
  csr: string;
  fp: string;
  /** Certificates in the 200/201 answers it got (one expected). */
  certs: Set<string>;
  /** The status of each answer in order; 0 where its registrar could not be reached (killed). */
  statuses: number[];
  /** A refusal (anything but 200, 201, 429, 503): the herd failed. */
  refusal?: string;
}

export function makeHerd(prefix: string, count: number): HerdNode[] {
  return Array.from({ length: count }, (_, i) => {
    const name = `${prefix}${i}`;
    const { csr, fp } = csrFor(name);
    return { name, csr, fp, certs: new Set<string>(), statuses: [] };
  });
}

export function joinBody(n: HerdNode, token: { id: string; secret: string }): Record<string, unknown> {
  const ts = Math.floor(Date.now() / 1000);
  return {
    name: n.name,
    role: 'worker',
    cluster: '',
    csr: n.csr,
    proof: {
      id: token.id,
      ts,
      hmac: joinProofMac(token.secret, { name: n.name, role: 'worker', cluster: '', key: n.fp, ts }),
    },
  };
}

/**
 * Asks as the node agent does until answered: 429/503 honour Retry-After (a short pause here), a
 * registrar that cannot be reached (killed) is left for the next one of `urls()`. Returns the status
 * of the answer (200/201), or the refusal.
 */
export async function joinUntilAnswered(
  n: HerdNode,
  token: { id: string; secret: string },
  urls: () => string[],
  first: number,
  until: number,
): Promise<number> {
  let at = first;
  while (Date.now() < until) {
    const live = urls();
    const url = live[at % live.length]!;
    try {
      const r = await api({ url }, 'POST', '/v1/join', joinBody(n, token));
      n.statuses.push(r.status);
      if (r.status === 200 || r.status === 201) {
        n.certs.add(r.body.certificate as string);
        return r.status;
      }
      if (r.status !== 429 && r.status !== 503) {
        n.refusal = `${r.status} ${JSON.stringify(r.body)}`;
        return r.status;
      }
      await sleep(50 + Math.random() * 150);
    } catch {
      n.statuses.push(0);
      at++; // that registrar is gone: the next one
      await sleep(20 + Math.random() * 80);
    }
  }
  n.refusal = 'not answered before the deadline';
  return 0;
}

export interface RegistrySnapshot {
  nodes: NodeRecord[];
  serials: SerialRecord[];
  events: MusterEvent[];
  tokens: TokenRecord[];
  lastSeq: number;
}

export async function snapshot(reg: EtcdRegistry): Promise<RegistrySnapshot> {
  const lastSeq = await reg.lastEventSeq();
  return {
    nodes: await reg.listNodes({ limit: 100_000 }),
    serials: await reg.listSerials(),
    events: await reg.listEvents(0, 100_000),
    tokens: await reg.listTokens(),
    lastSeq,
  };
}

/**
 * Every broken promise of exactly once in the registry after a herd: one record per node, each
 * issued with the certificate the node was given (signed by the shared root), serials unique and
 * each its record's, one issued event per name, the token counted once per admitted node.
 */
export function exactlyOnceViolations(
  snap: RegistrySnapshot,
  nodes: HerdNode[],
  caPem: string,
  tokenId: string,
): string[] {
  const v: string[] = [];
  const ca = new X509Certificate(caPem);
  const byName = new Map(snap.nodes.map((r) => [r.name, r]));
  if (snap.nodes.length !== nodes.length) v.push(`${snap.nodes.length} records for ${nodes.length} nodes`);
  for (const n of nodes) {
    if (n.refusal) v.push(`${n.name} was refused: ${n.refusal}`);
    if (n.certs.size !== 1) v.push(`${n.name} got ${n.certs.size} different certificates`);
    const rec = byName.get(n.name);
    if (!rec) {
      v.push(`${n.name} has no record`);
      continue;
    }
    if (rec.state !== 'issued' && rec.state !== 'active') v.push(`${n.name} is ${rec.state}`);
    const cert = [...n.certs][0];
    if (cert !== undefined && rec.certificate !== cert)
      v.push(`${n.name}: the stored certificate is not the one given`);
    if (rec.certificate && !new X509Certificate(rec.certificate).verify(ca.publicKey))
      v.push(`${n.name}: the certificate is not signed by the shared root`);
  }
  const serials = snap.serials.map((s) => s.serial);
  if (new Set(serials).size !== serials.length) v.push('a serial was issued twice');
  const certified = snap.nodes.filter((r) => r.certificate);
  if (serials.length !== certified.length)
    v.push(`${serials.length} serials for ${certified.length} certified nodes`);
  for (const s of snap.serials) {
    if (byName.get(s.name)?.serial !== s.serial) v.push(`serial ${s.serial} is not ${s.name}'s`);
  }
  const issued = snap.events.filter((e) => e.type === 'issued');
  const perName = new Map<string, number>();
  for (const e of issued) perName.set(e.name!, (perName.get(e.name!) ?? 0) + 1);
  for (const n of nodes) {
    if (perName.get(n.name) !== 1) v.push(`${n.name} has ${perName.get(n.name) ?? 0} issued events`);
  }
  const seqs = snap.events.map((e) => e.seq);
  if (new Set(seqs).size !== seqs.length) v.push('two events share a sequence number');
  const tokenAccepted = snap.nodes.filter((r) => r.decision?.rule === 'token').length;
  const tok = snap.tokens.find((t) => t.id === tokenId);
  if (tok?.used !== tokenAccepted) v.push(`token used ${tok?.used} times for ${tokenAccepted} nodes`);
  return v;
}
