/**
 * Issue 8, smaller holes: the registrar runs as its own user (muster-registrar.service User=muster).
 * This runs the real CLI as a non-root uid, as the unit does (with the unit's --state-dir and
 * --admin-socket, since a non-root muster's defaults are under $HOME), and checks that it works, that
 * what it creates belongs to that uid and is private, and that operators reach the admin socket as
 * root while another uid is refused.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { which } from '../helpers/which.js';
import { BIN, muster } from '../helpers/cli.js';
import { tempDir } from '../helpers/registrar.js';

const isRoot = process.getuid?.() === 0;
/** The registrar's user here (nobody), and another unprivileged user. */
const REGISTRAR_UID = 65534;
const OTHER_UID = 65533;

const setpriv = which('setpriv');

const as = (uid: number): string[] => [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
const env = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: '/nonexistent',
  MUSTER_LOG_FORMAT: 'json',
};

let t: ReturnType<typeof tempDir>;
let child: ChildProcess | undefined;
beforeEach(() => {
  t = tempDir('muster-sec-user-');
});
afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const done = new Promise((r) => child!.once('exit', r));
    child.kill('SIGKILL');
    await done;
  }
  child = undefined;
  t.cleanup();
});

function startAs(
  uid: number,
  args: string[],
): Promise<{ out: () => string; exited: Promise<number | null> }> {
  const c = spawn(setpriv!, [...as(uid), process.execPath, BIN, ...args], {
    cwd: '/',
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = c;
  let out = '';
  const exited = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`registrar did not start:\n${out}`)), 30_000);
    c.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"registrar ready"')) {
        clearTimeout(timer);
        resolve({ out: () => out, exited });
      }
    });
    c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`registrar exited before it was ready:\n${out}`));
    });
  });
}

describe('the registrar as its own (non-root) user', () => {
  it.runIf(!isRoot || !setpriv)('needs root and setpriv (CI runs as root)', () => {
    const why = !isRoot ? 'not root' : 'setpriv (util-linux) is missing';
    console.warn(`\n*** SKIPPED: the registrar is not tested as a non-root user: ${why} ***\n`);
    if (process.env.CI === 'true') expect.fail(`CI must run this test: ${why}`);
  });

  it.runIf(isRoot && !!setpriv)(
    'serves, owns its state privately, and its admin socket answers root but refuses another uid',
    async () => {
      // /var/lib and /run as the unit sees them: directories the registrar's user owns.
      const lib = path.join(t.dir, 'lib');
      const run = path.join(t.dir, 'run');
      chmodSync(t.dir, 0o755);
      for (const d of [lib, run]) {
        mkdirSync(d);
        chownSync(d, REGISTRAR_UID, REGISTRAR_UID);
      }
      const stateDir = path.join(lib, 'muster-registrar');
      const socket = path.join(run, 'admin.sock');
      const reg = await startAs(REGISTRAR_UID, [
        'registrar',
        '--mdns',
        'off',
        '--listen',
        '127.0.0.1:0',
        '--state-dir',
        stateDir,
        '--admin-socket',
        socket,
      ]);

      for (const [file, mode] of [
        [stateDir, 0o700],
        [path.join(stateDir, 'ca'), 0o700],
        [path.join(stateDir, 'ca', 'ca.key'), 0o600],
        [socket, 0o600],
      ] as const) {
        const st = statSync(file);
        expect(st.uid, file).toBe(REGISTRAR_UID);
        expect(st.mode & 0o777, file).toBe(mode);
      }

      // Operators: root reaches the admin socket, whatever its owner and mode.
      const asRoot = muster(['tokens', 'create', '--uses', '1', '--admin-socket', socket]);
      expect(asRoot.code, asRoot.stderr).toBe(0);
      // Another unprivileged user: refused, and nothing changed.
      const other = spawnSync(
        setpriv!,
        [...as(OTHER_UID), process.execPath, BIN, 'tokens', 'create', '--admin-socket', socket],
        { cwd: '/', env, encoding: 'utf8', timeout: 30_000 },
      );
      expect(other.status, other.stderr).toBe(1);
      expect(other.stderr).toMatch(/permission denied/);
      const list = muster(['tokens', 'list', '--json', '--admin-socket', socket]);
      expect(list.code, list.stderr).toBe(0);
      expect((JSON.parse(list.stdout) as { items: unknown[] }).items).toHaveLength(1);

      // SIGTERM: a clean exit 0 as that user too.
      child!.kill('SIGTERM');
      expect(await reg.exited, reg.out()).toBe(0);
    },
  );
});
