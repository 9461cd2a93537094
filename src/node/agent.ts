/**
 * The node agent (`muster join`, DESIGN "Roles"): creates its key once, asks to join, waits by long
 * poll, validates the whole bundle, writes it atomically, acknowledges, runs the on-registered hook.
 * Errors are MusterErrors whose codes the CLI maps to documented exit codes (see JOIN_EXIT).
 */
import { spawn } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MusterError, isMusterError } from '../common/errors.js';
import { ensureDir, readIfExists, writeFileAtomic } from '../common/files.js';
import type { Logger } from '../common/log.js';
import { joinProofMac, nodeSignedPayload, parseToken, signNode, type Bundle, type ParsedToken } from '../common/proof.js';
import { buildCsr, certFingerprint, keyFingerprint } from '../common/x509.js';
import { RegistrarClient, type HttpResult } from '../fallback/client.js';
import { createMdns, nodeTxt, type Mdns } from '../advertiser/index.js';
import { checkBundle } from './bundle-check.js';
import { discoverRegistrar } from './discovery.js';

export interface JoinOptions {
  registrarUrl?: string;
  token?: string;
  name: string;
  role: string;
  cluster: string;
  caFingerprint?: string;
  stateDir: string;
  onRegistered?: string;
  log: Logger;
  /** Give up after this long (default: never, as a boot job that retries until registered). */
  timeoutMs?: number;
  /** Seconds the registrar may hold one long poll. */
  waitS?: number;
  keyType?: 'ec' | 'rsa';
  /** Backoff bounds for retries after errors (ms). */
  backoff?: { baseMs: number; maxMs: number };
  signal?: AbortSignal;
  /** Find the registrar and advertise "ready to register" over mDNS (DESIGN "Discovery"). */
  mdns?: boolean;
  /** How long to look for a registrar by mDNS before using registrarUrl (default 5 s). */
  discoveryTimeoutMs?: number;
  /** IPv4 address of the interface for mDNS. */
  interface?: string;
}

export interface JoinResult {
  status: 'registered' | 'already-registered';
  name: string;
  serial: string;
  certFile: string;
  caFile: string;
  fingerprint: string;
}

/** Exit codes of `muster join`, for unit files (RestartPreventExitStatus=3 4 5). */
export const JOIN_EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  refused: 3,
  nameTaken: 4,
  mismatch: 5,
  hook: 6,
  timeout: 7,
} as const;

export function exitCodeFor(err: unknown): number {
  if (!isMusterError(err)) return JOIN_EXIT.failure;
  switch (err.code) {
    case 'MUSTER_ERR_USAGE':
    case 'MUSTER_ERR_CONFIG':
      return JOIN_EXIT.usage;
    case 'rejected':
    case 'removed':
    case 'bad_proof':
    case 'token_scope':
    case 'wrong_cluster':
    case 'invalid_csr':
    case 'csr_mismatch':
    case 'invalid_name':
    case 'bad_request':
      return JOIN_EXIT.refused;
    case 'name_taken':
      return JOIN_EXIT.nameTaken;
    case 'MUSTER_ERR_BUNDLE':
    case 'MUSTER_ERR_AMBIGUOUS':
    case 'MUSTER_ERR_CA_PIN':
    case 'MUSTER_ERR_TLS':
      return JOIN_EXIT.mismatch;
    case 'MUSTER_ERR_HOOK':
      return JOIN_EXIT.hook;
    case 'MUSTER_ERR_TIMEOUT':
      return JOIN_EXIT.timeout;
    default:
      return JOIN_EXIT.failure;
  }
}

export const FILES = {
  key: 'node.key',
  cert: 'node.crt',
  ca: 'ca.crt',
  chain: 'chain.pem',
  config: 'config.json',
  bundle: 'bundle.json',
  acked: 'acknowledged',
} as const;

export class NodeFiles {
  constructor(readonly dir: string) {}
  path(f: keyof typeof FILES): string {
    return path.join(this.dir, FILES[f]);
  }
  read(f: keyof typeof FILES): Promise<string | undefined> {
    return readIfExists(this.path(f));
  }
}

/** The node's key: created once (0600), the private key never leaves the node. */
export async function loadOrCreateKey(files: NodeFiles, type: 'ec' | 'rsa', log: Logger): Promise<KeyObject> {
  const pem = await files.read('key');
  if (pem) {
    const st = await fs.stat(files.path('key'));
    if ((st.mode & 0o077) !== 0) {
      log.warn({ file: files.path('key'), mode: (st.mode & 0o777).toString(8) }, 'node key was readable by others: set to 0600');
      await fs.chmod(files.path('key'), 0o600);
    }
    return createPrivateKey(pem);
  }
  const { privateKey } =
    type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  await writeFileAtomic(files.path('key'), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  log.info({ key: keyFingerprint(createPublicKey(privateKey)), file: files.path('key') }, 'created the node key');
  return privateKey;
}

/** Present, parseable, matching and current credentials: the node is registered (run again: exit 0). */
async function localRegistration(files: NodeFiles, key: KeyObject | undefined, now: number): Promise<{ bundle: Bundle; cert: X509Certificate } | undefined> {
  const [bundleText, certPem, caPem] = await Promise.all([files.read('bundle'), files.read('cert'), files.read('ca')]);
  if (!bundleText || !certPem || !caPem || !key) return undefined;
  try {
    const bundle = JSON.parse(bundleText) as Bundle;
    const cert = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    if (!cert.checkPrivateKey(key)) return undefined;
    if (!cert.verify(ca.publicKey) && bundle.chain.length === 0) return undefined;
    if (now >= Date.parse(cert.validTo)) return undefined;
    return { bundle, cert };
  } catch {
    return undefined;
  }
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

function retryAfterMs(res: HttpResult): number | undefined {
  const h = res.headers['retry-after'];
  const s = Number(Array.isArray(h) ? h[0] : h);
  return Number.isFinite(s) && s >= 0 ? Math.min(s, 3600) * 1000 : undefined;
}

function apiError(res: HttpResult): MusterError {
  const b = res.body as { error?: string; message?: string } | undefined;
  const code = typeof b?.error === 'string' ? b.error : 'internal';
  const msg = typeof b?.message === 'string' ? b.message : `HTTP ${res.status}`;
  const known = ['rejected', 'removed', 'bad_proof', 'token_scope', 'wrong_cluster', 'invalid_csr', 'csr_mismatch', 'invalid_name', 'bad_request', 'name_taken', 'not_found', 'closed', 'busy', 'rate_limited'];
  return new MusterError((known.includes(code) ? code : 'internal') as never, msg);
}

/** Errors worth retrying: the registrar is unreachable, busy, rate limiting, or closed for now. */
function retryable(err: unknown): boolean {
  return (
    isMusterError(err) &&
    ['MUSTER_ERR_UNREACHABLE', 'MUSTER_ERR_NO_REGISTRAR', 'busy', 'rate_limited', 'closed', 'internal', 'not_found'].includes(err.code)
  );
}

export async function runJoin(o: JoinOptions): Promise<JoinResult> {
  const log = o.log;
  const files = new NodeFiles(o.stateDir);
  try {
    await ensureDir(o.stateDir, 0o700);
  } catch (err) {
    throw new MusterError('MUSTER_ERR_STATE_DIR', `cannot create ${o.stateDir}: ${(err as Error).message}`);
  }
  let token: ParsedToken | undefined;
  if (o.token !== undefined) {
    token = parseToken(o.token);
    if (!token) throw new MusterError('MUSTER_ERR_USAGE', 'the join token is malformed: expected <id>.<secret> as printed by `muster tokens create`');
  }

  const existingKeyPem = await files.read('key');
  const existingKey = existingKeyPem ? createPrivateKey(existingKeyPem) : undefined;
  const local = await localRegistration(files, existingKey, Date.now());
  if (local) {
    if (local.bundle.node !== o.name) {
      throw new MusterError(
        'MUSTER_ERR_BUNDLE',
        `this node is registered as ${local.bundle.node}, not ${o.name}; to register it anew, move ${o.stateDir} away first`,
      );
    }
    const result = resultFor('already-registered', files, local.cert, local.bundle);
    if (!(await files.read('acked'))) {
      // A crash between writing the files and the ack: finish both steps now.
      await finish(o, files, existingKey!, local.bundle, local.cert);
    }
    log.info({ node: o.name, serial: result.serial }, 'already registered');
    return result;
  }

  if (!o.registrarUrl && !o.mdns) {
    throw new MusterError('MUSTER_ERR_USAGE', 'no registrar: pass --registrar https://HOST:PORT, or turn mDNS on to find it on the LAN');
  }
  const key = await loadOrCreateKey(files, o.keyType ?? 'ec', log);
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' }) as Buffer;
  const fp = keyFingerprint(spki);
  const csr = buildCsr(o.name, key);
  const localCaPem = await files.read('ca');
  const localBundle = await files.read('bundle');
  let localCluster: string | undefined;
  try {
    localCluster = localBundle ? (JSON.parse(localBundle) as Bundle).cluster : undefined;
  } catch {
    localCluster = undefined;
  }

  const deadline = o.timeoutMs !== undefined ? Date.now() + o.timeoutMs : Infinity;
  const backoff = o.backoff ?? { baseMs: 1000, maxMs: 60_000 };
  let attempt = 0;
  let client: RegistrarClient | undefined;
  let mdns: Mdns | undefined;
  if (o.mdns) {
    mdns = await startNodeMdns(o, fp, log);
    if (!mdns && !o.registrarUrl) throw new MusterError('MUSTER_ERR_MDNS', 'mDNS is unavailable (see the log) and no --registrar URL is set');
  }
  let waiting = false;
  let loggedPending = false;
  const waitS = o.waitS ?? 30;
  let sentAt = 0;
  try {
    for (;;) {
      if (Date.now() >= deadline) throw new MusterError('MUSTER_ERR_TIMEOUT', `not registered after ${Math.round(o.timeoutMs! / 1000)} s`);
      let hint: number | undefined;
      try {
        if (!client) {
          let url = o.registrarUrl;
          let advertisedCa: string | undefined;
          if (mdns) {
            const found = await discoverRegistrar({
              mdns,
              log,
              timeoutMs: o.discoveryTimeoutMs ?? 5000,
              ...(o.cluster ? { cluster: o.cluster } : {}),
              ...(o.caFingerprint ? { pin: o.caFingerprint } : {}),
              ...(o.signal ? { signal: o.signal } : {}),
            });
            if (found) {
              url = found.url;
              advertisedCa = found.ca;
              log.info({ registrar: found.id, url: found.url, ca: found.ca, cluster: found.cluster }, 'found the registrar by mDNS');
            } else if (url) {
              log.info({ url, after: o.discoveryTimeoutMs ?? 5000 }, 'no registrar found by mDNS: using --registrar');
            }
          }
          if (!url) throw new MusterError('MUSTER_ERR_NO_REGISTRAR', 'no registrar found on the LAN by mDNS yet, and no --registrar URL is set');
          client = await RegistrarClient.connect(url, {
            ...(o.caFingerprint ? { pin: o.caFingerprint } : {}),
            ...(localCaPem ? { localCa: localCaPem } : {}),
            ...(advertisedCa ? { advertisedCa } : {}),
            ...(o.signal ? { signal: o.signal } : {}),
          });
          const { info, trust } = client;
          if (o.cluster && info.cluster !== o.cluster) {
            throw new MusterError('wrong_cluster', `the registrar at ${client.base.origin} serves cluster ${info.cluster}, not ${o.cluster}`);
          }
          if (trust === 'tofu') {
            log.warn(
              { registrar: info.id, ca: info.ca, authenticatedBy: token ? 'join token (bundle MAC)' : 'nothing' },
              token
                ? 'trusting the registrar CA on first use; the join token will authenticate it'
                : 'TRUST ON FIRST USE: neither a pinned CA (--ca-fingerprint) nor a token authenticates this registrar',
            );
          } else {
            log.info({ registrar: info.id, ca: info.ca, trust }, 'registrar verified');
          }
        }
        let res: HttpResult;
        sentAt = Date.now();
        if (!waiting) {
          const ts = Math.floor(Date.now() / 1000);
          const proof = token
            ? { id: token.id, ts, hmac: joinProofMac(token.secret, { name: o.name, role: o.role, cluster: o.cluster, key: fp, ts }) }
            : undefined;
          res = await client.call('POST', '/v1/join', { name: o.name, role: o.role, cluster: o.cluster, csr, ...(proof ? { proof } : {}) }, 15_000, o.signal);
        } else {
          const wait = waitS;
          res = await client.call('GET', `/v1/join/${o.name}?key=${fp}&wait=${wait}`, undefined, (wait + 15) * 1000, o.signal);
        }
        if (res.status === 200 || res.status === 201) {
          const checked = checkBundle(res.body, {
            name: o.name,
            role: o.role,
            cluster: o.cluster,
            spki,
            sessionCaPem: client.caPem,
            registrarId: client.info.id,
            now: Date.now(),
            ...(o.caFingerprint ? { pin: o.caFingerprint } : {}),
            ...(localCaPem ? { localCaPem } : {}),
            ...(localCluster ? { localCluster } : {}),
            ...(token ? { tokenSecret: token.secret } : {}),
          });
          if (!checked.ok) {
            throw new MusterError('MUSTER_ERR_BUNDLE', `refusing the credentials, nothing was written: ${checked.problems.join('; ')}`);
          }
          const bundle = checked.bundle;
          await writeBundle(files, bundle);
          const cert = new X509Certificate(bundle.certificate);
          log.info({ node: o.name, serial: cert.serialNumber, registrar: client.info.id }, 'credentials written');
          await finish(o, files, key, bundle, cert, client);
          return resultFor('registered', files, cert, bundle);
        }
        if (res.status === 202) {
          const body = res.body as { message?: string; state?: string };
          if (!loggedPending) log.info({ node: o.name, key: fp, reason: body?.message }, 'waiting for the registrar to accept this node');
          loggedPending = true;
          const wasPoll = waiting;
          waiting = true;
          attempt = 0;
          // The answer to the POST goes straight to the long poll. A long poll answers 202 after holding
          // the request; only a quick 202 (a registrar that did not wait) makes us pause, as it asks.
          if (wasPoll && (waitS === 0 || Date.now() - sentAt < 1000)) hint = retryAfterMs(res) ?? 5000;
          else continue;
        } else {
          const err = apiError(res);
          if (err.code === 'not_found' && waiting) {
            waiting = false; // the registrar forgot us (restored store?): ask again
            continue;
          }
          if (err.code === 'name_taken') {
            const holder = (res.body as { holder?: { key?: string } })?.holder?.key;
            log.error({ node: o.name, key: fp, holder }, err.message);
          }
          if (!retryable(err)) throw err;
          hint = retryAfterMs(res);
          throw err;
        }
      } catch (err) {
        if (!retryable(err)) throw err;
        if (isMusterError(err, 'MUSTER_ERR_UNREACHABLE') || isMusterError(err, 'MUSTER_ERR_NO_REGISTRAR')) {
          client?.close();
          client = undefined;
        }
        const cap = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(attempt, 16));
        const jittered = Math.random() * cap; // full jitter: a herd of nodes does not retry in step
        const delay = hint !== undefined ? hint + Math.random() * Math.min(hint * 0.2, 5000) : Math.max(jittered, 100);
        attempt++;
        log.warn({ err: (err as Error).message, retryInMs: Math.round(delay) }, 'join attempt failed; retrying');
        await sleep(Math.min(delay, Math.max(0, deadline - Date.now())), o.signal);
        continue;
      }
      if (hint !== undefined) await sleep(Math.min(hint, Math.max(0, deadline - Date.now())), o.signal);
    }
  } finally {
    client?.close();
    // The join advertisement is withdrawn (goodbye, awaited) whether registered, refused or stopped.
    await mdns?.close();
  }
}

/** Advertises "ready to register as X" with the node's own host name (never the machine's). */
async function startNodeMdns(o: JoinOptions, fp: string, log: Logger): Promise<Mdns | undefined> {
  const mlog = log.child({ component: 'mdns' });
  const mdns = createMdns({
    host: `${o.name}.local`,
    ...(o.interface ? { interface: o.interface } : {}),
    logger: mlog,
    onError: (err) => mlog.warn({ err: err.message, code: (err as { code?: string }).code }, 'mDNS error'),
  });
  try {
    await mdns.ready();
  } catch (err) {
    mlog.error({ err: (err as Error).message }, 'mDNS is unavailable');
    await mdns.close().catch(() => undefined);
    return undefined;
  }
  mdns.publish({
    type: 'muster-join',
    name: o.name,
    port: 9, // DNS-SD needs a port; the node serves nothing (RFC 6763 §6: the TXT carries the meaning)
    txt: nodeTxt({ v: 1, name: o.name, role: o.role, cluster: o.cluster, key: fp, state: 'ready' }),
  });
  return mdns;
}

async function writeBundle(files: NodeFiles, bundle: Bundle): Promise<void> {
  // Everything was checked; each file is replaced atomically and bundle.json, written last, marks the
  // set complete (a crash before it leaves the node unregistered, and the next run asks again).
  await fs.rm(files.path('acked'), { force: true });
  await writeFileAtomic(files.path('ca'), bundle.ca);
  await writeFileAtomic(files.path('chain'), bundle.chain.join(''));
  await writeFileAtomic(files.path('cert'), bundle.certificate);
  await writeFileAtomic(files.path('config'), JSON.stringify(bundle.config, null, 2) + '\n');
  await writeFileAtomic(files.path('bundle'), JSON.stringify(bundle, null, 2) + '\n');
}

/** Acknowledge (record becomes active), then run the hook; `acknowledged` marks both done. */
async function finish(o: JoinOptions, files: NodeFiles, key: KeyObject, bundle: Bundle, cert: X509Certificate, client?: RegistrarClient): Promise<void> {
  const serial = cert.serialNumber.toUpperCase().replace(/^(00)+/, '');
  let own = client;
  try {
    own ??= await RegistrarClient.connect(bundle.registrar.url, { localCa: bundle.ca });
    const ts = Math.floor(Date.now() / 1000);
    const sig = signNode(key, nodeSignedPayload('ack', bundle.node, serial, ts));
    const res = await own.call('POST', `/v1/join/${bundle.node}/ack`, { key: keyFingerprint(createPublicKey(key)), serial, ts, sig });
    if (res.status !== 204) throw apiError(res);
    o.log.info({ node: bundle.node, serial }, 'acknowledged');
  } catch (err) {
    // The credentials are valid and written; the next run retries the ack.
    o.log.warn({ err: (err as Error).message }, 'could not acknowledge the credentials; will retry on the next run');
    if (own !== client) own?.close();
    await runHook(o, files, bundle);
    return;
  }
  if (own !== client) own.close();
  await runHook(o, files, bundle);
  await writeFileAtomic(files.path('acked'), new Date().toISOString() + '\n');
}

async function runHook(o: JoinOptions, files: NodeFiles, bundle: Bundle): Promise<void> {
  if (!o.onRegistered) return;
  const env = {
    ...process.env,
    MUSTER_NODE: bundle.node,
    MUSTER_ROLE: bundle.role,
    MUSTER_CLUSTER: bundle.cluster,
    MUSTER_CERT: files.path('cert'),
    MUSTER_KEY: files.path('key'),
    MUSTER_CA: files.path('ca'),
    MUSTER_CONFIG: files.path('config'),
  };
  delete (env as Record<string, string | undefined>).MUSTER_TOKEN;
  const code = await new Promise<number>((resolve) => {
    const child = spawn('/bin/sh', ['-c', o.onRegistered!], { stdio: ['ignore', 'inherit', 'inherit'], env });
    child.on('error', () => resolve(127));
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
  });
  if (code !== 0) throw new MusterError('MUSTER_ERR_HOOK', `the --on-registered command exited with ${code}`);
  o.log.info({ node: bundle.node }, 'on-registered command done');
}

function resultFor(status: JoinResult['status'], files: NodeFiles, cert: X509Certificate, bundle: Bundle): JoinResult {
  return {
    status,
    name: bundle.node,
    serial: cert.serialNumber.toUpperCase().replace(/^(00)+/, ''),
    certFile: files.path('cert'),
    caFile: files.path('ca'),
    fingerprint: certFingerprint(bundle.ca),
  };
}
