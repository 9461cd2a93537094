/**
 * State directories and the files in them (DESIGN "The credentials bundle": temp file, fsync, rename;
 * "Files and units": the registrar's and the node's state directories hold their keys).
 *
 * What a state directory holds is a secret or goes with one (the node's key and credentials, the
 * registrar's CA key), so the defaults are private: directories 0700, files 0600, and a public file
 * (a unit, the CA certificate) says so with an explicit mode. Nothing here follows a symbolic link
 * to change a mode: a link planted where a state directory or a key should be would otherwise make
 * muster chmod (or write its keys into) whatever the link points at.
 */
import { promises as fs, constants } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { MusterError } from './errors.js';

/** Private: only the owner (the registrar's or the node's user) reads a state file. */
export const PRIVATE_FILE_MODE = 0o600;
/** Private: only the owner lists or enters a state directory. */
export const PRIVATE_DIR_MODE = 0o700;

const modeText = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

function stateError(message: string, cause?: unknown): MusterError {
  return new MusterError('MUSTER_ERR_STATE_DIR', message, cause === undefined ? {} : { cause });
}

/**
 * Replaces `file` atomically (a temp file in the same directory, fsync, rename, fsync of the
 * directory) with mode `mode`, 0600 unless the caller asks otherwise. The temp file is created with
 * O_EXCL (never through a link) and rename() replaces a link at `file` instead of following it.
 */
export async function writeFileAtomic(
  file: string,
  data: string | Buffer,
  mode = PRIVATE_FILE_MODE,
): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fs.open(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  );
  try {
    await fh.writeFile(data);
    await fh.chmod(mode); // umask must not widen or narrow what we asked for
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

export async function fsyncDir(dir: string): Promise<void> {
  const d = await fs.open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Creates `dir` (and its parents) with `mode` when it is missing.
 *
 * A private mode (no group or other bit, the default 0700) means a state directory, and then an
 * existing directory is made private too: a state directory created by hand, restored from a backup
 * or left by an older muster with mode 0755 would otherwise show the credentials in it to every
 * user. The directory is opened with O_NOFOLLOW and changed through that descriptor (fchmod), so
 * the mode that changes is the directory's own, never a link's target; a state directory that is a
 * symbolic link is refused (MUSTER_ERR_STATE_DIR).
 *
 * A shared mode (0755: the admin socket's directory, /etc/muster) only creates: an existing shared
 * directory such as /tmp or /run is not muster's to change.
 */
export async function ensureDir(dir: string, mode = PRIVATE_DIR_MODE): Promise<void> {
  const isPrivate = (mode & 0o077) === 0;
  try {
    await fs.mkdir(dir, { recursive: true, mode });
  } catch (err) {
    // A file or a dangling link where the directory should be: makePrivateDir says which.
    const code = (err as NodeJS.ErrnoException).code;
    if (!isPrivate || (code !== 'EEXIST' && !(code === 'ENOENT' && (await isSymlink(dir))))) throw err;
  }
  if (isPrivate) await makePrivateDir(dir, mode);
}

async function makePrivateDir(dir: string, mode: number): Promise<void> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || (code === 'ENOTDIR' && (await isSymlink(dir)))) {
      throw stateError(
        `the state directory ${dir} is a symbolic link: muster does not follow it (it would make the ` +
          'target private and keep its keys there); use the real directory instead of the link',
        err,
      );
    }
    if (code === 'ENOTDIR' || code === 'ENOENT') {
      throw stateError(`the state directory ${dir} is not a directory`, err);
    }
    throw stateError(`cannot open the state directory ${dir}: ${code ?? (err as Error).message}`, err);
  }
  try {
    const st = await fh.stat();
    if ((st.mode & 0o7777) !== mode) {
      try {
        await fh.chmod(mode);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        throw stateError(
          `the state directory ${dir} has mode ${modeText(st.mode)} and cannot be made ${modeText(mode)} ` +
            `(${code}; it is owned by uid ${st.uid}): chmod ${modeText(mode)} ${dir}`,
          err,
        );
      }
    }
  } finally {
    await fh.close();
  }
}

async function isSymlink(file: string): Promise<boolean> {
  try {
    return (await fs.lstat(file)).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * Reads a file of a state directory (a certificate, the bundle): undefined when it is missing. It is
 * opened with O_NOFOLLOW: a symbolic link is refused (MUSTER_ERR_STATE_DIR), never read through, and
 * it must be a regular file.
 */
export async function readStateFile(file: string): Promise<string | undefined> {
  return (await readNoFollow(file, false))?.text;
}

/**
 * Reads a key or credential file as readStateFile does, and makes it 0600 through the open
 * descriptor when group or others could read it; `widened` then tells the caller the mode it had, to
 * log.
 */
export function readPrivateFile(file: string): Promise<{ text: string; widened?: number } | undefined> {
  return readNoFollow(file, true);
}

async function readNoFollow(
  file: string,
  tighten: boolean,
): Promise<{ text: string; widened?: number } | undefined> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') {
      throw stateError(
        `${file} is a symbolic link: muster reads and protects its keys and credentials only as ` +
          'regular files in its state directory; replace the link with the file',
        err,
      );
    }
    throw stateError(`cannot read ${file}: ${code ?? (err as Error).message}`, err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw stateError(`${file} is not a regular file`);
    let widened: number | undefined;
    if (tighten && (st.mode & 0o077) !== 0) {
      widened = st.mode & 0o7777;
      try {
        await fh.chmod(PRIVATE_FILE_MODE);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        throw stateError(
          `${file} has mode ${modeText(st.mode)} and cannot be made 0600 (${code}; it is owned by uid ` +
            `${st.uid}): chmod 600 ${file}`,
          err,
        );
      }
    }
    const text = await fh.readFile('utf8');
    return widened === undefined ? { text } : { text, widened };
  } finally {
    await fh.close();
  }
}
