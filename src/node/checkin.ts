/**
 * The boot check-in of an already registered node (issue 9, items 4 and 5): one cheap authenticated
 * request to the registrar of its bundle, the signed long poll with `wait=0` (DESIGN "HTTPS API"
 * GET /v1/join/:name). The registrar records the contact (lastSeen) and answers with the current
 * bundle, or 410 when the operator removed or rejected the node.
 *
 * - 200: config.json is rewritten (atomically) when the bundle's config changed, then `--on-changed`
 *   runs. Nothing else is written: the certificate is renewed by `muster renew`, not here.
 * - 410: the node learns it was removed; a MusterError (`removed`/`rejected`, exit 3, which the unit
 *   does not retry). The credentials stay: deleting them is the operator's or `muster leave`'s call.
 * - anything else (down, slow, a refused TLS check, a bundle that fails its checks): a warning. Boot
 *   never depends on the registrar being up, so the node stays "already registered" (exit 0).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Clock } from '../common/clock.js';
import { isMusterError, MusterError } from '../common/errors.js';
import { writeFileAtomic } from '../common/files.js';
import type { Logger } from '../common/log.js';
import { canonicalJson, nodeSignedPayload, signNode, type Bundle } from '../common/proof.js';
import { keyFingerprint } from '../common/x509.js';
import { apiError, RegistrarClient } from '../fallback/client.js';
import { checkBundle } from './bundle-check.js';
import { hookEnvironment, runHook } from './hook.js';
import type { NodeFiles } from './node-files.js';

/** The whole check-in (connect, TLS, request) is capped: a boot job must not hang on a registrar. */
export const CHECKIN_TIMEOUT_MS = 5000;

export interface CheckInOptions {
  files: NodeFiles;
  key: KeyObject;
  bundle: Bundle;
  /** The CA this node holds (ca.crt): the only trust for this request. */
  caPem: string;
  clock: Clock;
  log: Logger;
  onChanged?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export type CheckInOutcome = 'unchanged' | 'config-changed' | 'unreachable';

/** Runs the check-in; throws only for a 410 (removed/rejected) or a failing --on-changed command. */
export async function checkIn(o: CheckInOptions): Promise<CheckInOutcome> {
  const name = o.bundle.node;
  const url = o.bundle.registrar.url;
  const timeoutMs = o.timeoutMs ?? CHECKIN_TIMEOUT_MS;
  const cap = AbortSignal.timeout(timeoutMs);
  const signal = o.signal ? AbortSignal.any([o.signal, cap]) : cap;
  let fresh: Bundle;
  let client: RegistrarClient | undefined;
  try {
    client = await RegistrarClient.connect(url, { localCa: o.caPem, timeoutMs, signal });
    const spki = createPublicKey(o.key).export({ type: 'spki', format: 'der' });
    const fp = keyFingerprint(spki);
    const ts = Math.floor(o.clock.now() / 1000);
    const sig = signNode(o.key, nodeSignedPayload('poll', name, fp, ts));
    const res = await client.call(
      'GET',
      `/v1/join/${name}?key=${fp}&wait=0&ts=${ts}&sig=${sig}`,
      undefined,
      timeoutMs,
      signal,
    );
    if (res.status === 410) {
      const err = apiError(res, ['removed', 'rejected']);
      const code = err.code === 'rejected' ? 'rejected' : 'removed';
      o.log.error(
        { node: name, registrar: o.bundle.registrar.id, error: code },
        code === 'rejected'
          ? 'the registrar rejected this node; its credentials are kept'
          : 'the registrar removed this node; its credentials are kept',
      );
      throw new MusterError(
        code,
        `the registrar at ${url} ${code === 'rejected' ? 'rejected' : 'removed'} node ${name}: ${err.message}`,
      );
    }
    if (res.status !== 200) throw apiError(res);
    const checked = checkBundle(res.body, {
      name,
      role: o.bundle.role,
      cluster: o.bundle.cluster,
      spki,
      sessionCaPem: client.caPem,
      registrarId: o.bundle.registrar.id,
      localCaPem: o.caPem,
      localCluster: o.bundle.cluster,
      now: o.clock.now(),
    });
    if (!checked.ok) throw new MusterError('MUSTER_ERR_BUNDLE', checked.problems.join('; '));
    fresh = checked.bundle;
  } catch (err) {
    if (isMusterError(err, 'removed') || isMusterError(err, 'rejected')) throw err;
    const why =
      cap.aborted && !o.signal?.aborted ? `no answer within ${timeoutMs} ms` : (err as Error).message;
    o.log.warn(
      { node: name, registrar: url, err: why },
      'boot check-in failed: going on with the local credentials',
    );
    return 'unreachable';
  } finally {
    client?.close();
  }

  // Only the config is taken from the answer (a renewed certificate is `muster renew`'s to write).
  const old = await o.files.read('config');
  let changed = true;
  try {
    changed = old === undefined || canonicalJson(JSON.parse(old)) !== canonicalJson(fresh.config);
  } catch {
    changed = true; // an unreadable config.json is replaced
  }
  if (!changed) {
    o.log.info({ node: name }, 'checked in: config unchanged');
    return 'unchanged';
  }
  await writeFileAtomic(o.files.path('config'), JSON.stringify(fresh.config, null, 2) + '\n');
  o.log.info({ node: name }, 'checked in: config.json updated');
  if (o.onChanged) {
    // The new config (a new group among it: MUSTER_NODE_GROUP) with the files this node holds.
    const env = hookEnvironment(process.env, o.files, { ...o.bundle, config: fresh.config });
    await runHook(o.onChanged, env, '--on-changed');
    o.log.info({ node: name }, 'on-changed command done');
  }
  return 'config-changed';
}
