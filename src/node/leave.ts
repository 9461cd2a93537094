/**
 * `muster leave` (DESIGN "HTTPS API" POST /v1/leave, "After admission": a node's own leave revokes its
 * certificate): the node tells the registrar of its bundle, signed with its key over ('leave', name,
 * serial, ts), and then removes its local credentials.
 *
 * Order matters for a crash at any instant: nothing local changes before the registrar has answered
 * 204 (the record is `removed`, the serial revoked); then bundle.json, the file whose presence makes the
 * set "registered" (node-files.ts writes it last), goes first, so that from there on the node reads as
 * unregistered whatever else is still on disk. Leaving again is harmless: the registrar answers 204 to
 * a leave of a record already removed, and the rest of the files are removed then.
 */
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { Clock } from '../common/clock.js';
import { MusterError } from '../common/errors.js';
import { fsyncDir } from '../common/files.js';
import type { Logger } from '../common/log.js';
import { nodeSignedPayload, signNode, type Bundle } from '../common/proof.js';
import { keyFingerprint } from '../common/x509.js';
import { apiError, RegistrarClient } from '../fallback/client.js';
import { nodeClock } from './clock.js';
import { NodeFiles, serialOf, type NodeFile } from './node-files.js';

export interface LeaveOptions {
  stateDir: string;
  /** The registrar to tell; default the one named in bundle.json. */
  registrarUrl?: string;
  /** Keep node.key (a machine that will join again with the same key). */
  keepKey?: boolean;
  log: Logger;
  clock?: Clock;
  timeoutMs?: number;
}

export interface LeaveResult {
  name: string;
  serial: string;
  registrar: string;
  /** The files removed, by name. */
  removed: string[];
}

/** The credentials a leave removes; bundle.json first (see above), node.key last and only if asked. */
const CREDENTIALS: readonly NodeFile[] = ['bundle', 'acked', 'config', 'cert', 'chain', 'ca'];

/** What `muster leave` signs: POST /v1/leave's body (fallback/schemas.ts LeaveBody). */
export function leaveBody(
  key: KeyObject,
  name: string,
  serial: string,
  ts: number,
): { name: string; key: string; serial: string; ts: number; sig: string } {
  return {
    name,
    key: keyFingerprint(createPublicKey(key)),
    serial,
    ts,
    sig: signNode(key, nodeSignedPayload('leave', name, serial, ts)),
  };
}

/** The node's registration as far as leaving needs it: bundle, certificate, CA, and the key it matches. */
async function registration(
  files: NodeFiles,
): Promise<{ bundle: Bundle; serial: string; caPem: string; key: KeyObject } | undefined> {
  const [bundleText, certPem, caPem, keyPem] = await Promise.all([
    files.read('bundle'),
    files.read('cert'),
    files.read('ca'),
    files.read('key'),
  ]);
  if (!bundleText || !certPem || !caPem || !keyPem) return undefined;
  try {
    const bundle = JSON.parse(bundleText) as Bundle;
    const cert = new X509Certificate(certPem);
    const key = createPrivateKey(keyPem);
    // An expired certificate may still leave (the registrar checks key and serial, not the date).
    if (!cert.checkPrivateKey(key) || typeof bundle.registrar?.url !== 'string') return undefined;
    return { bundle, serial: serialOf(cert), caPem, key };
  } catch {
    return undefined;
  }
}

export async function runLeave(o: LeaveOptions): Promise<LeaveResult> {
  const files = new NodeFiles(o.stateDir);
  const clock = o.clock ?? nodeClock;
  const reg = await registration(files);
  if (!reg) {
    throw new MusterError(
      'not_found',
      `this node is not registered (no valid credentials in ${o.stateDir}): nothing to leave, nothing was changed`,
    );
  }
  const name = reg.bundle.node;
  const url = o.registrarUrl ?? reg.bundle.registrar.url;
  // Trust: the CA this node holds (never first use: the leave goes to the registrar that admitted it).
  const client = await RegistrarClient.connect(url, {
    localCa: reg.caPem,
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
  });
  try {
    const body = leaveBody(reg.key, name, reg.serial, Math.floor(clock.now() / 1000));
    const res = await client.call('POST', '/v1/leave', body, o.timeoutMs);
    if (res.status !== 204) {
      const err = apiError(res);
      throw new MusterError(
        err.code,
        `the registrar refused the leave of ${name}: ${err.message}; nothing was changed on this node`,
      );
    }
  } finally {
    client.close();
  }
  o.log.info(
    { node: name, serial: reg.serial, registrar: client.info.id },
    'left: the certificate is revoked',
  );

  const removed: string[] = [];
  const gone: NodeFile[] = o.keepKey ? [...CREDENTIALS] : [...CREDENTIALS, 'key'];
  for (const f of gone) {
    try {
      await fs.rm(files.path(f));
      removed.push(files.path(f));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new MusterError(
          'MUSTER_ERR_STATE_DIR',
          `left the registrar, but cannot remove ${files.path(f)}: ${(err as Error).message}`,
        );
      }
    }
    // bundle.json's removal is the switch from registered to unregistered: durable before the rest.
    if (f === 'bundle') await fsyncDir(o.stateDir);
  }
  await fsyncDir(o.stateDir);
  o.log.info({ node: name, files: removed.length, keptKey: o.keepKey === true }, 'local credentials removed');
  return { name, serial: reg.serial, registrar: url, removed };
}
