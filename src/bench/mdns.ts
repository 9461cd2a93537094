/**
 * mDNS on the test LAN (issue 12, targets 4 and 5b), in network namespaces this bench creates and
 * removes (DESIGN "Testing the network for real", src/testnet/netlan.ts): 198.18.0.0/24, never the
 * machine's real interfaces. Needs root; without it the rows say ERROR with the reason.
 *
 * 1. start -> certificate: a real `muster registrar` (install mode on) in one namespace; `muster join
 *    --cluster C --name N` spawned in another, timed from the spawn to its "credentials written" log
 *    line (the certificate and CA are on disk then); after it exits the certificate is checked against
 *    the CA it wrote. Several runs, each a fresh name and state directory; p50 and p90, plus the median
 *    time of every step the node logs (where the time goes).
 * 2. adverts: `hosts` namespaces, each one process (mdns-advertisers.ts) that advertises its share of
 *    `adverts` names with the product's advertiser code, every name starting at its own random instant
 *    within `spreadMs`. Counted on the registrar's event log: each name's `heard` event, once, and
 *    how long after "go" the last one was recorded (target: all within 5 s, none twice). A host holds
 *    at most MAX_ENTRIES_PER_SOURCE (32) names in a browser's cache (the flood bound, browse-cache.ts),
 *    so the share per host stays under it: 200 names from 10 hosts (20 each) is a busy LAN, not a
 *    flood. Each advertiser process handles every packet on the LAN, as each real node would, so on a
 *    shared 2-core machine fewer, fuller hosts keep the bench from starving the registrar it measures.
 */
import { X509Certificate } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { createTestLan, killChild, netnsAvailable, type LanHost, type TestLan } from '../testnet/netlan.js';
import { admin, DIST, HERE, log, median, percentile, procCpuMs, round, sleep } from './lib.js';

const BIN = path.join(DIST, 'cli/main.js');
const CLUSTER = 'bench';

export interface MdnsBenchOptions {
  dir: string;
  /** Joins timed start -> certificate. */
  joins: number;
  /** Names advertised at once, and the namespaces (hosts) they come from. */
  adverts: number;
  hosts: number;
  spreadMs: number;
}

export interface JoinRun {
  ms: number;
  /** ms from spawn to the first time each log message appeared. */
  steps: Record<string, number>;
}

export interface AdvertResult {
  advertised: number;
  hosts: number;
  /** Names with a `heard` event, and all `heard` events for the bench's names (more = duplicates). */
  recorded: number;
  events: number;
  duplicates: number;
  /** From "go" to the last name's `heard` event (NaN when not all were recorded within the wait). */
  allRecordedMs: number;
  /** UDP datagrams dropped for a full receive buffer in the registrar's namespace meanwhile. */
  registrarUdpDrops: number;
  /** CPU the registrar process used from "go" to the end of the count. */
  registrarCpuMs: number;
  /** The spread of the publish instants actually used (first to last host done publishing). */
  publishedWithinMs: number;
}

export interface MdnsResult {
  skipped?: string;
  joins: JoinRun[];
  p50Ms: number;
  p90Ms: number;
  /** Median ms from spawn to each step, in the order they happen. */
  steps: [string, number][];
  adverts?: AdvertResult;
}

interface Reg {
  child: ChildProcess;
  sock: string;
  host: LanHost;
}

/** UDP datagrams the kernel dropped in a namespace because a socket's receive buffer was full. */
async function udpDrops(h: LanHost): Promise<number> {
  const r = await h.exec('cat', ['/proc/net/snmp']);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  const [head, vals] = [lines[0]?.split(/\s+/) ?? [], lines[1]?.split(/\s+/) ?? []];
  return Number(vals[head.indexOf('RcvbufErrors')] ?? NaN);
}

function onLines(stream: Readable | null | undefined, fn: (line: string) => void): void {
  let buf = '';
  stream?.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      fn(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
}

const parse = (line: string): Record<string, unknown> | undefined => {
  try {
    const v = JSON.parse(line) as unknown;
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
};

async function startRegistrar(h: LanHost, dir: string): Promise<Reg> {
  const sock = path.join(dir, 'admin.sock');
  const child = h.spawn(
    process.execPath,
    [
      BIN,
      'registrar',
      '--listen',
      '0.0.0.0:8443',
      '--interface',
      h.ip,
      '--cluster',
      CLUSTER,
      '--state-dir',
      path.join(dir, 'state'),
      '--admin-socket',
      sock,
    ],
    { env: { ...process.env, MUSTER_LOG_FORMAT: 'json', MUSTER_LOG_LEVEL: 'info' } },
  );
  // Its whole log is kept in the bench directory (--keep), for when a figure needs explaining.
  const file = createWriteStream(path.join(dir, 'registrar.log'));
  child.stdout?.pipe(file);
  child.stderr?.pipe(file);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`registrar not ready in 30 s: ${out.slice(-500)}`)),
      30_000,
    );
    const seen = (line: string): void => {
      out += line + '\n';
      if (line.includes('"registrar ready"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    onLines(child.stdout, seen);
    onLines(child.stderr, seen);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`registrar exited (${code}): ${out.slice(-500)}`));
    });
  });
  return { child, sock, host: h };
}

async function timedJoin(h: LanHost, dir: string, name: string): Promise<JoinRun> {
  const stateDir = path.join(dir, name);
  const steps: Record<string, number> = {};
  let certMs = NaN;
  let out = '';
  const t0 = Date.now();
  const p0 = performance.now();
  const child = h.spawn(
    process.execPath,
    [
      BIN,
      'join',
      '--cluster',
      CLUSTER,
      '--name',
      name,
      '--state-dir',
      stateDir,
      '--interface',
      h.ip,
      '--timeout',
      '30s',
    ],
    { env: { ...process.env, MUSTER_LOG_FORMAT: 'json', MUSTER_LOG_LEVEL: 'debug' } },
  );
  const seen = (line: string): void => {
    const at = performance.now() - p0;
    out += line + '\n';
    const rec = parse(line);
    if (!rec || typeof rec.msg !== 'string') return;
    if (typeof rec.time === 'number') steps[rec.msg] ??= rec.time - t0;
    if (rec.msg === 'credentials written' && Number.isNaN(certMs)) certMs = at;
  };
  onLines(child.stdout, seen);
  onLines(child.stderr, seen);
  const code = await new Promise<number>((resolve) =>
    child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 : -1))),
  );
  writeFileSync(path.join(dir, `${name}.log`), out);
  if (code !== 0) throw new Error(`join ${name} exited ${code}: ${out.slice(-800)}`);
  const cert = new X509Certificate(readFileSync(path.join(stateDir, 'node.crt')));
  const ca = new X509Certificate(readFileSync(path.join(stateDir, 'ca.crt')));
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey))
    throw new Error(`join ${name}: the certificate on disk does not verify against its CA`);
  if (Number.isNaN(certMs)) throw new Error(`join ${name}: no "credentials written" line`);
  return { ms: certMs, steps };
}

async function heardEvents(
  sock: string,
  after: number,
): Promise<{ seq: number; at: string; name?: string }[]> {
  const out: { seq: number; at: string; name?: string }[] = [];
  let cursor = after;
  for (;;) {
    const r = await admin<{ events: { seq: number; at: string; name?: string }[]; next?: number }>(
      sock,
      'GET',
      `/v1/admin/events?type=heard&limit=10000&after=${cursor}`,
    );
    out.push(...r.events);
    if (r.next === undefined) return out;
    cursor = r.next;
  }
}

async function lastSeq(sock: string): Promise<number> {
  let seq = 0;
  for (;;) {
    const r = await admin<{ events: { seq: number }[] }>(
      sock,
      'GET',
      `/v1/admin/events?limit=10000&after=${seq}`,
    );
    if (r.events.length === 0) return seq;
    seq = r.events[r.events.length - 1]!.seq;
  }
}

async function adverts(lan: TestLan, reg: Reg, o: MdnsBenchOptions): Promise<AdvertResult> {
  const names = Array.from({ length: o.adverts }, (_, i) => `adv-${String(i).padStart(4, '0')}`);
  const procs: ChildProcess[] = [];
  try {
    const hosts: LanHost[] = [];
    for (let i = 0; i < o.hosts; i++) hosts.push(await lan.addHost(`a${i}`, 'lan'));
    const published: number[] = [];
    const ready: Promise<void>[] = [];
    for (const [i, h] of hosts.entries()) {
      const mine = names.filter((_, j) => j % o.hosts === i);
      const child = h.spawn(process.execPath, [
        path.join(HERE, 'mdns-advertisers.js'),
        JSON.stringify({ interface: h.ip, names: mine, cluster: CLUSTER, spreadMs: o.spreadMs }),
      ]);
      procs.push(child);
      let err = '';
      child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
      ready.push(
        new Promise<void>((resolve, reject) => {
          child.once('exit', (code) => reject(new Error(`advertiser in ${h.ns} exited (${code}): ${err}`)));
          onLines(child.stdout, (line) => {
            const m = parse(line);
            if (m?.ready) resolve();
            if (typeof m?.published === 'number' && typeof m.at === 'number') published.push(m.at);
            if (typeof m?.error === 'string') log(`mdns adverts: ${h.name}: ${m.error}`);
          });
        }),
      );
    }
    await Promise.all(ready);
    const seq0 = await lastSeq(reg.sock);
    const drops0 = await udpDrops(reg.host);
    const cpu0 = procCpuMs(reg.child.pid!);
    const go = Date.now();
    for (const c of procs) c.stdin?.write('go\n');
    // Read the event log until every name is there, or 5 s past the target, plus 2 s more to catch
    // duplicates that come late (a re-announcement recorded again).
    const want = new Set(names);
    let events: { seq: number; at: string; name?: string }[] = [];
    let allAt = NaN;
    while (Date.now() - go < 10_000) {
      await sleep(200);
      events = (await heardEvents(reg.sock, seq0)).filter((e) => e.name && want.has(e.name));
      if (new Set(events.map((e) => e.name)).size === names.length) {
        allAt = Math.max(...events.map((e) => Date.parse(e.at))) - go;
        break;
      }
    }
    await sleep(2000);
    events = (await heardEvents(reg.sock, seq0)).filter((e) => e.name && want.has(e.name));
    const recorded = new Set(events.map((e) => e.name)).size;
    const drops = (await udpDrops(reg.host)) - drops0;
    const cpu = procCpuMs(reg.child.pid!) - cpu0;
    return {
      advertised: names.length,
      hosts: o.hosts,
      recorded,
      events: events.length,
      duplicates: events.length - recorded,
      allRecordedMs: recorded === names.length ? round(allAt, 0) : NaN,
      registrarUdpDrops: drops,
      registrarCpuMs: cpu,
      publishedWithinMs: published.length ? Math.max(...published) - go : NaN,
    };
  } finally {
    await Promise.all(procs.map((c) => killChild(c)));
  }
}

export async function benchMdns(o: MdnsBenchOptions): Promise<MdnsResult> {
  const a = netnsAvailable();
  if (!a.ok) return { skipped: a.reason, joins: [], p50Ms: NaN, p90Ms: NaN, steps: [] };
  mkdirSync(o.dir, { recursive: true });
  const lan = await createTestLan();
  // destroy() kills every process in our namespaces and deletes them, also when a step failed; an
  // 'exit' handler in netlan does the same if this process dies first.
  try {
    const reg = await startRegistrar(await lan.addHost('reg', 'lan'), o.dir);
    await admin(reg.sock, 'POST', '/v1/admin/install-mode', { on: true, forMs: 3_600_000, max: 10_000 });
    const node = await lan.addHost('node', 'lan');
    const joins: JoinRun[] = [];
    for (let i = 0; i < o.joins; i++) {
      const run = await timedJoin(node, o.dir, `n${i}`);
      joins.push(run);
      log(`mdns join ${i + 1}/${o.joins}: ${round(run.ms, 0)} ms spawn -> certificate`);
    }
    const msgs = new Set(joins.flatMap((j) => Object.keys(j.steps)));
    const steps: [string, number][] = [...msgs]
      .filter((m) => joins.every((j) => j.steps[m] !== undefined))
      .map((m): [string, number] => [m, round(median(joins.map((j) => j.steps[m]!)), 0)])
      .sort((x, y) => x[1] - y[1]);
    const res: MdnsResult = {
      joins,
      p50Ms: round(
        percentile(
          joins.map((j) => j.ms),
          50,
        ),
        0,
      ),
      p90Ms: round(
        percentile(
          joins.map((j) => j.ms),
          90,
        ),
        0,
      ),
      steps,
    };
    if (o.adverts > 0) {
      res.adverts = await adverts(lan, reg, o);
      const x = res.adverts;
      log(
        `mdns adverts: ${x.recorded}/${x.advertised} recorded (${x.events} events) from ${x.hosts} hosts, ` +
          `all within ${x.allRecordedMs} ms`,
      );
    }
    return res;
  } finally {
    await lan.destroy();
  }
}
