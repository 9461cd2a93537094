/**
 * Target 4: 100,000 records. Builds a registrar state directory with N nodes written through the
 * Registry interface (the registrar's own store: same records, indexes, counters, events, fsync'd group
 * commits; many changes in flight at once, so group commit batches them as it does under load), each
 * node written like the real flow does (pending; or accepted and issued in one change with its token
 * use and serial, then active or removed), with real CA-signed certificates (a pool of distinct ones,
 * reused across nodes: record sizes are real).
 * Then measures, on that store:
 *   - cold start of the real CLI (`muster registrar --mdns off`): spawn -> "registrar ready" log line,
 *     and its RSS at that moment, 1 s and 5 s later (the background work after ready: the steward's
 *     first sweep, the per-source pending counts), with anon and file-backed RSS at 5 s;
 *   - inside the process (bench child): time to import the registrar modules and time in
 *     startRegistrar();
 *   - one page of `nodes list` over the admin socket (limit=100; all states, ?state=active, and from
 *     the middle of the name space with ?after=).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, promises as fs, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatToken } from '../common/proof.js';
import { loadOrCreateCa } from '../registrar/ca.js';
import { newToken } from '../registrar/policy.js';
import { bulkLoadLevel, LevelRegistry, type BulkLoadChunk } from '../store/level.js';
import type { Change, EventInput, NodeRecord, Revocation, SerialRecord } from '../store/registry.js';
import { issueCertificate, makeSerial, serialHex, sha256b64url, toPem } from '../common/x509.js';
import { admin, DIST, log, median, percentile, pool, procMem, round, ServerChild, sleep } from './lib.js';

export interface StoreOptions {
  /** The run's temp dir (admin sockets, logs). */
  dir: string;
  records: number;
  coldStarts: number;
  pageCalls: number;
}

export interface PageTiming {
  query: string;
  firstMs: number;
  p50Ms: number;
  p95Ms: number;
  returned: number;
}

export interface StoreResult {
  records: number;
  /** 0 when the store came from the cache. */
  buildMs: number;
  cached: boolean;
  /** `node -e 0` spawn -> exit, median, measured alternately with the CLI cold starts. */
  referenceMedianMs: number;
  storeMb: number;
  cli: {
    spawnToReadyMs: number[];
    rssAtReadyMb: number[];
    rssAfter1sMb: number[];
    rssAfter5sMb: number[];
    /** RssAnon and RssFile 5 s after ready (lib.ts procMem). */
    anonAfter5sMb: number[];
    fileAfter5sMb: number[];
    error?: string;
  };
  inProcess: { importMs: number[]; startRegistrarMs: number[]; processStartToReadyMs: number[] };
  spawnToReadyMedianMs: number;
  startRegistrarMedianMs: number;
  /** The larger of RSS 1 s and 5 s after ready, median over the cold starts. */
  rssMedianMb: number;
  pages: PageTiming[];
  pageWorstP50Ms: number;
  /** Wall ms of each step of a registrar's start on this store (median of the runs). */
  startPhasesMs: Record<string, number>;
}

/** A registrar state directory with `records` nodes (see buildStore). */
export interface BuiltStore {
  /** Pass as --state-dir: holds ca/ and registry/ (cluster 'bench'). */
  stateDir: string;
  records: number;
  /** A join token in the store with no expiry and no use limit (id.secret.ca-pin). */
  token: string;
  tokenId: string;
  caFingerprint: string;
}

const DEC = (i: number): string => String(i).padStart(6, '0');

/** Changes in flight while building through the registry: group commit writes hundreds per fsync. */
const BUILD_CONCURRENCY = 512;
/** Nodes per batch of the bulk load. */
const BULK_CHUNK = 5_000;
/** Distinct certificates (reused across nodes: record sizes are real). */
const CERT_POOL = 256;
/**
 * Records' times span at most a day back from the build, so no TTL (pending and unacknowledged:
 * 7 days, registrar/steward.ts) collects them at start; a cached store is rebuilt after 3 days.
 */
const SPAN_MS = 86_400_000;
const CACHE_MAX_AGE_MS = 3 * 86_400_000;
/** Bump when the generated records change (the store format itself is hashed from level.js). */
const GENERATOR_VERSION = 1;

interface Plan {
  name: string;
  /** 0-3 pending, 4 issued, 5 removed, else active (of 100). */
  kind: number;
  t: string;
  base: NodeRecord;
  cert: string;
}

interface NodeGenerator {
  now: number;
  tokenId: string;
  certs: { spki: Buffer; key: string; cert: string }[];
  plan(i: number): Plan;
}

async function makeGenerator(
  ca: Awaited<ReturnType<typeof loadOrCreateCa>>['ca'],
  n: number,
  tokenId: string,
): Promise<NodeGenerator> {
  const now = Date.now();
  const spacing = Math.min(1000, Math.floor(SPAN_MS / Math.max(n, 1)));
  const certs = Array.from({ length: CERT_POOL }, (_, i) => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const spki = publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
    const der = issueCertificate(ca.issuer, {
      serial: makeSerial(i + 1),
      subject: { cn: `node-${DEC(i)}`, o: 'bench', ou: 'worker' },
      spki,
      notBefore: new Date(now - 300_000),
      notAfter: new Date(now + 90 * 86_400_000),
      dnsNames: [`node-${DEC(i)}`],
      usage: 'client-server',
    });
    return { spki, key: sha256b64url(spki), cert: toPem(der, 'CERTIFICATE') };
  });
  return {
    now,
    tokenId,
    certs,
    plan(i) {
      const name = `node-${DEC(i)}`;
      const k = certs[i % CERT_POOL]!;
      const t = new Date(now - (n - i) * spacing).toISOString();
      const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      return {
        name,
        kind: i % 100,
        t,
        cert: k.cert,
        base: {
          name,
          rev: 0,
          state: 'pending',
          key: k.key,
          spki: k.spki.toString('base64'),
          role: 'worker',
          cluster: '',
          channel: 'https',
          addresses: [address],
          times: {},
          lastSeen: t,
        },
      };
    },
  };
}

const PENDING_REASON = 'no token and not on the local link: waiting for approval';
const REMOVED_REASON = 'removed by operator bench';

/**
 * One node's transitions as the registrar writes them: pending; or accepted and issued in one
 * change (token use, serial), then active or removed (revocation). Returns the changes in order.
 */
function transitions(g: NodeGenerator, p: Plan, counter: number | undefined): Change[] {
  const { name, base, t } = p;
  const key = base.key;
  if (p.kind < 4) {
    return [
      {
        nodes: [{ expectRev: 0, next: { ...base, pendingReason: PENDING_REASON, times: { pending: t } } }],
        events: [
          {
            type: 'pending',
            name,
            detail: { reason: PENDING_REASON, key, address: base.addresses[0], channel: 'https' },
          },
        ],
      },
    ];
  }
  const serial = serialHex(makeSerial(counter!));
  const notAfter = new Date(g.now + 90 * 86_400_000).toISOString();
  const issued: NodeRecord = {
    ...base,
    state: 'issued',
    decision: { rule: 'token', detail: `join token ${g.tokenId}`, at: t },
    times: { accepted: t, issued: t },
    tokenId: g.tokenId,
    serial,
    certificate: p.cert,
    notAfter,
    issuedAt: t,
  };
  const out: Change[] = [
    {
      nodes: [{ expectRev: 0, next: issued }],
      useToken: g.tokenId,
      serial: { counter: counter!, serial, name },
      events: [
        {
          type: 'accepted',
          name,
          detail: {
            rule: 'token',
            reason: `join token ${g.tokenId}`,
            key,
            address: base.addresses[0],
            channel: 'https',
          },
        },
        { type: 'issued', name, detail: { serial, notAfter } },
      ],
    },
  ];
  if (p.kind === 4) return out;
  if (p.kind === 5) {
    out.push({
      nodes: [
        {
          expectRev: 1,
          next: {
            ...issued,
            state: 'removed',
            decision: { rule: 'removed', detail: `${REMOVED_REASON} (admin socket)`, at: t },
            times: { ...issued.times, removed: t },
          },
        },
      ],
      revoke: { serial, name, at: t, reason: REMOVED_REASON },
      events: [{ type: 'removed', name, detail: { reason: REMOVED_REASON, serial } }],
    });
  } else {
    out.push({
      nodes: [{ expectRev: 1, next: { ...issued, state: 'active', times: { ...issued.times, active: t } } }],
      events: [{ type: 'active', name, detail: { serial } }],
    });
  }
  return out;
}

/** The CA, the registrar id and a token with no expiry or use limit, as a first start makes them. */
async function prepare(stateDir: string): Promise<{
  ca: Awaited<ReturnType<typeof loadOrCreateCa>>['ca'];
  id: string;
  token: ReturnType<typeof newToken>;
}> {
  const id = 'r-' + randomBytes(5).toString('hex');
  const { ca } = await loadOrCreateCa(path.join(stateDir, 'ca'), `muster CA bench ${id}`, new Date());
  const token = newToken(Date.now(), {
    ttlMs: null,
    maxUses: null,
    roles: [],
    clusters: [],
    description: 'bench',
  });
  return { ca, id, token };
}

function built(stateDir: string, n: number, token: ReturnType<typeof newToken>, caFp: string): BuiltStore {
  return {
    stateDir,
    records: n,
    token: formatToken({ id: token.id, secret: token.secret, ca: caFp }),
    tokenId: token.id,
    caFingerprint: caFp,
  };
}

/**
 * Writes a registrar state directory with `n` nodes (names node-000000 ...; about 94 % active, 4 %
 * pending, 1 % issued, 1 % removed) in `stateDir`, which must not hold a store yet: the CA, the
 * registrar id, a join token (returned) and the records, indexes, counters, serials, revocations and
 * events that the registry's apply() leaves after each node's real transitions (see transitions()),
 * written in unsynced batches with one fsync at the end (store/level.ts bulkLoadLevel).
 * test/bench/store-build.test.ts checks it against a store built through the registry.
 * Start a registrar on it with --state-dir stateDir --cluster bench.
 */
export async function buildStore(stateDir: string, n: number): Promise<BuiltStore> {
  const { ca, id, token } = await prepare(stateDir);
  const g = await makeGenerator(ca, n, token.id);
  let counter = 0;
  function* chunks(): Generator<BulkLoadChunk> {
    for (let from = 0; from < n; from += BULK_CHUNK) {
      const nodes: NodeRecord[] = [];
      const serials: SerialRecord[] = [];
      const revocations: Revocation[] = [];
      const events: (EventInput & { at: string })[] = [];
      for (let i = from; i < Math.min(n, from + BULK_CHUNK); i++) {
        const p = g.plan(i);
        const changes = transitions(g, p, p.kind < 4 ? undefined : ++counter);
        let rec: NodeRecord | undefined;
        for (const c of changes) {
          const w = c.nodes![0]!;
          rec = { ...w.next, rev: w.expectRev + 1 };
          if (c.serial) serials.push(c.serial);
          if (c.revoke) revocations.push(c.revoke);
          for (const e of c.events ?? []) events.push({ at: p.t, ...e });
        }
        nodes.push(rec!);
      }
      yield { nodes, serials, revocations, events };
    }
  }
  // One use per accepted node: every kind but pending (i % 100 < 4).
  token.used = n - (Math.floor(n / 100) * 4 + Math.min(n % 100, 4));
  await bulkLoadLevel(path.join(stateDir, 'registry'), { id, tokens: [token] }, chunks());
  // One open fills what bulkLoadLevel leaves to the first open (the waiting states' index values,
  // LevelRegistry.fillWaitingIndex: ~3 s of CPU on 1M), so no measured cold start does it.
  await (await LevelRegistry.open(path.join(stateDir, 'registry'))).close();
  return built(stateDir, n, token, ca.fingerprint);
}

/**
 * The same store written through Registry.apply(), one change per transition, many in flight (group
 * commit): the reference buildStore is checked against (slow: ~28 s per 100,000 nodes).
 */
export async function buildStoreThroughRegistry(stateDir: string, n: number): Promise<BuiltStore> {
  const { ca, id, token } = await prepare(stateDir);
  const g = await makeGenerator(ca, n, token.id);
  const reg = await LevelRegistry.open(path.join(stateDir, 'registry'));
  try {
    await reg.identity(() => id);
    await reg.apply({ putToken: token });
    await pool(n, BUILD_CONCURRENCY, async (i) => {
      const p = g.plan(i);
      const counter = p.kind < 4 ? undefined : await reg.allocateSerial();
      for (const c of transitions(g, p, counter)) await reg.apply(c);
    });
    return built(stateDir, n, (await reg.getToken(token.id))!, ca.fingerprint);
  } finally {
    await reg.close();
  }
}

/** Where built stores are kept between runs: /var/cache/muster-bench if writable, else the temp dir. */
function cacheRoot(): string {
  try {
    accessSync('/var/cache/muster-bench', constants.W_OK);
    return '/var/cache/muster-bench';
  } catch {
    return os.tmpdir();
  }
}

/**
 * What a cached store depends on: the level key layout and bulk loader (from store/level.js) and
 * this generator's version. Anything else in level.js (the write path) leaves the cache valid.
 */
function formatHash(): string {
  const levelJs = readFileSync(
    path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../store/level.js'),
    'utf8',
  );
  const layout = levelJs.slice(
    levelJs.indexOf('const K = {'),
    levelJs.indexOf('\n};', levelJs.indexOf('const K = {')),
  );
  const loader = levelJs.slice(levelJs.indexOf('export async function bulkLoadLevel'));
  return createHash('sha256').update(`${GENERATOR_VERSION}\0${layout}\0${loader}`).digest('hex').slice(0, 12);
}

/**
 * A built store of `n` records from the cache (see cacheRoot), built there first if missing, of
 * another format or older than CACHE_MAX_AGE_MS. Registrars opened on it must not write records
 * (cold starts and page reads only): copy it for anything that joins.
 */
export async function cachedStore(n: number): Promise<{ store: BuiltStore; buildMs: number }> {
  const dir = path.join(cacheRoot(), `muster-bench-store-${formatHash()}`, String(n));
  const meta = path.join(dir, 'bench-store.json');
  if (existsSync(meta) && Date.now() - statSync(meta).mtimeMs < CACHE_MAX_AGE_MS) {
    const store = JSON.parse(readFileSync(meta, 'utf8')) as BuiltStore;
    return { store: { ...store, stateDir: dir }, buildMs: 0 };
  }
  await fs.rm(dir, { recursive: true, force: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  await fs.rm(tmp, { recursive: true, force: true });
  await fs.mkdir(tmp, { recursive: true, mode: 0o700 });
  log(`store: building ${n} records in ${dir}`);
  const t0 = performance.now();
  const store = await buildStore(tmp, n);
  const buildMs = performance.now() - t0;
  log(`store: built in ${(buildMs / 1000).toFixed(1)} s`);
  await fs.writeFile(path.join(tmp, 'bench-store.json'), JSON.stringify(store));
  await fs.rename(tmp, dir);
  return { store: { ...store, stateDir: dir }, buildMs };
}

async function cliColdStart(
  stateDir: string,
  sock: string,
): Promise<{
  ms: number;
  rssAtReady: number;
  rssAfter1s: number;
  after5s: ReturnType<typeof procMem>;
}> {
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    [
      path.join(DIST, 'cli/main.js'),
      'registrar',
      '--state-dir',
      stateDir,
      '--listen',
      '127.0.0.1:0',
      '--mdns',
      'off',
      '--admin-socket',
      sock,
      '--cluster',
      'bench',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MUSTER_LOG_FORMAT: 'json', MUSTER_LOG_LEVEL: 'info' },
    },
  );
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  try {
    const ms = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "registrar ready" within 30 s: ${err.slice(0, 300)}`)),
        30_000,
      );
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('"registrar ready"')) {
          clearTimeout(timer);
          resolve(performance.now() - t0);
        }
      });
      void exited.then((code) =>
        reject(new Error(`the CLI exited (${code}) before it was ready: ${err.trim().slice(0, 300)}`)),
      );
    });
    const rssAtReady = procMem(child.pid!).rssMb;
    await sleep(1000);
    const rssAfter1s = procMem(child.pid!).rssMb;
    await sleep(4000);
    return { ms, rssAtReady, rssAfter1s, after5s: procMem(child.pid!) };
  } finally {
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(t);
  }
}

/** `node -e 0`, spawn -> exit: what any process costs to start on this machine right now. */
function nodeSpawnToExit(): Promise<number> {
  const t0 = performance.now();
  const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', () => resolve(performance.now() - t0));
  });
}

async function timePage(sock: string, query: string, calls: number): Promise<PageTiming> {
  const once = async (): Promise<{ ms: number; n: number }> => {
    const t0 = performance.now();
    const r = await admin<{ nodes: unknown[] }>(sock, 'GET', '/v1/admin/nodes' + query);
    return { ms: performance.now() - t0, n: r.nodes.length };
  };
  const first = await once();
  const rest: number[] = [];
  for (let i = 0; i < calls; i++) rest.push((await once()).ms);
  return {
    query,
    firstMs: round(first.ms),
    p50Ms: round(percentile(rest, 50)),
    p95Ms: round(percentile(rest, 95)),
    returned: first.n,
  };
}

export async function benchStore(o: StoreOptions): Promise<StoreResult> {
  const { store, buildMs } = await cachedStore(o.records);
  const stateDir = store.stateDir;
  const storeMb = Number(
    execFileSync('du', ['-sm', path.join(stateDir, 'registry')])
      .toString()
      .split('\t')[0],
  );

  const cli: StoreResult['cli'] = {
    spawnToReadyMs: [],
    rssAtReadyMb: [],
    rssAfter1sMb: [],
    rssAfter5sMb: [],
    anonAfter5sMb: [],
    fileAfter5sMb: [],
  };
  const referenceMs: number[] = [];
  try {
    for (let i = 0; i < o.coldStarts; i++) {
      // The in-run reference first, alternating: the machine is shared, absolute figures drift.
      referenceMs.push(round(await nodeSpawnToExit(), 1));
      const r = await cliColdStart(stateDir, path.join(o.dir, 'cli-admin.sock'));
      cli.spawnToReadyMs.push(round(r.ms, 1));
      cli.rssAtReadyMb.push(round(r.rssAtReady, 1));
      cli.rssAfter1sMb.push(round(r.rssAfter1s, 1));
      cli.rssAfter5sMb.push(round(r.after5s.rssMb, 1));
      cli.anonAfter5sMb.push(round(r.after5s.anonMb, 1));
      cli.fileAfter5sMb.push(round(r.after5s.fileMb, 1));
      log(
        `store: CLI cold start ${i + 1}/${o.coldStarts}: ${r.ms.toFixed(0)} ms, RSS ${r.rssAtReady.toFixed(1)} MB (1 s later ${r.rssAfter1s.toFixed(1)} MB, 5 s later ${r.after5s.rssMb.toFixed(1)} MB: anon ${r.after5s.anonMb.toFixed(1)}, file ${r.after5s.fileMb.toFixed(1)})`,
      );
    }
  } catch (err) {
    cli.error = (err as Error).message;
    log(`store: CLI cold start failed: ${cli.error}`);
  }

  const inProcess: StoreResult['inProcess'] = {
    importMs: [],
    startRegistrarMs: [],
    processStartToReadyMs: [],
  };
  let pages: PageTiming[] = [];
  for (let i = 0; i < o.coldStarts; i++) {
    const reg = await ServerChild.start({ mode: 'registrar', dir: o.dir, stateDir, cluster: 'bench' });
    inProcess.importMs.push(round(reg.ready.importMs!, 1));
    inProcess.startRegistrarMs.push(round(reg.ready.startMs!, 1));
    inProcess.processStartToReadyMs.push(round(reg.ready.readyAtMs, 1));
    if (i === o.coldStarts - 1) {
      const sock = reg.ready.adminSocket!;
      const mid = `node-${DEC(Math.floor(o.records / 2))}`;
      pages = [];
      for (const q of [
        '?limit=100',
        '?state=active&limit=100',
        `?limit=100&after=${mid}`,
        `?state=active&limit=100&after=${mid}`,
        '?state=pending&limit=100',
      ]) {
        pages.push(await timePage(sock, q, o.pageCalls));
      }
    }
    await reg.stop();
  }
  const phaseRuns: Record<string, number>[] = [];
  for (let i = 0; i < 3; i++) {
    const ph = await ServerChild.start({ mode: 'phases', dir: o.dir, stateDir, cluster: 'bench' });
    phaseRuns.push(ph.ready.phases!);
    await ph.stop();
  }
  const startPhasesMs: Record<string, number> = {};
  for (const k of Object.keys(phaseRuns[0]!))
    startPhasesMs[k] = round(median(phaseRuns.map((r) => r[k] ?? 0)), 1);
  for (const p of pages)
    log(
      `store: GET /v1/admin/nodes${p.query}: first ${p.firstMs} ms, p50 ${p.p50Ms} ms, p95 ${p.p95Ms} ms (${p.returned} nodes)`,
    );
  return {
    records: o.records,
    buildMs: round(buildMs, 0),
    cached: buildMs === 0,
    referenceMedianMs: median(referenceMs),
    storeMb,
    cli,
    inProcess,
    spawnToReadyMedianMs: median(cli.spawnToReadyMs),
    startRegistrarMedianMs: median(inProcess.startRegistrarMs),
    rssMedianMb: median(cli.rssAfter1sMb.map((r, i) => Math.max(r, cli.rssAfter5sMb[i] ?? r))),
    pages,
    pageWorstP50Ms: Math.max(...pages.map((p) => p.p50Ms)),
    startPhasesMs,
  };
}
