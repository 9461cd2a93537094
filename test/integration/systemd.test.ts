/**
 * The units in systemd/ (DESIGN "Files and units": `systemd-analyze verify` passes on every unit) and
 * `muster install-units`, run through yargs into a fake root.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMusterError } from '../../src/common/errors.js';
import { parseCommandLine } from '../../src/cli/cli.js';
import {
  EXAMPLE_ENV,
  UNITS_SOURCE_DIR,
  renderSystemdUnit,
  renderUpstartJob,
} from '../../src/cli/install-units.js';

const UNITS = [
  'muster-registrar.service',
  'muster-join.service',
  'muster-registered.target',
  'muster-renew.service',
  'muster-renew.timer',
];
const UPSTART = path.join(UNITS_SOURCE_DIR, 'upstart/muster-join.conf');
const SYSUSERS = path.join(UNITS_SOURCE_DIR, 'sysusers.d/muster.conf');
/** What systemd-sysusers writes into an image root (besides the files install-units installs). */
const PASSWD_FILES = ['etc/.pwd.lock', 'etc/group', 'etc/gshadow', 'etc/passwd', 'etc/shadow'];
const BIN = path.resolve(import.meta.dirname, '../../dist/cli/main.js');

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir || '.', cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

const analyze = which('systemd-analyze');
const sysusers = which('systemd-sysusers');
const ci = process.env.CI === 'true';
if (!analyze) {
  console.warn(
    '\n!!! systemd-analyze not found: SKIPPING `systemd-analyze verify` of the units' +
      (ci
        ? ' (CI=true: this fails the run; .ci/run installs the systemd package)'
        : ' (install the systemd package)') +
      '\n',
  );
}

/** `systemd-analyze verify`: exit 0 is not enough, it reports bad lines as warnings and exits 0. */
function verify(files: string[]): { code: number; problems: string[]; stderr: string } {
  const r = spawnSync(analyze!, ['verify', ...files], {
    encoding: 'utf8',
    env: { ...process.env, SYSTEMD_LOG_LEVEL: 'info', SYSTEMD_LOG_COLOR: '0', SYSTEMD_PAGER: '' },
    timeout: 30_000,
  });
  const problems = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .filter((l) => l.trim() !== '' && (/muster/.test(l) || files.some((f) => l.includes(path.basename(f)))));
  return { code: r.status ?? -1, problems, stderr: r.stderr };
}

/** The shell body of an upstart job: the lines between `script` and `end script`. */
function upstartScript(text: string): string {
  const m = /^script\n([\s\S]*?)^end script$/m.exec(text);
  if (!m) throw new Error('no script ... end script block');
  return m[1]!;
}

function shParses(script: string): { code: number; stderr: string } {
  const r = spawnSync('sh', ['-n'], { input: script, encoding: 'utf8' });
  return { code: r.status ?? -1, stderr: r.stderr };
}

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'muster-units-'));
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** A stand-in muster binary: an executable that exists (ExecStart= must name one). */
function fakeBinary(): string {
  const bin = path.join(tmp, 'bin', 'muster');
  mkdirSync(path.dirname(bin), { recursive: true });
  writeFileSync(bin, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  return bin;
}

/** Runs `muster install-units ARGS` as main.ts does (parse, validate, run); returns the lines it printed. */
async function installUnits(args: string[]): Promise<string[]> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    const parsed = (await parseCommandLine(['install-units', ...args]))!;
    await parsed.spec.run(parsed.values as never, parsed.ctx);
  } finally {
    spy.mockRestore();
  }
  return out.split('\n').filter((l) => l !== '');
}

function listTree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe('systemd-analyze verify', () => {
  it.runIf(ci && !analyze)('systemd-analyze is installed (CI=true)', () => {
    expect.fail('systemd-analyze is missing: .ci/run installs the systemd package');
  });

  it.skipIf(!analyze)('passes on every shipped unit, with no warning about them', () => {
    // The shipped units run /usr/bin/env muster: verify checks that /usr/bin/env exists.
    const dir = path.join(tmp, 'shipped');
    mkdirSync(dir);
    const files = UNITS.map((u) => {
      writeFileSync(path.join(dir, u), readFileSync(path.join(UNITS_SOURCE_DIR, u)));
      return path.join(dir, u);
    });
    const r = verify(files);
    expect(r.problems, r.stderr).toEqual([]);
    expect(r.code, r.stderr).toBe(0);
  });

  it.skipIf(!analyze)(
    'passes on the units install-units writes (ExecStart= the real dist/cli/main.js)',
    async () => {
      expect(existsSync(BIN), `${BIN} (npm run build)`).toBe(true);
      const root = path.join(tmp, 'root');
      await installUnits(['--prefix', root, '--binary', BIN, '--no-reload']);
      const dir = path.join(root, 'etc/systemd/system');
      const files = UNITS.map((u) => path.join(dir, u));
      const r = verify(files);
      expect(r.problems, r.stderr).toEqual([]);
      expect(r.code, r.stderr).toBe(0);
    },
  );

  it.skipIf(!analyze)('would catch a bad line (the check above is not vacuous)', () => {
    const file = path.join(tmp, 'muster-broken.service');
    writeFileSync(file, '[Service]\nType=oneshot\nExecStart=/usr/bin/env true\nProtectSystm=strict\n');
    const r = verify([file]);
    expect(r.problems.join('\n')).toMatch(/ProtectSystm/);
  });
});

describe('the shipped units', () => {
  const read = (u: string): string => readFileSync(path.join(UNITS_SOURCE_DIR, u), 'utf8');

  it('muster-join.service is a oneshot retried until registered, stopping on the permanent exit codes', () => {
    const join = read('muster-join.service');
    expect(join).toMatch(/^Type=oneshot$/m);
    expect(join).toMatch(/^RemainAfterExit=yes$/m);
    expect(join).toMatch(/^Restart=on-failure$/m);
    expect(join).toMatch(/^RestartPreventExitStatus=2 3 4 5$/m);
    expect(join).toMatch(/^StartLimitIntervalSec=0$/m);
    expect(join).toMatch(/^TimeoutStartSec=infinity$/m);
    expect(join).toMatch(/^Before=muster-registered\.target$/m);
    expect(join).toMatch(/^StateDirectory=muster$/m);
  });

  it('the services are hardened, and leave MemoryDenyWriteExecute off (V8 JIT)', () => {
    for (const u of ['muster-registrar.service', 'muster-join.service']) {
      const text = read(u);
      for (const line of [
        'ProtectSystem=strict',
        'ProtectHome=yes',
        'PrivateTmp=yes',
        'NoNewPrivileges=yes',
        'UMask=0077',
      ]) {
        expect(text, `${u}: ${line}`).toMatch(new RegExp(`^${line}$`, 'm'));
      }
      expect(text, u).not.toMatch(/^MemoryDenyWriteExecute=/m);
      expect(text, u).toMatch(/^ExecStart=\/usr\/bin\/env muster (registrar|join)( |$)/m);
    }
    const target = read('muster-registered.target');
    expect(target).toMatch(/^Requires=muster-join\.service$/m);
    expect(target).toMatch(/^After=muster-join\.service$/m);
  });

  it('on systemd older than 244 the oneshot loses Restart= (refused there), the registrar keeps it', () => {
    const join = renderSystemdUnit(
      'muster-join.service',
      read('muster-join.service'),
      ['/usr/bin/muster'],
      237,
    );
    expect(join.text).not.toMatch(/^Restart=/m);
    expect(join.text).toMatch(/^ExecStart=\/usr\/bin\/muster join$/m);
    expect(join.notes.join()).toMatch(/systemd 237/);
    const reg = renderSystemdUnit(
      'muster-registrar.service',
      read('muster-registrar.service'),
      ['/usr/bin/muster'],
      237,
    );
    expect(reg.text).toMatch(/^Restart=on-failure$/m);
    const recent = renderSystemdUnit(
      'muster-join.service',
      read('muster-join.service'),
      ['/usr/bin/muster'],
      252,
    );
    expect(recent.text).toMatch(/^Restart=on-failure$/m);
  });

  it('the upstart job: its script parses as shell, stops on 2-5, emits muster-registered', () => {
    const text = readFileSync(UPSTART, 'utf8');
    expect(text).toMatch(/^start on \(local-filesystems and net-device-up IFACE!=lo\)$/m);
    expect(text).toMatch(/^task$/m);
    expect(text).toMatch(/^emits muster-registered$/m);
    const script = upstartScript(text);
    expect(script).toMatch(/2\|3\|4\|5\)/);
    expect(script).toMatch(/initctl emit --no-wait muster-registered/);
    const r = shParses(script);
    expect(r.code, r.stderr).toBe(0);
    // With two words in MUSTER_BIN (node + script) it still parses.
    expect(
      shParses(upstartScript(renderUpstartJob(text, ['/usr/bin/node', '/opt/muster/main.js']))).code,
    ).toBe(0);
  });

  it('the upstart loop really retries, stops on a permanent code, and emits on success', () => {
    // Run the script body with stand-ins for muster, sleep and initctl.
    const stubs = path.join(tmp, 'stubs');
    mkdirSync(stubs);
    const log = path.join(tmp, 'calls');
    const stub = (name: string, body: string): void =>
      writeFileSync(path.join(stubs, name), `#!/bin/sh\necho "${name} $*" >> ${log}\n${body}\n`, {
        mode: 0o755,
      });
    stub('sleep', 'exit 0');
    stub('initctl', 'exit 0');
    stub('logger', 'exit 0');
    const counter = path.join(tmp, 'n');
    // Fails with 1 twice, then succeeds.
    stub(
      'muster-ok',
      `n=$(cat ${counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > ${counter}; [ $n -ge 3 ]`,
    );
    stub('muster-refused', 'exit 3');
    const text = readFileSync(UPSTART, 'utf8');
    const run = (bin: string) =>
      spawnSync('sh', ['-e', '-c', upstartScript(renderUpstartJob(text, [path.join(stubs, bin)]))], {
        encoding: 'utf8',
        env: { PATH: `${stubs}:/usr/bin:/bin` },
      });

    const ok = run('muster-ok');
    expect(ok.status, ok.stderr).toBe(0);
    expect(readFileSync(log, 'utf8').split('\n').filter(Boolean)).toEqual([
      'muster-ok join',
      'sleep 5',
      'muster-ok join',
      'sleep 10',
      'muster-ok join',
      'initctl emit --no-wait muster-registered',
    ]);

    rmSync(log);
    const refused = run('muster-refused');
    expect(refused.status).toBe(3);
    expect(refused.stdout).toMatch(/failed permanently \(exit 3\)/);
    expect(readFileSync(log, 'utf8')).not.toMatch(/initctl|sleep/);
  });
});

/** The value of `Key=` in a unit (the last one wins in systemd; these units set each once). */
function unitValue(text: string, key: string): string | undefined {
  const all = [...text.matchAll(new RegExp(`^${esc(key)}=(.*)$`, 'gm'))].map((m) => m[1]!.trim());
  return all[all.length - 1];
}

/** Runs of consecutive comment lines (a comment "paragraph"), joined. */
function commentParagraphs(text: string): string[] {
  const out: string[] = [];
  let cur: string[] = [];
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line) && line.replace(/^\s*#\s*/, '') !== '') cur.push(line.replace(/^\s*#\s?/, ''));
    else if (cur.length) {
      out.push(cur.join(' '));
      cur = [];
    }
  }
  if (cur.length) out.push(cur.join(' '));
  return out;
}

describe('users and the join token (issue 8, smaller holes)', () => {
  const read = (u: string): string => readFileSync(path.join(UNITS_SOURCE_DIR, u), 'utf8');

  it('the registrar runs as its own system user, which the shipped sysusers.d file creates', () => {
    const reg = read('muster-registrar.service');
    const user = unitValue(reg, 'User');
    expect(user, 'User= in muster-registrar.service').toBeDefined();
    expect(['root', '0', '']).not.toContain(user);
    expect(unitValue(reg, 'DynamicUser')).not.toBe('yes'); // a symlinked state dir is refused
    // sysusers.d(5): "u NAME ID GECOS HOME SHELL" creates the user (and its group) the unit names.
    const lines = readFileSync(SYSUSERS, 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('#'));
    expect(lines.map((l) => l.split(/\s+/).slice(0, 3))).toEqual([['u', user, '-']]);
    const group = unitValue(reg, 'Group');
    if (group) expect(group).toBe(user);
  });

  it('the registrar is given the directories its unit lets it write, and the socket stays private', () => {
    const reg = read('muster-registrar.service');
    const exec = unitValue(reg, 'ExecStart')!;
    const state = unitValue(reg, 'StateDirectory');
    const runtime = unitValue(reg, 'RuntimeDirectory');
    // As a non-root user muster's defaults would be under $HOME: the unit names its own directories.
    expect(exec).toContain(`--state-dir /var/lib/${state}`);
    expect(exec).toMatch(new RegExp(`--admin-socket /run/${esc(runtime!)}/[^/ ]+\\.sock(\\s|$)`));
    expect(unitValue(reg, 'StateDirectoryMode')).toBe('0700');
    expect(unitValue(reg, 'RuntimeDirectoryMode')).toBe('0700');
    expect(unitValue(reg, 'UMask')).toBe('0077');
    expect(unitValue(reg, 'CapabilityBoundingSet')).toBe('');
  });

  it('the join unit stays root, with no capabilities, and says why', () => {
    const join = read('muster-join.service');
    expect(unitValue(join, 'User')).toBeUndefined();
    expect(unitValue(join, 'DynamicUser')).toBeUndefined();
    expect(unitValue(join, 'CapabilityBoundingSet')).toBe('');
    expect(commentParagraphs(join).join('\n')).toMatch(/runs as root/);
  });

  it('no unit suggests /etc/default (usually world-readable) for the token; they point to a 0600 token file', () => {
    for (const [name, text] of [
      ...UNITS.map((u) => [u, read(u)] as const),
      ['upstart/muster-join.conf', readFileSync(UPSTART, 'utf8')] as const,
      ['README.md', read('README.md')] as const,
    ]) {
      for (const p of commentParagraphs(name === 'README.md' ? text.replace(/^/gm, '# ') : text)) {
        if (!p.includes('/etc/default')) continue;
        // The token variable itself, never beside /etc/default (MUSTER_TOKEN_FILE names a file).
        expect(p, `${name}: ${p}`).not.toMatch(/MUSTER_TOKEN(?!_FILE)\b/);
      }
    }
    for (const name of ['muster-join.service', 'upstart/muster-join.conf']) {
      const text = name.startsWith('upstart') ? readFileSync(UPSTART, 'utf8') : read(name);
      expect(text, name).toContain('MUSTER_TOKEN_FILE=/etc/muster/token');
      expect(text, name).toMatch(/0600/);
    }
    expect(EXAMPLE_ENV).toContain('#MUSTER_TOKEN_FILE=/etc/muster/token');
  });
});

describe('muster install-units', () => {
  it('installs the units into a fake root with ExecStart= rewritten, plus /etc/muster and an example muster.env', async () => {
    const bin = fakeBinary();
    const root = path.join(tmp, 'root');
    const lines = await installUnits(['--prefix', root, '--binary', bin, '--no-reload']);

    expect(listTree(root).filter((f) => !PASSWD_FILES.includes(f))).toEqual([
      'etc/muster/muster.env',
      'etc/systemd/system/muster-join.service',
      'etc/systemd/system/muster-registered.target',
      'etc/systemd/system/muster-registrar.service',
      'etc/systemd/system/muster-renew.service',
      'etc/systemd/system/muster-renew.timer',
      'etc/sysusers.d/muster.conf',
    ]);
    const unit = (u: string): string => readFileSync(path.join(root, 'etc/systemd/system', u), 'utf8');
    expect(unit('muster-registrar.service')).toMatch(new RegExp(`^ExecStart=${esc(bin)} registrar `, 'm'));
    expect(unit('muster-join.service')).toMatch(new RegExp(`^ExecStart=${esc(bin)} join$`, 'm'));
    for (const u of UNITS) expect(unit(u)).not.toMatch(/\/usr\/bin\/env muster/);
    // Everything but ExecStart= is the shipped file.
    expect(unit('muster-registered.target')).toBe(
      readFileSync(path.join(UNITS_SOURCE_DIR, 'muster-registered.target'), 'utf8'),
    );

    expect(statSync(path.join(root, 'etc/muster')).mode & 0o777).toBe(0o755);
    expect(statSync(path.join(root, 'etc/muster/muster.env')).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(root, 'etc/muster/muster.env'), 'utf8')).toBe(EXAMPLE_ENV);
    expect(statSync(path.join(root, 'etc/systemd/system/muster-join.service')).mode & 0o777).toBe(0o644);

    // One line per action, naming the file.
    for (const u of UNITS) expect(lines.some((l) => l.startsWith('install ') && l.includes(u))).toBe(true);
    expect(lines).toContain(`create ${path.join(root, 'etc/muster')} (0755)`);
    expect(lines.some((l) => l.startsWith(`create ${path.join(root, 'etc/muster/muster.env')}`))).toBe(true);
    expect(lines).toContain('skip systemctl daemon-reload (--no-reload)');

    // Again: nothing changes, and it says so.
    const again = await installUnits(['--prefix', root, '--binary', bin, '--no-reload']);
    for (const u of UNITS) expect(again.some((l) => l.startsWith('keep ') && l.includes(u))).toBe(true);
  });

  it.runIf(ci && !sysusers)('systemd-sysusers is installed (CI=true)', () => {
    expect.fail('systemd-sysusers is missing: .ci/run installs the systemd package');
  });

  it('installs the sysusers.d file and creates the registrar user in the image root', async () => {
    const bin = fakeBinary();
    const root = path.join(tmp, 'root');
    const lines = await installUnits(['--prefix', root, '--binary', bin, '--no-reload']);
    const conf = path.join(root, 'etc/sysusers.d/muster.conf');
    expect(readFileSync(conf, 'utf8')).toBe(readFileSync(SYSUSERS, 'utf8'));
    expect(statSync(conf).mode & 0o777).toBe(0o644);
    const user = unitValue(
      readFileSync(path.join(UNITS_SOURCE_DIR, 'muster-registrar.service'), 'utf8'),
      'User',
    )!;
    if (!sysusers) {
      console.warn('\n!!! systemd-sysusers not found: the user creation is not tested\n');
      expect(lines.join('\n')).toMatch(/warning: systemd-sysusers not found: create the system user muster/);
      return;
    }
    expect(lines).toContain(
      `run systemd-sysusers --root=${root} ${conf} (create the user muster if missing)`,
    );
    // The image's passwd (not this machine's) has the user, as a system user that is not root.
    const entry = readFileSync(path.join(root, 'etc/passwd'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${user}:`));
    expect(entry, 'passwd entry').toBeDefined();
    const uid = Number(entry!.split(':')[2]);
    expect(uid).toBeGreaterThan(0);
    expect(uid).toBeLessThan(1000);
    expect(entry!.split(':')[6]).toMatch(/nologin$/);
    // Again: the user stays as it was.
    await installUnits(['--prefix', root, '--binary', bin, '--no-reload']);
    expect(readFileSync(path.join(root, 'etc/passwd'), 'utf8')).toContain(entry!);
  });

  it('never overwrites an existing muster.env', async () => {
    const bin = fakeBinary();
    const root = path.join(tmp, 'root');
    mkdirSync(path.join(root, 'etc/muster'), { recursive: true });
    const env = path.join(root, 'etc/muster/muster.env');
    writeFileSync(env, 'MUSTER_TOKEN=abc.secret\n', { mode: 0o640 });
    const lines = await installUnits(['--prefix', root, '--binary', bin, '--no-reload']);
    expect(readFileSync(env, 'utf8')).toBe('MUSTER_TOKEN=abc.secret\n');
    expect(statSync(env).mode & 0o777).toBe(0o640);
    expect(lines).toContain(`keep ${env} (exists)`);
    expect(lines.join('\n')).not.toContain('abc.secret');
  });

  it('installs the upstart job only with --upstart (and then no systemd units)', async () => {
    const bin = fakeBinary();
    const plain = path.join(tmp, 'plain');
    await installUnits(['--prefix', plain, '--binary', bin, '--no-reload']);
    expect(existsSync(path.join(plain, 'etc/init'))).toBe(false);

    const root = path.join(tmp, 'upstart');
    const lines = await installUnits(['--prefix', root, '--binary', bin, '--upstart']);
    expect(listTree(root)).toEqual([
      'etc/init/muster-join.conf',
      'etc/init/muster-renew.conf',
      'etc/muster/muster.env',
    ]);
    const job = readFileSync(path.join(root, 'etc/init/muster-join.conf'), 'utf8');
    expect(job).toContain(`MUSTER_BIN="${bin}"`);
    expect(job).not.toMatch(/^\s*MUSTER_BIN=muster$/m);
    const r = shParses(upstartScript(job));
    expect(r.code, r.stderr).toBe(0);
    expect(
      lines.some((l) => l.startsWith('install ') && l.endsWith(`muster-join.conf (runs ${bin} join)`)),
    ).toBe(true);
    expect(lines.join('\n')).not.toMatch(/daemon-reload/);
  });

  it('--dry-run prints the actions and writes nothing; --unit-dir picks the directory', async () => {
    const bin = fakeBinary();
    const root = path.join(tmp, 'root');
    mkdirSync(root);
    const lines = await installUnits([
      '--prefix',
      root,
      '--binary',
      bin,
      '--unit-dir',
      '/lib/systemd/system',
      '--dry-run',
    ]);
    expect(listTree(root)).toEqual([]);
    expect(readdirSync(root)).toEqual([]);
    const actions = lines.filter((l) => !l.startsWith('warning:') && !l.startsWith('skip '));
    expect(actions.length).toBeGreaterThanOrEqual(5);
    for (const l of actions) expect(l).toMatch(/^dry run: would /);
    expect(lines.some((l) => l.includes(path.join(root, 'lib/systemd/system/muster-join.service')))).toBe(
      true,
    );
  });

  it('runs a binary that is a non-executable node script through node', async () => {
    const script = path.join(tmp, 'main.js');
    writeFileSync(script, '#!/usr/bin/env node\n', { mode: 0o644 });
    const root = path.join(tmp, 'root');
    await installUnits(['--prefix', root, '--binary', script, '--no-reload']);
    const unit = readFileSync(path.join(root, 'etc/systemd/system/muster-join.service'), 'utf8');
    expect(unit).toMatch(new RegExp(`^ExecStart=${esc(process.execPath)} ${esc(script)} join$`, 'm'));
  });

  it('refuses a bad binary or prefix with a usage error (main.ts maps it to exit 2)', async () => {
    const root = path.join(tmp, 'root');
    const usageError = async (args: string[], pattern: RegExp): Promise<void> => {
      const err = await installUnits(args).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isMusterError(err, 'MUSTER_ERR_USAGE'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(pattern);
    };
    await usageError(['--prefix', root, '--binary', path.join(tmp, 'missing')], /cannot be used/);
    const notExec = path.join(tmp, 'muster-data');
    writeFileSync(notExec, 'data\n', { mode: 0o644 });
    await usageError(['--prefix', root, '--binary', notExec], /not executable/);
    const spaced = path.join(tmp, 'with space');
    writeFileSync(spaced, '#!/bin/sh\n', { mode: 0o755 });
    await usageError(['--prefix', root, '--binary', spaced], /cannot go into a unit file/);
    await usageError(
      ['--prefix', 'relative/root', '--binary', fakeBinary()],
      /--prefix must be an absolute path/,
    );
    expect(existsSync(root)).toBe(false);
  });

  it('makes the example muster.env parse both as shell and as an EnvironmentFile (comments only)', () => {
    const r = spawnSync('sh', ['-n'], { input: EXAMPLE_ENV, encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const l of EXAMPLE_ENV.split('\n')) expect(l === '' || l.startsWith('#'), l).toBe(true);
  });
});
