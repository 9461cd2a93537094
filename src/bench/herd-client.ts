/**
 * One client process of the herd bench (herd.ts forks a few): it runs many real node agents at once,
 * each `runJoin` of src/node/agent.ts, the code behind `muster join` (first contact with the CA and
 * info checks, POST /v1/join with a token proof, Retry-After and back-off with the agent's jitter,
 * bundle checks, files, acknowledgement). Only mDNS is off and the logger is a counter. A process per
 * node would not fit on 2 cores; one agent per node in a few processes does.
 *
 * Each node has its own state directory, with its EC key made before the start (as a node image that
 * made its key at first boot would have), under /dev/shm when it exists: the node's disk is not what
 * is measured, and 5,000 nodes' fsyncs on one shared disk would be.
 *
 * IPC: the parent sends {cmd: 'config', cfg} (over IPC, not argv: the token is a secret, and argv is
 * visible to every user in ps), then {cmd: 'go', at} (an epoch ms, the same for every client); the
 * client answers {type: 'ready'} after preparing and {type: 'done', ...} when every agent has ended.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/log.js';
import { FILES, runJoin } from '../node/agent.js';

export interface HerdClientConfig {
  url: string;
  /** The join token as `muster tokens create` prints it (<id>.<secret>). */
  token: string;
  names: string[];
  /** Parent of the nodes' state directories. */
  stateRoot: string;
  /** Each agent's --timeout. */
  timeoutMs: number;
}

/** What a client reports per node and in all. */
export interface HerdClientResult {
  type: 'done';
  /** ms from the go instant to the credentials written ('credentials written'), per registered node. */
  credentialsMs: number[];
  /** ms from the go instant to runJoin's return (acknowledged, hook run), per registered node. */
  doneMs: number[];
  /** Nodes whose runJoin failed, by error code. */
  failures: Record<string, number>;
  /** Retries the agents logged, by cause: 503 busy, 429, unreachable (connect/reset), other. */
  retries: { busy: number; rateLimited: number; unreachable: number; other: number; ack: number };
  /** This process's CPU over the herd (user + system). */
  cpuMs: number;
  /** Wall time from the go instant until the last agent ended. */
  wallMs: number;
}

let cfg: HerdClientConfig;
const send = (m: Record<string, unknown>): void => void process.send?.(m);

function prepare(): void {
  for (const name of cfg.names) {
    const dir = path.join(cfg.stateRoot, name);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    writeFileSync(path.join(dir, FILES.key), privateKey.export({ type: 'pkcs8', format: 'pem' }), {
      mode: 0o600,
    });
  }
}

/**
 * A Logger that counts instead of writing: the agents' retry lines (with the registrar's message, by
 * which the cause is told apart) and the instant each node wrote its credentials.
 */
function countingLogger(r: HerdClientResult, t0: () => number, written: Map<string, number>): Logger {
  let shown = 0;
  const classify = (fields: Record<string, unknown>): void => {
    const err = String(fields.err ?? '');
    // MUSTER_BENCH_HERD_DEBUG=1: the first few retry causes on stderr, to see what a herd meets.
    if (process.env.MUSTER_BENCH_HERD_DEBUG && shown++ < 5) process.stderr.write(`herd client: ${err}\n`);
    if (/as fast as it can|queue|busy/i.test(err)) r.retries.busy++;
    else if (/too many/i.test(err)) r.retries.rateLimited++;
    else if (/^https:\/\//.test(err)) r.retries.unreachable++;
    else r.retries.other++;
  };
  const log = {
    level: 'info',
    info(fields: Record<string, unknown>, msg?: string) {
      if (msg === 'credentials written' && typeof fields.node === 'string')
        written.set(fields.node, performance.now() - t0());
    },
    warn(fields: Record<string, unknown>, msg?: string) {
      if (msg === 'join attempt failed; retrying') classify(fields);
      else if (msg === 'could not acknowledge the credentials; retrying') r.retries.ack++;
    },
    error() {},
    debug() {},
    trace() {},
    fatal() {},
    child() {
      return log;
    },
  };
  return log as unknown as Logger;
}

async function herd(at: number): Promise<HerdClientResult> {
  const r: HerdClientResult = {
    type: 'done',
    credentialsMs: [],
    doneMs: [],
    failures: {},
    retries: { busy: 0, rateLimited: 0, unreachable: 0, other: 0, ack: 0 },
    cpuMs: 0,
    wallMs: 0,
  };
  const written = new Map<string, number>();
  // Every client starts at the same wall-clock instant; times are then measured on the monotonic clock.
  await new Promise((res) => setTimeout(res, Math.max(0, at - Date.now())));
  const t0 = performance.now() - Math.max(0, Date.now() - at);
  const log = countingLogger(r, () => t0, written);
  const cpu0 = process.cpuUsage();
  await Promise.all(
    cfg.names.map(async (name) => {
      try {
        await runJoin({
          registrarUrl: cfg.url,
          token: cfg.token,
          name,
          role: 'worker',
          cluster: '',
          stateDir: path.join(cfg.stateRoot, name),
          log,
          mdns: false,
          timeoutMs: cfg.timeoutMs,
        });
        r.doneMs.push(performance.now() - t0);
        const w = written.get(name);
        if (w !== undefined) r.credentialsMs.push(w);
      } catch (err) {
        const code = (err as { code?: string }).code ?? 'exception';
        r.failures[code] = (r.failures[code] ?? 0) + 1;
      }
    }),
  );
  r.wallMs = performance.now() - t0;
  const c = process.cpuUsage(cpu0);
  r.cpuMs = (c.user + c.system) / 1000;
  return r;
}

process.on('message', (m: { cmd: string; at?: number; cfg?: HerdClientConfig }) => {
  if (m.cmd === 'config') {
    cfg = m.cfg!;
    try {
      prepare();
      send({ type: 'ready' });
    } catch (err) {
      send({ type: 'ready', error: (err as Error).stack ?? String(err) });
    }
  } else if (m.cmd === 'go') {
    herd(m.at!).then(
      (r) => send(r as unknown as Record<string, unknown>),
      (err: Error) => send({ type: 'done', error: err.stack ?? err.message }),
    );
  } else if (m.cmd === 'stop') process.exit(0);
});
