/**
 * `muster renew` (DESIGN "Renewal", "HTTPS API" POST /v1/renew; issue 9, items 1 and 4): a registered
 * node renews with its current key and certificate once two thirds of the lifetime have passed (or at
 * once with `now`), optionally rotating to a new key, and picks up the current config.
 *
 * Nothing local changes before the registrar's bundle passed the same check as a join's. Then the new
 * key (when rotating) goes first: a crash right after it leaves a key that no longer matches node.crt,
 * so the node reads as unregistered and its next `muster join` with that key gets the renewed
 * certificate back (the registrar already holds the new key). bundle.json goes last, as for a join.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import type { Clock } from '../common/clock.js';
import { MusterError } from '../common/errors.js';
import { canonicalJson, nodeSignedPayload, renewRef, signNode, type Bundle } from '../common/proof.js';
import { fsyncDir, writeFileAtomic } from '../common/files.js';
import type { Logger } from '../common/log.js';
import { buildCsr, keyFingerprint } from '../common/x509.js';
import { apiError, RegistrarClient } from '../fallback/client.js';
import { checkBundle } from './bundle-check.js';
import { nodeClock } from './clock.js';
import { hookEnvironment, runHook } from './hook.js';
import { localRegistration, NodeFiles, serialOf } from './node-files.js';

export interface RenewOptions {
  stateDir: string;
  /** Renew whatever the time (also to fetch a changed config at once). */
  now?: boolean;
  /** Renew with a new key (both keys prove themselves). */
  rotateKey?: boolean;
  /** Run after a renewal (services reload their certificate). */
  onRenewed?: string;
  /** Run after config.json changed. */
  onChanged?: string;
  log: Logger;
  clock?: Clock;
  timeoutMs?: number;
}

export interface RenewResult {
  name: string;
  renewed: boolean;
  configChanged: boolean;
  serial: string;
  notAfter: string;
  /** When the renewal is due (two thirds of the lifetime). */
  due: string;
}

/** Two thirds of the certificate's lifetime (DESIGN "Renewal"), from its issue time. */
export function renewalDue(cert: X509Certificate, issuedAt: string | undefined): number {
  const from = Date.parse(issuedAt ?? '') || Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  return from + Math.floor(((to - from) * 2) / 3);
}

/** POST /v1/renew's body (fallback/schemas.ts RenewBody): the current key signs, the new key's CSR rides along. */
export function renewBody(
  key: KeyObject,
  name: string,
  serial: string,
  ts: number,
  newKey?: KeyObject,
): { name: string; key: string; serial: string; ts: number; sig: string; newCsr?: string } {
  const newFp = newKey ? keyFingerprint(createPublicKey(newKey)) : undefined;
  return {
    name,
    key: keyFingerprint(createPublicKey(key)),
    serial,
    ts,
    sig: signNode(key, nodeSignedPayload('renew', name, renewRef(serial, newFp), ts)),
    ...(newKey ? { newCsr: buildCsr(name, newKey) } : {}),
  };
}

export async function runRenew(o: RenewOptions): Promise<RenewResult> {
  const files = new NodeFiles(o.stateDir);
  const clock = o.clock ?? nodeClock;
  const keyPem = await files.read('key');
  const key = keyPem ? createPrivateKey(keyPem) : undefined;
  const reg = await localRegistration(files, key, clock.now());
  if (!reg || !key) {
    throw new MusterError(
      'not_found',
      `this node has no valid credentials in ${o.stateDir} (not registered, or the certificate expired): run muster join`,
    );
  }
  const name = reg.bundle.node;
  const serial = serialOf(reg.cert);
  const due = renewalDue(reg.cert, reg.bundle.issuedAt);
  const base = {
    name,
    serial,
    notAfter: new Date(reg.cert.validTo).toISOString(),
    due: new Date(due).toISOString(),
  };
  if (!o.now && !o.rotateKey && clock.now() < due) {
    o.log.info({ node: name, serial, due: base.due }, 'renewal not due yet');
    return { ...base, renewed: false, configChanged: false };
  }

  const newKey = o.rotateKey ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey : undefined;
  // Trust: the CA this node holds (the renewal goes to the registrar that admitted it, never first use).
  const client = await RegistrarClient.connect(reg.bundle.registrar.url, {
    localCa: reg.caPem,
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
  });
  let bundle: Bundle;
  try {
    const body = renewBody(key, name, serial, Math.floor(clock.now() / 1000), newKey);
    const res = await client.call('POST', '/v1/renew', body, o.timeoutMs);
    if (res.status !== 200) {
      const err = apiError(res);
      throw new MusterError(
        err.code,
        `the registrar refused the renewal of ${name}: ${err.message}; nothing was changed on this node`,
      );
    }
    const spki = createPublicKey(newKey ?? key).export({ type: 'spki', format: 'der' });
    const checked = checkBundle(res.body, {
      name,
      role: reg.bundle.role,
      cluster: reg.bundle.cluster,
      spki,
      sessionCaPem: client.caPem,
      registrarId: reg.bundle.registrar.id,
      localCaPem: reg.caPem,
      localCluster: reg.bundle.cluster,
      now: clock.now(),
    });
    if (!checked.ok) {
      throw new MusterError(
        'MUSTER_ERR_BUNDLE',
        `refusing the renewed credentials, nothing was written: ${checked.problems.join('; ')}`,
      );
    }
    bundle = checked.bundle;
  } finally {
    client.close();
  }

  const oldConfig = await files.read('config');
  let configChanged = true;
  try {
    configChanged =
      oldConfig === undefined || canonicalJson(JSON.parse(oldConfig)) !== canonicalJson(bundle.config);
  } catch {
    configChanged = true; // an unreadable config.json is replaced
  }
  if (newKey) {
    await writeFileAtomic(
      files.path('key'),
      newKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      0o600,
    );
  }
  await writeFileAtomic(files.path('ca'), bundle.ca);
  if (bundle.chain.length > 0) await writeFileAtomic(files.path('chain'), bundle.chain.join(''));
  await writeFileAtomic(files.path('cert'), bundle.certificate);
  if (configChanged)
    await writeFileAtomic(files.path('config'), JSON.stringify(bundle.config, null, 2) + '\n');
  await writeFileAtomic(files.path('bundle'), JSON.stringify(bundle, null, 2) + '\n');
  await fsyncDir(o.stateDir);

  const cert = new X509Certificate(bundle.certificate);
  const result: RenewResult = {
    name,
    renewed: true,
    configChanged,
    serial: serialOf(cert),
    notAfter: new Date(cert.validTo).toISOString(),
    due: new Date(renewalDue(cert, bundle.issuedAt)).toISOString(),
  };
  o.log.info(
    { node: name, serial: result.serial, notAfter: result.notAfter, rotated: !!newKey, configChanged },
    'renewed',
  );
  const env = hookEnvironment(process.env, files, bundle);
  if (configChanged && o.onChanged) await runHook(o.onChanged, env, '--on-changed');
  if (o.onRenewed) await runHook(o.onRenewed, env, '--on-renewed');
  return result;
}
