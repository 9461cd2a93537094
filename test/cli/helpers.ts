/**
 * Helpers for the CLI tests: the real compiled CLI against a real registrar (spawned with --mdns off on
 * 127.0.0.1), and what "nothing happened" means: the registrar's store as the admin API shows it,
 * files, listening ports.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, expect } from 'vitest';
import { AdminClient } from '../../src/admin/client.js';
import { joinProofMac, parseToken } from '../../src/common/proof.js';
import { BIN, localRegistrarArgs, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { api, csrFor, tempDir } from '../helpers/registrar.js';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real CLI with a short timeout: a command that wrongly starts a registrar or waits for
 * admission is killed, and then fails the exit-code check instead of hanging the suite.
 */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 20_000): Run {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUSTER_')));
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...clean, MUSTER_LOG_FORMAT: 'json', ...env },
    timeout: timeoutMs,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A registrar started by registrarFixture, and its admin client. */
export interface CliRegistrar {
  /** Its temporary directory: the registrar's state is in <dir>/reg. */
  dir: string;
  /** Its admin socket, <dir>/admin.sock. */
  sock: string;
  reg: SpawnedRegistrar;
  admin: AdminClient;
}

/**
 * The real registrar (localRegistrarArgs: --mdns off, 127.0.0.1, port 0) in a fresh temporary directory,
 * started before the file's tests (`each: 'file'`) or before each test (`each: 'test'`), killed and its
 * directory removed after. The fields are set by the hook: read them inside tests and hooks.
 */
export function registrarFixture(opts: {
  each: 'file' | 'test';
  prefix?: string;
  cluster?: string;
}): CliRegistrar {
  const fx = {} as CliRegistrar;
  let cleanup: (() => void) | undefined;
  const start = async (): Promise<void> => {
    const t = tempDir(opts.prefix);
    cleanup = t.cleanup;
    fx.dir = t.dir;
    fx.sock = path.join(t.dir, 'admin.sock');
    fx.reg = await spawnRegistrar(localRegistrarArgs(t.dir, fx.sock, opts.cluster));
    fx.admin = new AdminClient(fx.sock);
  };
  const stop = async (): Promise<void> => {
    await fx.reg?.stop('SIGKILL');
    cleanup?.();
  };
  if (opts.each === 'file') {
    beforeAll(start);
    afterAll(stop);
  } else {
    beforeEach(start);
    afterEach(stop);
  }
  return fx;
}

/** What the registrar's store shows through the admin API: events, nodes, tokens, install mode. */
export async function registrarState(sock: string): Promise<Record<string, unknown>> {
  const c = new AdminClient(sock);
  const [events, nodes, tokens, installMode] = await Promise.all([
    c.request('GET', '/v1/admin/events?after=0&limit=10000'),
    c.request('GET', '/v1/admin/nodes?limit=1000'),
    c.request('GET', '/v1/admin/tokens'),
    c.request('GET', '/v1/admin/install-mode'),
  ]);
  return { events, nodes, tokens, installMode };
}

/**
 * registrarState for "a refusal changes nothing" now that refusals are on record (issue 10): checks
 * that the events gained since `before` are `refused` events with exactly these reasons, in order,
 * and returns the state without them, to compare with `before`: nothing else may differ.
 */
export async function registrarStateRefused(
  sock: string,
  before: Record<string, unknown>,
  reasons: string[],
): Promise<Record<string, unknown>> {
  type Events = { events: { type: string; detail?: { reason?: string } }[] };
  const after = await registrarState(sock);
  const was = (before.events as Events).events.length;
  const events = (after.events as Events).events;
  expect(events.slice(was).map((e) => [e.type, e.detail?.reason])).toEqual(
    reasons.map((r) => ['refused', r]),
  );
  return { ...after, events: { ...(after.events as Events), events: events.slice(0, was) } };
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The files under a directory (recursively), or null when it does not exist. */
export function filesUnder(dir: string): string[] | null {
  if (!existsSync(dir)) return null;
  return readdirSync(dir, { recursive: true }).map(String).sort();
}

/** Seeds a registrar: a token, a pending node and an issued one (admitted by the token). */
export async function seed(
  reg: { url: string },
  sock: string,
  names: { pending: string; issued: string },
): Promise<{ tokenId: string }> {
  const admin = new AdminClient(sock);
  const { token } = await admin.request<{ token: string }>('POST', '/v1/admin/tokens', {
    description: 'seed',
  });
  const tok = parseToken(token)!;
  const w = csrFor(names.pending);
  const pending = await api(reg, 'POST', '/v1/join', {
    name: names.pending,
    role: 'worker',
    cluster: '',
    csr: w.csr,
  });
  if (pending.status !== 202) throw new Error(`seed: pending join answered ${pending.status}`);
  const h = csrFor(names.issued);
  const ts = Math.floor(Date.now() / 1000);
  const hmac = joinProofMac(tok.secret, { name: names.issued, role: 'worker', cluster: '', key: h.fp, ts });
  const issued = await api(reg, 'POST', '/v1/join', {
    name: names.issued,
    role: 'worker',
    cluster: '',
    csr: h.csr,
    proof: { id: tok.id, ts, hmac },
  });
  if (issued.status !== 201) throw new Error(`seed: token join answered ${issued.status}`);
  return { tokenId: tok.id };
}
