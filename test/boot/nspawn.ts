/**
 * systemd-nspawn containers for the boot tests (issue 13, item 3): systemd as PID 1 on the cached
 * Debian rootfs that test/boot/make-rootfs.sh builds (in .ci/run: it needs a mirror; the tests only
 * use it), each container on its own overlayfs over that rootfs (its changes in a temporary upper
 * directory, kept across a reboot, removed after), in a network namespace of the test LAN
 * (src/testnet/netlan.ts). The host's node is bind-mounted read-only at /usr/local/bin/node:
 * bookworm's nodejs is 18 and muster needs >= 20.19 (same glibc: the rootfs is bookworm like CI).
 *
 * `--register=no --keep-unit`: no machined on the test machines (systemd is not PID 1 there), so the
 * container is neither registered nor given a scope; nothing outside the container and its overlay
 * is touched. A command runs inside with nsenter into PID 1's namespaces (machinectl and
 * `systemd-run --machine` need a registered machine).
 *
 *   bootSuite(suite): { skip, rootfs }    run; skip loudly; or with CI=true fail (as etcdSuite)
 *   overlay(lowers, dir): mounts an overlayfs at dir/root, changes in dir/upper
 *   new Container(name, root, netns).boot() / .exec() / .show() / .journal() / .reboot() / .poweroff()
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'vitest';
import { netnsAvailable, type ExecResult } from '../../src/testnet/netlan.js';
import { which } from '../helpers/which.js';

/** systemd's PATH for services, which commands run inside the container get too. */
const SERVICE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const MAKE_ROOTFS = path.resolve(import.meta.dirname, 'make-rootfs.sh');

/**
 * Where make-rootfs.sh puts the rootfs: its cache key is the script's SHA-256 (first 16 hex digits);
 * MUSTER_BOOT_ROOTFS=DIR names another.
 */
export function rootfsPath(): string {
  // A rootfs of one's own (built otherwise, or kept from an older script), for a developer.
  if (process.env.MUSTER_BOOT_ROOTFS) return path.resolve(process.env.MUSTER_BOOT_ROOTFS);
  const key = createHash('sha256').update(readFileSync(MAKE_ROOTFS)).digest('hex').slice(0, 16);
  return path.join(process.env.MUSTER_ROOTFS_CACHE || '/var/cache/muster-test', `rootfs-${key}`);
}

function missing(): string | undefined {
  if (process.platform !== 'linux') return `containers need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return `not root (uid ${process.getuid?.()}): systemd-nspawn needs root`;
  if (!which('systemd-nspawn')) return 'no systemd-nspawn (Debian: apt-get install systemd-container)';
  if (!which('nsenter')) return 'no nsenter (util-linux)';
  const net = netnsAvailable();
  if (!net.ok) return net.reason;
  const rootfs = rootfsPath();
  if (!existsSync(path.join(rootfs, 'usr/lib/systemd/systemd'))) {
    return `no cached rootfs at ${rootfs}: build it with test/boot/make-rootfs.sh (needs debootstrap and a Debian mirror; .ci/run does)`;
  }
  const fs = readFileSync('/proc/filesystems', 'utf8');
  if (!/\toverlay$/m.test(fs)) return 'no overlayfs in this kernel';
  return undefined;
}

/** The decision a boot suite makes: run, skip loudly, or (CI=true) fail. Call at the top level. */
export function bootSuite(suite: string): { skip: boolean; rootfs: string } {
  const why = missing();
  if (!why) return { skip: false, rootfs: rootfsPath() };
  const ci = process.env.CI === 'true';
  console.warn(`\n*** ${suite}: ${ci ? 'FAILING' : 'SKIPPING'} the boot tests: ${why}. ***\n`);
  describe.skipIf(!ci)('boot test prerequisites (CI)', () => {
    it('systemd-nspawn, root and the cached rootfs are there in CI', () => {
      throw new Error(`CI=true but the boot tests cannot run: ${why} (.ci/run installs and builds them)`);
    });
  });
  return { skip: true, rootfs: rootfsPath() };
}

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + String(err) });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr });
    });
  });
}

/** Runs cmd; throws with its output unless it exits 0. */
export async function runOk(cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

// Last resort (a crashed or interrupted run): stop our containers and unmount our overlays.
const liveContainers = new Set<ChildProcess>();
const liveMounts = new Set<string>();
let handlers = false;
function installHandlers(): void {
  if (handlers) return;
  handlers = true;
  process.on('exit', () => {
    for (const c of liveContainers) c.kill('SIGKILL');
    for (const m of liveMounts) spawnSync('umount', ['-l', m]);
  });
}

export interface Overlay {
  /** The merged tree (what the container boots, and what the test reads and writes from outside). */
  root: string;
  /** This overlay's own changes. */
  upper: string;
  unmount(): Promise<void>;
}

/** An overlayfs at dir/root over `lowers` (topmost first), its changes in dir/upper. */
export async function overlay(lowers: string[], dir: string): Promise<Overlay> {
  installHandlers();
  const [root, upper, work] = ['root', 'upper', 'work'].map((d) => path.join(dir, d)) as [
    string,
    string,
    string,
  ];
  for (const d of [root, upper, work]) mkdirSync(d, { recursive: true });
  await runOk('mount', [
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`,
    root,
  ]);
  liveMounts.add(root);
  return {
    root,
    upper,
    async unmount() {
      if (!liveMounts.has(root)) return;
      const r = await run('umount', [root]);
      // Busy (a process of a killed container not reaped yet): detach it, the kernel frees it later.
      if (r.code !== 0) await run('umount', ['-l', root]);
      liveMounts.delete(root);
    },
  };
}

/** A container: systemd booting `root` in network namespace `netns` (/run/netns/<netns>). */
export class Container {
  private child: ChildProcess | undefined;
  private console = '';
  private exited: Promise<number> | undefined;

  constructor(
    readonly name: string,
    readonly root: string,
    readonly netns: string,
  ) {}

  /** Starts systemd in the container and waits until its manager answers (not for boot to finish). */
  async boot(): Promise<void> {
    installHandlers();
    const node = realpathSync(process.execPath);
    this.console = '';
    const child = spawn(
      'systemd-nspawn',
      [
        `--directory=${this.root}`,
        `--machine=${this.name}`,
        '--boot',
        '--register=no',
        '--keep-unit',
        `--network-namespace-path=/run/netns/${this.netns}`,
        `--bind-ro=${node}:/usr/local/bin/node`,
        '--console=pipe',
        '--quiet',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.child = child;
    liveContainers.add(child);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.console += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.console += d));
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        liveContainers.delete(child);
        resolve(code ?? (signal ? 128 : -1));
      }),
    );
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `systemd-nspawn ${this.name} exited (${child.exitCode ?? child.signalCode}):\n${this.console}`,
        );
      }
      const pid = this.pid1();
      // The manager answers on its private socket once it runs: from then on exec() works.
      if (pid && (await this.exec('systemctl', ['is-system-running'])).stdout.trim() !== '') return;
      if (Date.now() > deadline)
        throw new Error(`container ${this.name}: no systemd after 120 s:\n${this.console}`);
      await sleep(250);
    }
  }

  /** The container's PID 1 (systemd), as a process of this machine: the child of systemd-nspawn. */
  pid1(): number | undefined {
    const pid = this.child?.pid;
    if (!pid) return undefined;
    try {
      for (const t of readdirSync(`/proc/${pid}/task`)) {
        const kids = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8')
          .trim()
          .split(/\s+/)
          .filter(Boolean);
        for (const k of kids) {
          if (readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'systemd') return Number(k);
        }
      }
    } catch {
      // not there yet, or gone
    }
    return undefined;
  }

  /** Runs `cmd args` inside the container (all of PID 1's namespaces, its root), as root. */
  exec(cmd: string, args: string[], timeoutMs = 60_000): Promise<ExecResult> {
    const pid = this.pid1();
    if (!pid)
      return Promise.resolve({ code: -1, stdout: '', stderr: `container ${this.name} is not running` });
    // A clean environment: nothing of this test process (MUSTER_* variables) leaks in.
    return run(
      'nsenter',
      ['-t', String(pid), '-a', '--', 'env', '-i', `PATH=${SERVICE_PATH}`, cmd, ...args],
      timeoutMs,
    );
  }

  /** `systemctl show UNIT -p P1,P2...` inside, as an object. */
  async show(unit: string, props: string[]): Promise<Record<string, string>> {
    const r = await this.exec('systemctl', ['show', unit, '-p', props.join(',')]);
    return Object.fromEntries(
      r.stdout
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
  }

  /** Waits until `check` returns a value (polling every 500 ms); throws with `what` and the state. */
  async waitFor<T>(
    what: string,
    check: () => Promise<T | undefined>,
    opts: { timeoutMs?: number; units?: string[] } = {},
  ): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await check();
      if (v !== undefined) return v;
      if (Date.now() > deadline) {
        const jobs = await this.exec('systemctl', ['list-jobs', '--no-pager']);
        const failed = await this.exec('systemctl', ['--failed', '--no-pager']);
        let logs = '';
        for (const u of opts.units ?? [])
          logs += `journal of ${u}:\n${(await this.journal(u)).slice(-3000)}\n`;
        throw new Error(
          `container ${this.name}: ${what} not within ${timeoutMs / 1000} s\n` +
            `jobs:\n${jobs.stdout}\nfailed:\n${failed.stdout}\n${logs}console:\n${this.console.slice(-2000)}`,
        );
      }
      await sleep(500);
    }
  }

  /** The journal of the current boot for `unit` (short-precise: one line a record). */
  async journal(unit: string): Promise<string> {
    return (await this.exec('journalctl', ['-b', '-u', unit, '--no-pager', '-o', 'short-precise'])).stdout;
  }

  /**
   * Powers the container off cleanly (SIGTERM to systemd-nspawn: the container's systemd shuts down)
   * and waits for it; SIGKILL after timeoutMs. The tree stays, to boot again ("reboot").
   */
  async poweroff(timeoutMs = 60_000): Promise<number | undefined> {
    const child = this.child;
    if (!child || !this.exited || child.exitCode !== null || child.signalCode !== null) return undefined;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  /**
   * Reboots the container from inside (`systemctl reboot`): its systemd shuts down, systemd-nspawn
   * exits 133 ("rebooted": a supervisor such as systemd-nspawn@.service starts it again), and so do we.
   */
  async reboot(timeoutMs = 60_000): Promise<void> {
    if (!this.exited) throw new Error(`container ${this.name} was not booted`);
    const exited = this.exited;
    const r = await this.exec('systemctl', ['reboot']);
    if (r.code !== 0) throw new Error(`container ${this.name}: systemctl reboot failed: ${r.stderr}`);
    const code = await Promise.race([exited, sleep(timeoutMs).then(() => 'timeout' as const)]);
    if (code !== 133) {
      throw new Error(
        `container ${this.name}: systemd-nspawn ended ${code} on reboot, not 133:\n${this.console}`,
      );
    }
    await this.boot();
  }

  consoleOutput(): string {
    return this.console;
  }
}
