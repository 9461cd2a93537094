/**
 * The node's files in its state directory (README "Setting up nodes in an image"): the key, made once
 * and never sent, and the credentials from the bundle, each replaced atomically, `bundle.json` last.
 */
import { createPublicKey, generateKeyPair, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fsyncDir, PRIVATE_FILE_MODE, readIfExists, writeFileAtomic } from '../common/files.js';
import type { Logger } from '../common/log.js';
import type { Bundle } from '../common/proof.js';
import { keyFingerprint } from '../common/x509.js';
import { parseNodeKey } from './node-key.js';

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

/**
 * The node's key: created once (0600), the private key never leaves the node. `existing`: the key as
 * the caller already read and parsed it from node.key (a parse is about 0.5 ms of CPU, a read four
 * trips to the libuv pool: issue 12, target 3); its file's mode is still checked.
 */
export async function loadOrCreateKey(
  files: NodeFiles,
  type: 'ec' | 'rsa',
  log: Logger,
  existing?: KeyObject,
): Promise<KeyObject> {
  const pem = existing ? undefined : await files.read('key');
  if (existing || pem) {
    const st = await fs.stat(files.path('key'));
    if ((st.mode & 0o077) !== 0) {
      log.warn(
        { file: files.path('key'), mode: (st.mode & 0o777).toString(8) },
        'node key was readable by others: set to 0600',
      );
      await fs.chmod(files.path('key'), 0o600);
    }
    return existing ?? parseNodeKey(pem!);
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

/** The credentials files as they are on disk (undefined: missing). */
export interface CredentialFiles {
  bundle: string | undefined;
  cert: string | undefined;
  ca: string | undefined;
}

export async function readCredentials(files: NodeFiles): Promise<CredentialFiles> {
  const [bundle, cert, ca] = await Promise.all([files.read('bundle'), files.read('cert'), files.read('ca')]);
  return { bundle, cert, ca };
}

/**
 * Present, parseable, matching and current credentials: the node is registered (run again: exit 0).
 * `read`: the files as the caller already read them (readCredentials), else read here.
 */
export async function localRegistration(
  files: NodeFiles,
  key: KeyObject | undefined,
  now: number,
  read?: CredentialFiles,
): Promise<{ bundle: Bundle; cert: X509Certificate; caPem: string } | undefined> {
  const { bundle: bundleText, cert: certPem, ca: caPem } = read ?? (await readCredentials(files));
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
 * Writes a checked bundle. Each file is replaced atomically (temp file, fsync, rename: DESIGN "The
 * credentials bundle") and bundle.json, renamed last, marks the set complete (a crash before it leaves
 * the node unregistered, and the next run asks again). The temp files are written and synced all at
 * once, the other files renamed, the directory synced once, then bundle.json renamed and the directory
 * synced again: the same order of what a crash can leave as one file at a time, with two directory
 * syncs instead of one per file (each is milliseconds on a real disk, on the join's path: issue 12,
 * target 4).
 * chain.pem exists only when there are intermediates: an empty file would read as "a chain with no
 * certificate" to tools that load it, so a stale one from an earlier registration is removed.
 */
export async function writeBundle(files: NodeFiles, bundle: Bundle): Promise<void> {
  const set: [NodeFile, string][] = [
    ['ca', bundle.ca],
    ...(bundle.chain.length > 0 ? ([['chain', bundle.chain.join('')]] as [NodeFile, string][]) : []),
    ['cert', bundle.certificate],
    ['config', JSON.stringify(bundle.config, null, 2) + '\n'],
    ['bundle', JSON.stringify(bundle, null, 2) + '\n'],
  ];
  const gone: NodeFile[] = bundle.chain.length > 0 ? ['acked'] : ['acked', 'chain'];
  // Every step settles before an error is thrown, so that a temp file still being written when
  // another step failed is removed too. The ack of an earlier registration no longer holds.
  const [staging, unlinking] = await Promise.all([
    Promise.allSettled(set.map(([f, data]) => stage(files.path(f), data))),
    Promise.allSettled(gone.map((f) => unlinkIfExists(files.path(f)))),
  ]);
  const staged = staging.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  try {
    const failed = [...staging, ...unlinking].find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    const last = staged[staged.length - 1]!; // bundle.json, the last of the set
    await Promise.all(staged.slice(0, -1).map((s) => commit(s)));
    await fsyncDir(files.dir);
    await commit(last);
    await fsyncDir(files.dir);
  } finally {
    // Whatever was not renamed (a failed step): no temp file is left behind.
    await Promise.all(staged.filter((s) => !s.done).map((s) => fs.rm(s.tmp, { force: true })));
  }
}

/** A file written and synced under a temp name, renamed over its real name by `commit`. */
interface Staged {
  file: string;
  tmp: string;
  done?: boolean;
}

/**
 * As writeFileAtomic (common/files.ts) up to the rename: a temp file in the same directory, created
 * with O_EXCL (never through a link), mode 0600 whatever the umask, synced.
 */
async function stage(file: string, data: string, mode = PRIVATE_FILE_MODE): Promise<Staged> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fs.open(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  );
  const s: Staged = { file, tmp };
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  return s;
}

/** rename() replaces a link at the real name instead of following it. */
async function commit(s: Staged): Promise<void> {
  await fs.rename(s.tmp, s.file);
  s.done = true;
}

/** unlink, not fs.rm: rm checks the path first (an lstat, in a node herd's profile about 2 % of an agent). */
async function unlinkIfExists(file: string): Promise<void> {
  try {
    await fs.unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Creates the `acknowledged` marker, 0600, never through a link (O_EXCL, O_NOFOLLOW). Its presence is
 * all it says (the time in it is for a person), and it is written only once the ack and the hook are
 * done, so a torn or lost one is harmless: a marker lost to a crash makes the next run ack again (the
 * registrar takes an ack twice) and run the hook again, as for a crash before it. No temp file, rename
 * or syncs, then: 3 file operations instead of 9, about 1 ms of an agent's CPU in a herd (issue 12,
 * target 3). writeBundle removes an older one first; anything found in its place anyway (a link, an
 * older marker) is replaced atomically, as before.
 */
export async function markAcknowledged(files: NodeFiles, text: string): Promise<void> {
  try {
    await fs.writeFile(files.path('acked'), text, {
      flag: constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      mode: 0o600,
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    await writeFileAtomic(files.path('acked'), text);
  }
}

/** The certificate serial as the registrar prints it (upper-case hex, no leading zero bytes). */
export function serialOf(cert: X509Certificate): string {
  return cert.serialNumber.toUpperCase().replace(/^(00)+/, '');
}
