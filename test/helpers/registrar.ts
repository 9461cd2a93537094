/** In-process registrars and nodes for integration tests: real level, real HTTPS on 127.0.0.1:0. */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Clock } from '../../src/common/clock.js';
import { memoryLogger } from '../../src/common/log.js';
import { buildCsr, keyFingerprint } from '../../src/common/x509.js';
import { AdminClient } from '../../src/admin/client.js';
import { startRegistrar, type RegistrarOptions, type RunningRegistrar } from '../../src/registrar/main.js';
import { runJoin, type JoinOptions } from '../../src/node/agent.js';
import { httpsJson } from '../../src/fallback/client.js';

export function tempDir(prefix = 'muster-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestRegistrar extends RunningRegistrar {
  dir: string;
  admin: AdminClient;
  logs: ReturnType<typeof memoryLogger>;
  opts: RegistrarOptions;
}

export async function startTestRegistrar(
  dir: string,
  over: Partial<RegistrarOptions> & { clock?: Clock } = {},
): Promise<TestRegistrar> {
  const logs = memoryLogger('registrar');
  const opts: RegistrarOptions = {
    stateDir: path.join(dir, 'registrar'),
    listen: '127.0.0.1:0',
    cluster: 'test',
    autoregister: 'local',
    // Loopback is the "local link" of these tests only because they say so (issue 8: it never is by default).
    interface: '127.0.0.1',
    adminSocket: path.join(dir, 'admin.sock'),
    log: logs.log,
    ...over,
  };
  const reg = await startRegistrar(opts);
  return Object.assign(reg, { dir, admin: new AdminClient(opts.adminSocket), logs, opts });
}

export function ecKey(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
}

export function csrFor(name: string, key: KeyObject = ecKey()): { csr: string; key: KeyObject; fp: string } {
  return { csr: buildCsr(name, key), key, fp: keyFingerprint(key) };
}

export async function joinNode(
  reg: { url: string },
  stateDir: string,
  over: Partial<JoinOptions> = {},
): Promise<Awaited<ReturnType<typeof runJoin>> & { logs: ReturnType<typeof memoryLogger> }> {
  const logs = memoryLogger('node');
  const r = await runJoin({
    registrarUrl: reg.url,
    name: 'node-1',
    role: 'worker',
    cluster: '',
    stateDir,
    log: logs.log,
    backoff: { baseMs: 50, maxMs: 500 },
    ...over,
  });
  return Object.assign(r, { logs });
}

/** `openssl verify` of certFile to the anchor caFile, with the intermediates in `untrusted` if given. */
export function opensslVerify(
  caFile: string,
  certFile: string,
  untrusted?: string,
): { ok: boolean; out: string } {
  const chain = untrusted === undefined ? [] : ['-untrusted', untrusted];
  const r = spawnSync('openssl', ['verify', '-CAfile', caFile, ...chain, certFile], { encoding: 'utf8' });
  return { ok: r.status === 0, out: (r.stdout + r.stderr).trim() };
}

/**
 * An HTTPS call to a registrar through the client's own helper, skipping certificate checks (the API
 * contract is what is tested). A string body is sent as is (to test malformed JSON); anything else
 * as JSON. For exact headers or chunked bodies, see rawRequest in bad-input.ts.
 */
export async function api(
  reg: { url: string },
  method: string,
  urlPath: string,
  body?: unknown,
): Promise<{ status: number; body: any; headers: Record<string, string | string[] | undefined> }> {
  const res = await httpsJson(new URL(urlPath, reg.url), {
    method,
    insecure: true,
    timeoutMs: 60_000,
    ...(typeof body === 'string' ? { rawBody: body } : body !== undefined ? { body } : {}),
  });
  return { status: res.status, body: res.body, headers: res.headers };
}
