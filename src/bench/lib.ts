/**
 * Shared pieces of the benchmarks: statistics, /proc readers, the child-process server handle, a raw
 * HTTPS client (one fresh TLS connection per request, no session reuse), an admin-socket client and
 * pre-generated node identities. Everything talks to 127.0.0.1 or a Unix socket only.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminClient } from '../admin/client.js';
import { joinProofMac, parseToken } from '../common/proof.js';
import { buildCsr, keyFingerprint } from '../common/x509.js';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const DIST = path.resolve(HERE, '..');

// ---- statistics ----

/** Nearest-rank percentile (p in 0..100) of an unsorted sample; NaN for an empty one. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!;
}
export const median = (xs: readonly number[]): number => percentile(xs, 50);
export const round = (x: number, digits = 2): number => (Number.isFinite(x) ? Number(x.toFixed(digits)) : x);

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

// ---- /proc ----

const CLK_TCK = 100; // USER_HZ on Linux

/** utime+stime of a process in ms, from /proc/<pid>/stat (10 ms resolution). */
export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** utime+stime in ms of each thread of a process, summed by thread name (node, libuv-worker, V8 workers...). */
export function procThreadsCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
      const name = String(tid) === String(pid) ? 'main thread' : comm.replace(/[0-9]+$/, '').trim();
      out.set(name, (out.get(name) ?? 0) + ms);
    } catch {
      /* the thread ended */
    }
  }
  return out;
}

/** VmRSS and VmHWM (peak RSS) of a process, in MB. */
export function procMem(pid: number): { rssMb: number; hwmMb: number; anonMb: number; fileMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  // RSS = RssAnon (heap, stacks: the process's own memory) + RssFile (mapped files: the binary, and
  // the level store's tables, which LevelDB reads through mmap: clean pages the kernel may drop) +
  // RssShmem.
  return {
    rssMb: kb('VmRSS') / 1024,
    hwmMb: kb('VmHWM') / 1024,
    anonMb: kb('RssAnon') / 1024,
    fileMb: kb('RssFile') / 1024,
  };
}

// ---- the server child (src/bench/child.ts) ----

export interface ChildReady {
  type: 'ready';
  url: string;
  port: number;
  adminSocket?: string;
  importMs?: number;
  startMs?: number;
  /** mode 'phases': wall ms of each step of a registrar's start. */
  phases?: Record<string, number>;
  readyAtMs: number;
}

export interface ChildCpu {
  type: 'cpu';
  userMs: number;
  systemMs: number;
}

export interface ChildConfig {
  mode: 'floor' | 'essential' | 'registrar' | 'phases';
  dir: string;
  rateLimit?: number;
  maxInFlightJoins?: number;
  cluster?: string;
  /** The registrar's state dir (default: <dir>/registrar). */
  stateDir?: string;
  /** --store: `etcd://...` for a registrar on a shared registry (default: level in its state dir). */
  store?: string;
  /** mode 'essential': the token whose proofs it checks (the one the bench made on a registrar). */
  token?: { id: string; secret: string };
}

/** A server in its own process, so that the client's CPU is not counted with the server's. */
export class ServerChild {
  private readonly pending: ((m: Record<string, unknown>) => boolean)[] = [];
  private exited: Promise<number | null>;
  ready!: ChildReady;
  readonly spawnedAt = performance.now();

  private constructor(
    readonly proc: ChildProcess,
    private readonly logFd: number,
  ) {
    proc.on('message', (m: Record<string, unknown>) => {
      const i = this.pending.findIndex((f) => f(m));
      if (i >= 0) this.pending.splice(i, 1);
    });
    this.exited = new Promise((r) => proc.once('exit', (code) => r(code)));
  }

  static async start(cfg: ChildConfig, execArgv: string[] = []): Promise<ServerChild> {
    mkdirSync(cfg.dir, { recursive: true });
    const logFd = openSync(path.join(cfg.dir, `${cfg.mode}.log`), 'a');
    const proc = fork(path.join(HERE, 'child.js'), [JSON.stringify(cfg)], {
      execArgv,
      stdio: ['ignore', logFd, 'inherit', 'ipc'],
      env: { ...process.env, MUSTER_LOG_FORMAT: 'json', MUSTER_LOG_LEVEL: 'info' },
    });
    const c = new ServerChild(proc, logFd);
    const ready = await Promise.race([
      c.wait<ChildReady>('ready', 60_000),
      c.exited.then((code) => {
        throw new Error(
          `the ${cfg.mode} child exited (${code}) before it was ready; see ${cfg.dir}/${cfg.mode}.log`,
        );
      }),
    ]);
    c.ready = ready;
    return c;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  private wait<T>(type: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${type} from the child within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.pending.push((m) => {
        if (m.type !== type) return false;
        clearTimeout(timer);
        if (typeof m.error === 'string') reject(new Error(m.error));
        else resolve(m as T);
        return true;
      });
    });
  }

  async request<T>(
    cmd: Record<string, unknown> & { cmd: string },
    reply: string,
    timeoutMs = 60_000,
  ): Promise<T> {
    const p = this.wait<T>(reply, timeoutMs);
    this.proc.send(cmd);
    return p;
  }

  /** CPU of the child in ms (process.cpuUsage() inside it: microsecond resolution). */
  async cpuMs(): Promise<number> {
    const c = await this.request<ChildCpu>({ cmd: 'cpu' }, 'cpu');
    return c.userMs + c.systemMs;
  }

  async profileStart(intervalUs: number): Promise<void> {
    await this.request({ cmd: 'prof-start', intervalUs }, 'prof-started');
  }

  async profileStop(file: string): Promise<void> {
    await this.request({ cmd: 'prof-stop', file }, 'prof-stopped', 120_000);
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.send({ cmd: 'stop' });
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 20_000);
      await this.exited;
      clearTimeout(t);
    }
    closeSync(this.logFd);
  }
}

// ---- HTTPS client: a fresh TLS connection per request ----

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: unknown;
  /** performance.now() when the whole answer had arrived. */
  endAt: number;
}

export function httpsRequest(
  baseUrl: string,
  method: string,
  urlPath: string,
  body?: unknown,
  timeoutMs = 120_000,
  /** The client's source address (a 127.0.0.x: per-source bounds count by address). */
  localAddress?: string,
): Promise<HttpResult> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    // agent: false: a new agent per request, so no keep-alive and no TLS session resumption
    // (every request is a full handshake, as a herd of fresh nodes would make).
    const req = https.request(
      new URL(urlPath, baseUrl),
      {
        method,
        agent: false,
        rejectUnauthorized: false,
        timeout: timeoutMs,
        ...(localAddress ? { localAddress } : {}),
        headers: payload
          ? { 'content-type': 'application/json', 'content-length': String(payload.length) }
          : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const endAt = performance.now();
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, endAt });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Runs `count` tasks with at most `concurrency` at a time. */
export async function pool(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

// ---- admin socket client ----

/** An admin API call through the CLI's own client; a refusal names the call. */
export function admin<T>(socketPath: string, method: string, urlPath: string, body?: unknown): Promise<T> {
  return new AdminClient(socketPath).request<T>(method, urlPath, body).catch((err: Error) => {
    throw new Error(`admin ${method} ${urlPath}: ${err.message}`, { cause: err });
  });
}

export async function createToken(socketPath: string): Promise<{ id: string; secret: string }> {
  const { token } = await admin<{ token: string }>(socketPath, 'POST', '/v1/admin/tokens', {
    ttlMs: 24 * 3_600_000,
  });
  const parsed = parseToken(token);
  if (!parsed) throw new Error('the registrar returned a malformed token');
  return parsed;
}

// ---- node identities ----

export interface NodeIdentity {
  name: string;
  key: KeyObject;
  fp: string;
  csr: string;
}

/** EC P-256 node keys and CSRs, made before any measurement starts. */
export function makeNodes(prefix: string, count: number): NodeIdentity[] {
  const out: NodeIdentity[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}-${String(i).padStart(5, '0')}`;
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    out.push({ name, key, fp: keyFingerprint(key), csr: buildCsr(name, key) });
  }
  return out;
}

export function joinBody(n: NodeIdentity, token?: { id: string; secret: string }): Record<string, unknown> {
  const body: Record<string, unknown> = { name: n.name, role: 'worker', cluster: '', csr: n.csr };
  if (token) {
    const ts = Math.floor(Date.now() / 1000);
    body.proof = {
      id: token.id,
      ts,
      hmac: joinProofMac(token.secret, { name: n.name, role: 'worker', cluster: '', key: n.fp, ts }),
    };
  }
  return body;
}

export function retryAfterMs(res: HttpResult): number | undefined {
  const h = res.headers['retry-after'];
  const s = Number(Array.isArray(h) ? h[0] : h);
  return Number.isFinite(s) && s >= 0 ? s * 1000 : undefined;
}
