/**
 * Issue 8, smaller holes: the admin socket. It is bound under umask 077 (before, it was created under
 * the process umask, 0755 with the usual 022, and only chmodded to 0600 after the listen, leaving a
 * window in which any local user could connect), and another uid is refused: the admin API is the
 * operator's (root's, or the registrar user's) alone, whatever that user's umask.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { which } from '../helpers/which.js';
import { BIN } from '../helpers/cli.js';
import { startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

const setpriv = which('setpriv');

/** Runs a command as nobody; asynchronous, since the registrar answering it runs in this process. */
function runAsNobody(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      setpriv!,
      [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, ...args],
      { cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...env } },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar | undefined;
beforeEach(() => {
  t = tempDir('muster-sec-admin-');
});
afterEach(async () => {
  await reg?.close();
  reg = undefined;
  t.cleanup();
});

describe('the admin socket is bound under umask 077', () => {
  it('has no group or other bit from the instant it exists, and is 0600 once the registrar is up', async () => {
    const socket = path.join(t.dir, 'admin.sock');
    // The mode the socket has in the same tick as bind(2): net.Server#listen binds a Unix socket
    // synchronously, so a stat right after it returns sees what any other process could see first.
    const seen: number[] = [];
    const listen = net.Server.prototype.listen;
    const spy = vi.spyOn(net.Server.prototype, 'listen').mockImplementation(function (
      this: net.Server,
      ...args: unknown[]
    ) {
      const r = (listen as (...a: unknown[]) => net.Server).apply(this, args);
      const opt = args[0] as { path?: string } | string | undefined;
      const p = typeof opt === 'string' ? opt : opt?.path;
      if (p === socket && existsSync(socket)) seen.push(statSync(socket).mode & 0o777);
      return r;
    });
    // A typical interactive umask: the socket must not depend on it.
    const before = process.umask(0o022);
    let after: number;
    try {
      reg = await startTestRegistrar(t.dir, { adminSocket: socket });
      after = process.umask(0o022);
    } finally {
      process.umask(before);
      spy.mockRestore();
    }
    expect(seen, 'the admin socket was bound through net.Server#listen').toHaveLength(1);
    expect((seen[0]! & 0o077).toString(8), 'group/other bits at bind time').toBe('0');
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(statSync(socket).isSocket()).toBe(true);
    // The process umask is back as it was (other files keep their modes).
    expect(after.toString(8)).toBe('22');
  });
});

describe('another uid is refused at the admin socket', () => {
  it.runIf(!isRoot || !setpriv)('needs root and setpriv (CI runs as root)', () => {
    const why = !isRoot ? 'not root' : 'setpriv (util-linux) is missing';
    console.warn(`\n*** SKIPPED: the admin socket's refusal of another uid is not tested here: ${why} ***\n`);
    if (process.env.CI === 'true') expect.fail(`CI must run this test: ${why}`);
  });

  it.runIf(isRoot && !!setpriv)(
    'the CLI as nobody cannot create a token, and nothing changes; root and the socket mode decide it',
    async () => {
      // The socket's directory is world-searchable: only the socket's own mode stands in the way.
      chmodSync(t.dir, 0o755);
      const socket = path.join(t.dir, 'admin.sock');
      reg = await startTestRegistrar(t.dir, { adminSocket: socket });
      expect(statSync(socket).mode & 0o777).toBe(0o600);
      const eventsBefore = (await reg.admin.request<{ events: unknown[] }>('GET', '/v1/admin/events?after=0'))
        .events;

      const asNobody = (args: string[]) =>
        runAsNobody([BIN, ...args, '--admin-socket', socket], { MUSTER_LOG_FORMAT: 'json' });

      const refused = await asNobody(['tokens', 'create', '--uses', '5']);
      expect(refused.status, refused.stderr).toBe(1);
      expect(refused.stderr).toMatch(/MUSTER_ERR_ADMIN_SOCKET|cannot reach the registrar/);
      expect(refused.stderr).toMatch(/permission denied/);
      expect(refused.stdout).toBe('');
      const list = await asNobody(['nodes', 'list', '--json']);
      expect(list.status).toBe(1);
      expect(list.stderr).toMatch(/permission denied/);

      // Nothing changed: no token, no event.
      expect((await reg.admin.request<{ tokens: unknown[] }>('GET', '/v1/admin/tokens')).tokens).toEqual([]);
      expect(
        (await reg.admin.request<{ events: unknown[] }>('GET', '/v1/admin/events?after=0')).events,
      ).toEqual(eventsBefore);

      // The raw connect(2) as nobody: EACCES, from the socket's mode.
      const raw = await runAsNobody([
        '-e',
        `require('net').connect(${JSON.stringify(socket)}).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(3); });`,
      ]);
      expect(raw.stdout.trim()).toBe('EACCES');
      expect(raw.status).toBe(3);

      // The check is not vacuous: with the socket opened to everyone, the same command as nobody works.
      chmodSync(socket, 0o666);
      const opened = await asNobody(['tokens', 'create', '--uses', '5']);
      expect(opened.status, opened.stderr).toBe(0);
      expect((await reg.admin.request<{ tokens: unknown[] }>('GET', '/v1/admin/tokens')).tokens).toHaveLength(
        1,
      );
    },
  );
});
