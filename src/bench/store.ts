/**
 * Target 4: 100,000 records. Builds a registrar state directory with N nodes written through the
 * Registry interface (the registrar's own store: same records, indexes, counters, events, fsync'd group
 * commits; many changes in flight at once, so group commit batches them as it does under load), each
 * node written like the real flow does (pending; or accepted and issued in one change with its token
 * use and serial, then active or removed), with real CA-signed certificates (a pool of distinct ones,
 * reused across nodes: record sizes are real).
 * Then measures, on that store:
 *   - cold start of the real CLI (`muster registrar --mdns off`): spawn -> "registrar ready" log line,
 *     and its RSS at that moment and 1 s later;
 *   - inside the process (bench child): time to import the registrar modules and time in
 *     startRegistrar();
 *   - one page of `nodes list` over the admin socket (limit=100; all states, ?state=active, and from
 *     the middle of the name space with ?after=).
 */
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadOrCreateCa } from '../registrar/ca.js';
import { LevelRegistry } from '../store/level.js';
import type { Change, NodeRecord } from '../store/registry.js';
import { issueCertificate, makeSerial, serialHex, sha256b64url, toPem } from '../common/x509.js';
import {
  admin,
  createToken,
  DIST,
  log,
  median,
  percentile,
  pool,
  procMem,
  round,
  ServerChild,
  sleep,
} from './lib.js';

export interface StoreOptions {
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
  buildMs: number;
  storeMb: number;
  cli: { spawnToReadyMs: number[]; rssAtReadyMb: number[]; rssAfter1sMb: number[]; error?: string };
  inProcess: { importMs: number[]; startRegistrarMs: number[]; processStartToReadyMs: number[] };
  spawnToReadyMedianMs: number;
  startRegistrarMedianMs: number;
  rssMedianMb: number;
  pages: PageTiming[];
  pageWorstP50Ms: number;
  /** Wall ms of each step of a registrar's start on this store (median of the runs). */
  startPhasesMs: Record<string, number>;
}

const DEC = (i: number): string => String(i).padStart(6, '0');

/** Changes in flight while building: enough for group commit to write hundreds per fsync. */
const BUILD_CONCURRENCY = 512;

/** Writes the records (see the header). */
async function buildStore(stateDir: string, n: number, tokenId: string): Promise<void> {
  const { ca } = await loadOrCreateCa(path.join(stateDir, 'ca'), 'unused: the CA exists', new Date());
  const reg = await LevelRegistry.open(path.join(stateDir, 'registry'));
  try {
    if (!(await reg.getToken(tokenId))) throw new Error(`token ${tokenId} is not in the store`);
    const POOL = 256;
    const now = Date.now();
    const certs = Array.from({ length: POOL }, (_, i) => {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const spki = publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
      const serial = makeSerial(i + 1);
      const der = issueCertificate(ca.issuer, {
        serial,
        subject: { cn: `node-${DEC(i)}`, o: 'bench', ou: 'worker' },
        spki,
        notBefore: new Date(now - 300_000),
        notAfter: new Date(now + 90 * 86_400_000),
        dnsNames: [`node-${DEC(i)}`],
        usage: 'client-server',
      });
      return { spki, key: sha256b64url(spki), cert: toPem(der, 'CERTIFICATE') };
    });
    await pool(n, BUILD_CONCURRENCY, async (i) => {
      const name = `node-${DEC(i)}`;
      const k = certs[i % POOL]!;
      const key = k.key;
      const t = new Date(now - (n - i) * 1000).toISOString();
      const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      const kind = i % 100; // 0-3 pending, 4 issued, 5 removed, else active
      const base: NodeRecord = {
        name,
        rev: 0,
        state: 'pending',
        key,
        spki: k.spki.toString('base64'),
        role: 'worker',
        cluster: '',
        channel: 'https',
        addresses: [address],
        times: {},
        lastSeen: t,
      };
      if (kind < 4) {
        const reason = 'no token and not on the local link: waiting for approval';
        await reg.apply({
          nodes: [{ expectRev: 0, next: { ...base, pendingReason: reason, times: { pending: t } } }],
          events: [{ type: 'pending', name, detail: { reason, key, address, channel: 'https' } }],
        });
        return;
      }
      // Accepted by the token and issued, as one change (the registrar's join path).
      const counter = await reg.allocateSerial();
      const serial = serialHex(makeSerial(counter));
      const notAfter = new Date(now + 90 * 86_400_000).toISOString();
      const issued: NodeRecord = {
        ...base,
        state: 'issued',
        decision: { rule: 'token', detail: `join token ${tokenId}`, at: t },
        times: { accepted: t, issued: t },
        tokenId,
        serial,
        certificate: k.cert,
        notAfter,
        issuedAt: t,
      };
      await reg.apply({
        nodes: [{ expectRev: 0, next: issued }],
        useToken: tokenId,
        serial: { counter, serial, name },
        events: [
          {
            type: 'accepted',
            name,
            detail: { rule: 'token', reason: `join token ${tokenId}`, key, address, channel: 'https' },
          },
          { type: 'issued', name, detail: { serial, notAfter } },
        ],
      });
      if (kind === 4) return;
      let then: Change;
      if (kind === 5) {
        const reason = 'removed by operator bench';
        then = {
          nodes: [
            {
              expectRev: 1,
              next: {
                ...issued,
                state: 'removed',
                decision: { rule: 'removed', detail: `${reason} (admin socket)`, at: t },
                times: { ...issued.times, removed: t },
              },
            },
          ],
          revoke: { serial, name, at: t, reason },
          events: [{ type: 'removed', name, detail: { reason, serial } }],
        };
      } else {
        then = {
          nodes: [
            { expectRev: 1, next: { ...issued, state: 'active', times: { ...issued.times, active: t } } },
          ],
          events: [{ type: 'active', name, detail: { serial } }],
        };
      }
      await reg.apply(then);
    });
  } finally {
    await reg.close();
  }
}

async function cliColdStart(
  stateDir: string,
  sock: string,
): Promise<{ ms: number; rssAtReady: number; rssAfter1s: number }> {
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
    return { ms, rssAtReady, rssAfter1s };
  } finally {
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(t);
  }
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
  const stateDir = path.join(o.dir, 'registrar');
  let buildMs = 0;
  if (!existsSync(path.join(o.dir, 'built'))) {
    log(`store: building ${o.records} records in ${o.dir}`);
    const t0 = performance.now();
    // The registrar makes its CA, id and a token; then the records go in through the Registry API.
    const boot = await ServerChild.start({ mode: 'registrar', dir: o.dir });
    const { id } = await createToken(boot.ready.adminSocket!);
    await boot.stop();
    await buildStore(stateDir, o.records, id);
    buildMs = performance.now() - t0;
    execFileSync('touch', [path.join(o.dir, 'built')]);
    log(`store: built in ${(buildMs / 1000).toFixed(1)} s`);
  }
  const storeMb = Number(
    execFileSync('du', ['-sm', path.join(stateDir, 'registry')])
      .toString()
      .split('\t')[0],
  );

  const cli: StoreResult['cli'] = { spawnToReadyMs: [], rssAtReadyMb: [], rssAfter1sMb: [] };
  try {
    for (let i = 0; i < o.coldStarts; i++) {
      const r = await cliColdStart(stateDir, path.join(o.dir, 'cli-admin.sock'));
      cli.spawnToReadyMs.push(round(r.ms, 1));
      cli.rssAtReadyMb.push(round(r.rssAtReady, 1));
      cli.rssAfter1sMb.push(round(r.rssAfter1s, 1));
      log(
        `store: CLI cold start ${i + 1}/${o.coldStarts}: ${r.ms.toFixed(0)} ms, RSS ${r.rssAtReady.toFixed(1)} MB (1 s later ${r.rssAfter1s.toFixed(1)} MB)`,
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
    const reg = await ServerChild.start({ mode: 'registrar', dir: o.dir, cluster: 'bench' });
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
    const ph = await ServerChild.start({ mode: 'phases', dir: o.dir, cluster: 'bench' });
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
    storeMb,
    cli,
    inProcess,
    spawnToReadyMedianMs: median(cli.spawnToReadyMs),
    startRegistrarMedianMs: median(inProcess.startRegistrarMs),
    rssMedianMb: median(cli.rssAtReadyMb.length ? cli.rssAfter1sMb : []),
    pages,
    pageWorstP50Ms: Math.max(...pages.map((p) => p.p50Ms)),
    startPhasesMs,
  };
}
