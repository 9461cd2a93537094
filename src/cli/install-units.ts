/**
 * `muster install-units`: installs the systemd units (or the upstart job) shipped in the package's
 * systemd/ folder (DESIGN "Files and units"), with ExecStart= pointing at this installation's binary.
 * Prints one line per action; --dry-run prints the same lines and writes nothing.
 *
 * Into an image tree (--prefix other than /), the units name muster as the image will run it, not as
 * the builder runs it: the builder's `/usr/bin/node /home/me/muster/dist/cli/main.js` does not exist
 * on the booted image, and the join unit would restart in a loop (issue 13). So there the command is
 * `muster` found on the service PATH inside the image, else `/usr/bin/env muster`, or `--bin PATH`.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MusterError } from '../common/errors.js';
import { writeFileAtomic } from '../common/files.js';
import { command } from './command.js';

/** The package's systemd/ folder: dist/cli/install-units.js (or src/cli/ in tests) -> ../../systemd. */
export const UNITS_SOURCE_DIR = fileURLToPath(new URL('../../systemd/', import.meta.url));

const SYSTEMD_UNITS = [
  'muster-registrar.service',
  'muster-join.service',
  'muster-registered.target',
  'muster-renew.service',
  'muster-renew.timer',
] as const;
const UPSTART_JOB = { source: 'upstart/muster-join.conf', target: 'etc/init/muster-join.conf' } as const;
/** The renewal job (the equivalent of muster-renew.timer). */
const UPSTART_RENEW_JOB = {
  source: 'upstart/muster-renew.conf',
  target: 'etc/init/muster-renew.conf',
} as const;
/** The system user muster-registrar.service runs as (User=muster), for systemd-sysusers. */
const SYSUSERS = { source: 'sysusers.d/muster.conf', target: 'etc/sysusers.d/muster.conf' } as const;

/** Where systemd (and upstart) look for a bare command name; /usr/bin/env in a unit searches these. */
const SERVICE_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** systemd refuses Restart= on a Type=oneshot unit before this version (systemd PR #13754). */
const ONESHOT_RESTART_SINCE = 244;

/** Characters a path may have to go into ExecStart= and a shell line unquoted (no %, $, quotes, spaces). */
const SAFE_PATH = /^[A-Za-z0-9_@+=:,./-]+$/;

export const EXAMPLE_ENV = `# MUSTER_* settings for muster-join.service and muster-registrar.service: the same settings as
# /etc/muster/muster.json and the command-line flags (--registrar is MUSTER_REGISTRAR, and so on).
# NAME=value, one a line, no spaces around '=': systemd (EnvironmentFile=) and the upstart job (sh)
# both read this file. Keep it mode 0600: it may hold the join token.

# Node (muster join)
#MUSTER_REGISTRAR=https://registrar.example.net:8443
# The join token: best in a file of its own, owned by root, mode 0600.
#MUSTER_TOKEN_FILE=/etc/muster/token
#MUSTER_TOKEN=ID.SECRET
#MUSTER_ROLE=node
#MUSTER_CLUSTER=
#MUSTER_CA_FINGERPRINT=
#MUSTER_ON_REGISTERED=

# Registrar (muster registrar)
#MUSTER_LISTEN=0.0.0.0:8443
#MUSTER_AUTOREGISTER=local
`;

export interface InstallUnitsOptions {
  /** Root to install under ('/' for this machine; a fake root in tests, or an image). */
  prefix: string;
  /** systemd unit directory, inside the prefix. */
  unitDir: string;
  /** The muster binary to run, a path on this machine (default: the realpath of the running one). */
  binary?: string | undefined;
  /**
   * The muster command to run as the installed system sees it (a path inside the prefix), written
   * as given (default with a prefix: muster on the image's service PATH, else /usr/bin/env muster).
   */
  bin?: string | undefined;
  /** Install the upstart job instead of the systemd units. */
  upstart: boolean;
  dryRun: boolean;
  /** Run `systemctl daemon-reload` afterwards (only for prefix '/', and when systemd runs). */
  reload: boolean;
  /** One line per action. */
  print: (line: string) => void;
  /** Where the shipped units are (tests). */
  sourceDir?: string;
  /** The running systemd's version, when known (adapts the units to it). */
  systemdVersion?: number | undefined;
}

function usage(message: string): MusterError {
  return new MusterError('MUSTER_ERR_USAGE', message);
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await fs.access(file, constants.X_OK);
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

async function firstLine(file: string): Promise<string> {
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(256);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8').split('\n', 1)[0] ?? '';
  } finally {
    await fh.close();
  }
}

/**
 * The command that runs muster under systemd or upstart, as absolute paths. The binary itself when
 * it can run there; `<node> <binary>` when it is a script that cannot: not executable, or
 * `#!/usr/bin/env node` while no node is on the service PATH (node installed under /opt, nvm).
 */
export async function resolveMusterCommand(binary: string | undefined): Promise<string[]> {
  const given = binary ?? process.argv[1];
  if (!given) throw usage('cannot tell where the muster binary is: pass --binary PATH');
  let file: string;
  try {
    // The default is the running script's real path (npm's /usr/bin/muster is a symlink to it).
    file = binary !== undefined ? path.resolve(given) : await fs.realpath(given);
    if (!(await fs.stat(file)).isFile()) throw Object.assign(new Error(), { code: 'not a file' });
  } catch (err) {
    throw usage(`the muster binary ${given} cannot be used (${errCode(err)}): pass --binary PATH`);
  }
  const shebang = await firstLine(file).catch(() => '');
  const isNodeScript = /\.[cm]?js$/.test(file) || /^#!.*\bnode\b/.test(shebang);
  let command = [file];
  if (!(await isExecutable(file))) {
    if (!isNodeScript) throw usage(`--binary ${file} is not executable`);
    command = [process.execPath, file];
  } else if (/^#!\s*\/usr\/bin\/env\s+node\b/.test(shebang)) {
    const nodes = await Promise.all(SERVICE_PATH.map((d) => isExecutable(path.join(d, 'node'))));
    if (!nodes.includes(true)) command = [process.execPath, file];
  }
  for (const p of command) {
    if (!SAFE_PATH.test(p)) {
      throw usage(
        `the path ${p} has characters that cannot go into a unit file unquoted: pass --binary PATH`,
      );
    }
  }
  return command;
}

/** A path inside the tree `root`, with symlinks followed as the booted tree will (absolute ones from root). */
async function realpathIn(root: string, p: string): Promise<string | undefined> {
  let parts = p.split('/').filter(Boolean);
  const done: string[] = [];
  for (let hops = 0; parts.length > 0;) {
    const part = parts.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const here = path.join(root, ...done, part);
    let st;
    try {
      st = await fs.lstat(here);
    } catch {
      return undefined;
    }
    if (!st.isSymbolicLink()) {
      done.push(part);
      continue;
    }
    if (++hops > 40) return undefined; // ELOOP
    const target = await fs.readlink(here);
    if (target.startsWith('/')) done.length = 0;
    parts = [...target.split('/').filter(Boolean), ...parts];
  }
  return '/' + done.join('/');
}

/** A file in the tree `root` that the booted tree can run: its path there, or why not. */
async function imageFile(
  root: string,
  p: string,
): Promise<{ real: string; executable: boolean; shebang: string } | undefined> {
  const real = await realpathIn(root, p);
  if (real === undefined) return undefined;
  const onHost = path.join(root, real);
  try {
    if (!(await fs.stat(onHost)).isFile()) return undefined;
  } catch {
    return undefined;
  }
  return {
    real,
    executable: await isExecutable(onHost),
    shebang: await firstLine(onHost).catch(() => ''),
  };
}

/**
 * The command that runs muster in the image tree `root` (install-units --prefix): `bin` as given, or
 * `muster` on the service PATH inside the tree, or `/usr/bin/env muster` when the tree has none yet
 * (muster may be installed after the units). Never a path of this machine: the image boots without it.
 * Warnings say what would keep the units from starting on the booted image.
 */
export async function resolveImageCommand(
  root: string,
  bin: string | undefined,
): Promise<{ command: string[]; warnings: string[] }> {
  const warnings: string[] = [];
  let command: string[];
  let found: Awaited<ReturnType<typeof imageFile>>;
  if (bin !== undefined) {
    if (!path.isAbsolute(bin)) throw usage(`--bin must be an absolute path, not ${bin}`);
    command = [bin];
    found = await imageFile(root, bin);
    if (!found) warnings.push(`warning: ${root} has no file ${bin} (--bin): install muster there`);
  } else {
    const hits = await Promise.all(
      SERVICE_PATH.map(async (d) => ({
        p: path.join(d, 'muster'),
        f: await imageFile(root, path.join(d, 'muster')),
      })),
    );
    const hit = hits.find((h) => h.f?.executable);
    if (hit) {
      // The name on the PATH, not its target: an upgrade that moves the package keeps the link.
      command = [hit.p];
      found = hit.f;
    } else {
      command = ['/usr/bin/env', 'muster'];
      warnings.push(
        `warning: muster is not installed in ${root} (no muster in ${SERVICE_PATH.join(', ')}): ` +
          'the units run /usr/bin/env muster; install it into the image (npm install -g ' +
          `--prefix ${path.join(root, 'usr/local')} muster-*.tgz) or pass --bin PATH`,
      );
    }
  }
  if (found) {
    const isNodeScript = /\.[cm]?js$/.test(found.real) || /^#!.*\bnode\b/.test(found.shebang);
    if (!found.executable) {
      if (!isNodeScript) throw usage(`--bin ${bin} is not executable in ${root}`);
      command = ['/usr/bin/env', 'node', command[0]!];
    }
    if (isNodeScript && (/^#!\s*\/usr\/bin\/env\s+node\b/.test(found.shebang) || !found.executable)) {
      const nodes = await Promise.all(SERVICE_PATH.map((d) => imageFile(root, path.join(d, 'node'))));
      if (!nodes.some((n) => n?.executable)) {
        warnings.push(
          `warning: ${root} has no node in ${SERVICE_PATH.join(', ')}: ${command.join(' ')} needs one ` +
            '(Node >= 20) there when the image boots',
        );
      }
    }
  }
  for (const p of command) {
    if (!SAFE_PATH.test(p)) {
      throw usage(`the path ${p} has characters that cannot go into a unit file unquoted`);
    }
  }
  return { command, warnings };
}

/** A shipped unit with ExecStart= pointing at `command`, adapted to the systemd version when known. */
export function renderSystemdUnit(
  name: string,
  text: string,
  command: string[],
  systemdVersion?: number,
): { text: string; notes: string[] } {
  const notes: string[] = [];
  const execStart = /^ExecStart=(?:\/usr\/bin\/env\s+)?muster(?=\s|$)/gm;
  const found = text.match(execStart)?.length ?? 0;
  if (found > 1 || (found === 0 && /^ExecStart=/m.test(text))) {
    throw new Error(`${name}: expected one "ExecStart=/usr/bin/env muster ..." line (a packaging bug)`);
  }
  let out = text.replace(execStart, `ExecStart=${command.join(' ')}`);
  if (
    systemdVersion !== undefined &&
    systemdVersion < ONESHOT_RESTART_SINCE &&
    /^Type=oneshot\s*$/m.test(out)
  ) {
    out = out.replace(
      /^(Restart=.*)$/m,
      `# $1  (removed by muster install-units: systemd ${systemdVersion} refuses Restart= on a oneshot unit;\n` +
        `# muster join retries an unreachable registrar by itself)`,
    );
    notes.push(`adapt ${name} to systemd ${systemdVersion}: no Restart= (muster join retries by itself)`);
  }
  return { text: out, notes };
}

/** The shipped upstart job with its MUSTER_BIN= line pointing at `command`. */
export function renderUpstartJob(text: string, command: string[]): string {
  const line = /^(\s*)MUSTER_BIN=muster\s*$/m;
  if (!line.test(text))
    throw new Error('muster-join.conf: expected a "MUSTER_BIN=muster" line (a packaging bug)');
  // Unquoted on purpose: "$MUSTER_BIN join" splits `<node> <script>` into two words (SAFE_PATH: no spaces).
  return text.replace(line, `$1MUSTER_BIN="${command.join(' ')}"`);
}

function findOnPath(cmd: string): string | undefined {
  for (const dir of (process.env.PATH || SERVICE_PATH.join(':')).split(':')) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** The running systemd's version ("systemd 252 (252.38-1~deb12u1)"), or undefined. */
export function runningSystemdVersion(systemctl: string | undefined): number | undefined {
  if (!systemctl) return undefined;
  try {
    const out = execFileSync(systemctl, ['--version'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const m = /^systemd (\d+)/.exec(out);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function readSource(dir: string, name: string): Promise<string> {
  try {
    return await fs.readFile(path.join(dir, name), 'utf8');
  } catch (err) {
    throw new MusterError(
      'MUSTER_ERR_USAGE',
      `cannot read the shipped unit ${path.join(dir, name)}: ${errCode(err)}`,
    );
  }
}

function stateDirError(what: string, file: string, err: unknown): MusterError {
  return new MusterError('MUSTER_ERR_STATE_DIR', `cannot ${what} ${file}: ${errCode(err)}`, { cause: err });
}

export async function installUnits(o: InstallUnitsOptions): Promise<void> {
  if (!path.isAbsolute(o.prefix)) throw usage(`--prefix must be an absolute path, not ${o.prefix}`);
  if (!path.isAbsolute(o.unitDir)) throw usage(`--unit-dir must be an absolute path, not ${o.unitDir}`);
  const prefix = path.resolve(o.prefix);
  const under = (p: string): string => path.join(prefix, p);
  const say = (line: string): void => o.print(o.dryRun ? `dry run: would ${line}` : line);
  const sourceDir = o.sourceDir ?? UNITS_SOURCE_DIR;
  if (o.bin !== undefined && o.binary !== undefined) {
    throw usage('--bin and --binary both name the muster binary: give one');
  }
  // An image tree runs muster as installed there (resolveImageCommand), unless --binary names a file
  // of this machine on purpose; --bin on this machine is the same as --binary, minus the resolving.
  const inImage = o.bin !== undefined || (prefix !== '/' && o.binary === undefined);
  let command: string[];
  if (inImage) {
    const image = await resolveImageCommand(prefix, o.bin);
    command = image.command;
    image.warnings.forEach((w) => o.print(w));
  } else {
    command = await resolveMusterCommand(o.binary);
    const missing = [];
    for (const p of command) if (prefix !== '/' && !(await imageFile(prefix, p))) missing.push(p);
    if (missing.length > 0) {
      o.print(
        `warning: --binary ${command.join(' ')}: ${prefix} has no ${missing.join(', ')} (a path on ` +
          'this machine): the units cannot start when the image boots; pass --bin PATH (the path inside the image)',
      );
    }
  }
  if (!inImage && command.some((p) => /^\/(home|root|run\/user|tmp|var\/tmp)\//.test(p))) {
    o.print(
      `warning: ${command.join(' ')} is under /home, /root or a temporary directory, which the units hide ` +
        '(ProtectHome=, PrivateTmp=): install muster and node system-wide, or pass --binary',
    );
  }

  async function writeFile(target: string, text: string, mode: number, summary: string): Promise<void> {
    let current: string | undefined;
    try {
      current = await fs.readFile(target, 'utf8');
    } catch {
      current = undefined;
    }
    if (current === text) {
      say(`keep ${target} (unchanged)`);
      return;
    }
    say(`${current === undefined ? 'install' : 'update'} ${target}${summary}`);
    if (o.dryRun) return;
    try {
      await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
      await writeFileAtomic(target, text, mode);
    } catch (err) {
      throw stateDirError('write', target, err);
    }
  }

  if (o.upstart) {
    const text = renderUpstartJob(await readSource(sourceDir, UPSTART_JOB.source), command);
    await writeFile(under(UPSTART_JOB.target), text, 0o644, ` (runs ${command.join(' ')} join)`);
    const renew = renderUpstartJob(await readSource(sourceDir, UPSTART_RENEW_JOB.source), command);
    await writeFile(under(UPSTART_RENEW_JOB.target), renew, 0o644, ` (runs ${command.join(' ')} renew)`);
  } else {
    for (const name of SYSTEMD_UNITS) {
      const rendered = renderSystemdUnit(name, await readSource(sourceDir, name), command, o.systemdVersion);
      const exec = /^ExecStart=(.*)$/m.exec(rendered.text);
      await writeFile(
        path.join(under(o.unitDir), name),
        rendered.text,
        0o644,
        exec ? ` (ExecStart=${exec[1]})` : '',
      );
      rendered.notes.forEach(say);
    }
    const sysusers = under(SYSUSERS.target);
    await writeFile(sysusers, await readSource(sourceDir, SYSUSERS.source), 0o644, ' (the user muster)');
    createSystemUser(sysusers);
  }

  /** The registrar's user, from the sysusers.d file just installed (into the image with --prefix). */
  function createSystemUser(conf: string): void {
    const sysusers = findOnPath('systemd-sysusers');
    if (!sysusers) {
      o.print(
        'warning: systemd-sysusers not found: create the system user muster yourself, or ' +
          'muster-registrar.service cannot start: useradd --system --home-dir /var/lib/muster-registrar ' +
          `--shell /usr/sbin/nologin${prefix === '/' ? '' : ` --root ${prefix}`} muster`,
      );
      return;
    }
    // With --root, sysusers writes the image's /etc/passwd but reads the file at its host path.
    const args = prefix === '/' ? [conf] : [`--root=${prefix}`, conf];
    say(`run systemd-sysusers ${args.join(' ')} (create the user muster if missing)`);
    if (o.dryRun) return;
    try {
      execFileSync(sysusers, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
      o.print(
        `warning: systemd-sysusers failed (${stderr || errCode(err)}): create the user muster, or ` +
          'muster-registrar.service cannot start',
      );
    }
  }

  // /etc/muster and an example muster.env; an existing one is the operator's and is never touched.
  const etc = under('etc/muster');
  const envFile = path.join(etc, 'muster.env');
  let etcExists = false;
  try {
    etcExists = (await fs.stat(etc)).isDirectory();
  } catch {
    etcExists = false;
  }
  if (!etcExists) {
    say(`create ${etc} (0755)`);
    if (!o.dryRun) {
      try {
        await fs.mkdir(etc, { recursive: true, mode: 0o755 });
        await fs.chmod(etc, 0o755); // the umask must not narrow it
      } catch (err) {
        throw stateDirError('create', etc, err);
      }
    }
  }
  const envExists = await fs.stat(envFile).then(
    () => true,
    () => false,
  );
  if (envExists) {
    say(`keep ${envFile} (exists)`);
  } else {
    say(`create ${envFile} (0600, an example: every setting commented out)`);
    if (!o.dryRun) {
      try {
        // 'wx': never overwrite, even if another process created it since the check above.
        await fs.writeFile(envFile, EXAMPLE_ENV, { flag: 'wx', mode: 0o600 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw stateDirError('write', envFile, err);
      }
    }
  }

  if (o.upstart) return;
  if (!o.reload) {
    o.print('skip systemctl daemon-reload (--no-reload)');
  } else if (prefix !== '/') {
    o.print(`skip systemctl daemon-reload (installed under --prefix ${prefix})`);
  } else {
    const systemctl = findOnPath('systemctl');
    const running = await fs.stat('/run/systemd/system').then(
      () => true,
      () => false,
    );
    if (!systemctl) {
      o.print('skip systemctl daemon-reload (systemctl not found)');
    } else if (!running) {
      o.print('skip systemctl daemon-reload (systemd is not running)');
    } else {
      say('run systemctl daemon-reload');
      if (!o.dryRun) {
        try {
          execFileSync(systemctl, ['daemon-reload'], { stdio: ['ignore', 'ignore', 'pipe'] });
        } catch (err) {
          const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
          o.print(`warning: systemctl daemon-reload failed (${stderr || errCode(err)}): run it yourself`);
        }
      }
    }
  }
}

/** What to run next, for the tree just installed (systemctl --root for an image tree). */
export function nextSteps(prefix: string): string {
  const root = path.resolve(prefix);
  if (root === '/') {
    return 'next: systemctl enable --now muster-registrar.service (registrar) or muster-join.service (node)';
  }
  // --now would start the unit on this machine: an image tree is enabled, not started.
  return `next: systemctl --root=${root} enable muster-registrar.service (registrar) or muster-join.service (node)`;
}

export const installUnitsCommand = command({
  name: 'install-units',
  describe: 'install the systemd units (or the upstart job) for this muster binary',
  scopes: ['install-units'],
  examples: [
    ['$0 install-units --dry-run', 'show what would be installed'],
    ['$0 install-units --prefix /srv/image', 'install into an image tree'],
  ],
  async run(o) {
    const prefix = path.resolve(o.prefix);
    const systemctl = prefix === '/' && !o.upstart ? findOnPath('systemctl') : undefined;
    await installUnits({
      prefix: o.prefix,
      unitDir: o['unit-dir'],
      binary: o.binary,
      bin: o.bin,
      upstart: o.upstart,
      dryRun: o['dry-run'],
      reload: o.reload,
      systemdVersion: runningSystemdVersion(systemctl),
      print: (line) => process.stdout.write(line + '\n'),
    });
    if (!o.upstart && !o['dry-run']) process.stdout.write(nextSteps(prefix) + '\n');
  },
});
