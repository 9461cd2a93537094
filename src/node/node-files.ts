/**
 * The node's files in its state directory (README "Setting up nodes in an image"): the key, made once
 * and never sent, and the credentials from the bundle, each replaced atomically, `bundle.json` last.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { readIfExists, writeFileAtomic } from '../common/files.js';
import type { Logger } from '../common/log.js';
import type { Bundle } from '../common/proof.js';
import { keyFingerprint } from '../common/x509.js';

export const FILES = {
  key: 'node.key',
  cert: 'node.crt',
  ca: 'ca.crt',
  /** Intermediate CAs, leaf side first; absent when the bundle has none. */
  chain: 'chain.pem',
  config: 'config.json',
  bundle: 'bundle.json',
  /** Marks the ack and the hook done (a crash before it: the next run finishes both). */
  acked: 'acknowledged',
} as const;

export type NodeFile = keyof typeof FILES;

export class NodeFiles {
  constructor(readonly dir: string) {}
  path(f: NodeFile): string {
    return path.join(this.dir, FILES[f]);
  }
  read(f: NodeFile): Promise<string | undefined> {
    return readIfExists(this.path(f));
  }
}

const generateKeyPairAsync = promisify(generateKeyPair);

/** The node's key: created once (0600), the private key never leaves the node. */
export async function loadOrCreateKey(files: NodeFiles, type: 'ec' | 'rsa', log: Logger): Promise<KeyObject> {
  const pem = await files.read('key');
  if (pem) {
    const st = await fs.stat(files.path('key'));
    if ((st.mode & 0o077) !== 0) {
      log.warn(
        { file: files.path('key'), mode: (st.mode & 0o777).toString(8) },
        'node key was readable by others: set to 0600',
      );
      await fs.chmod(files.path('key'), 0o600);
    }
    return createPrivateKey(pem);
  }
  // On the libuv pool: the event loop stays free meanwhile, for the mDNS answers the early discovery
  // is listening for (early-discovery.ts); an RSA key takes 50-200 ms.
  const { privateKey } =
    type === 'rsa'
      ? await generateKeyPairAsync('rsa', { modulusLength: 2048 })
      : await generateKeyPairAsync('ec', { namedCurve: 'prime256v1' });
  await writeFileAtomic(
    files.path('key'),
    privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    0o600,
  );
  log.info(
    { key: keyFingerprint(createPublicKey(privateKey)), file: files.path('key') },
    'created the node key',
  );
  return privateKey;
}

/** Present, parseable, matching and current credentials: the node is registered (run again: exit 0). */
export async function localRegistration(
  files: NodeFiles,
  key: KeyObject | undefined,
  now: number,
): Promise<{ bundle: Bundle; cert: X509Certificate; caPem: string } | undefined> {
  const [bundleText, certPem, caPem] = await Promise.all([
    files.read('bundle'),
    files.read('cert'),
    files.read('ca'),
  ]);
  if (!bundleText || !certPem || !caPem || !key) return undefined;
  try {
    const bundle = JSON.parse(bundleText) as Bundle;
    const cert = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    if (!cert.checkPrivateKey(key)) return undefined;
    if (!cert.verify(ca.publicKey) && bundle.chain.length === 0) return undefined;
    if (now >= Date.parse(cert.validTo)) return undefined;
    return { bundle, cert, caPem };
  } catch {
    return undefined;
  }
}

/**
 * Writes a checked bundle. Each file is replaced atomically and bundle.json, written last, marks the
 * set complete (a crash before it leaves the node unregistered, and the next run asks again).
 * chain.pem exists only when there are intermediates: an empty file would read as "a chain with no
 * certificate" to tools that load it, so a stale one from an earlier registration is removed.
 */
export async function writeBundle(files: NodeFiles, bundle: Bundle): Promise<void> {
  await fs.rm(files.path('acked'), { force: true });
  await writeFileAtomic(files.path('ca'), bundle.ca);
  if (bundle.chain.length > 0) await writeFileAtomic(files.path('chain'), bundle.chain.join(''));
  else await fs.rm(files.path('chain'), { force: true });
  await writeFileAtomic(files.path('cert'), bundle.certificate);
  await writeFileAtomic(files.path('config'), JSON.stringify(bundle.config, null, 2) + '\n');
  await writeFileAtomic(files.path('bundle'), JSON.stringify(bundle, null, 2) + '\n');
}

/** The certificate serial as the registrar prints it (upper-case hex, no leading zero bytes). */
export function serialOf(cert: X509Certificate): string {
  return cert.serialNumber.toUpperCase().replace(/^(00)+/, '');
}
