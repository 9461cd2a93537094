/**
 * The registrar's state directory read-only or full (issue 8 "Faults": a clear error, no corruption,
 * recovery once fixed). The state directory sits on a small tmpfs that the test mounts, remounts
 * read-only, fills up and removes: root ignores file modes, so chmod proves nothing for a registrar
 * that runs as root. Without root (or without mount) the suite is skipped loudly; with CI=true that
 * is a failure.
 *
 * The registrar is the real CLI (`--mdns off`, 127.0.0.1). After each fault the store is checked
 * through the Registry interface: everything that was acknowledged before (a node with its
 * certificate, a token and its uses) is still there, each answered join's certificate is the stored
 * one, serials are unique and the state counters agree with the index.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { joinProofMac, parseToken, type ParsedToken } from '../../src/common/proof.js';
import { LevelRegistry } from '../../src/store/level.js';
import { NODE_STATES } from '../../src/store/types.js';
import { BIN, freePort, muster, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { api, csrFor } from '../helpers/registrar.js';

/** Can this process mount a tmpfs? (root with CAP_SYS_ADMIN) */
function mountGate(): { skip: boolean; mustFail: boolean } {
  let reason = '';
  if (process.getuid?.() !== 0) reason = 'not root';
  else {
    const probe = mkdtempSync(path.join(os.tmpdir(), 'muster-mnt-probe-'));
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { encoding: 'utf8' });
    if (r.status === 0) spawnSync('umount', [probe]);
    else reason = `mount -t tmpfs fails (${(r.stderr || r.error?.message || '').trim()})`;
    rmSync(probe, { recursive: true, force: true });
  }
  if (!reason) return { skip: false, mustFail: false };
  const ci = process.env.CI === 'true';
  console.warn(
    `\n*** state-dir faults: ${ci ? 'FAILING' : 'SKIPPING'}: ${reason}. A read-only or full state directory ` +
      'needs a tmpfs this test mounts (root ignores file modes). ***\n',
  );
  return { skip: true, mustFail: ci };
}
const gate = mountGate();

const run = (cmd: string, args: string[]): void => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
};

let root: string;
let mnt: string;
let sock: string;
let port: number;
let reg: SpawnedRegistrar | undefined;

beforeEach(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'muster-sd-'));
  mnt = path.join(root, 'mnt');
  run('mkdir', [mnt]);
  run('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mnt]);
  sock = path.join(root, 'admin.sock');
  port = await freePort();
});

afterEach(async () => {
  await reg?.stop('SIGKILL');
  reg = undefined;
  spawnSync('umount', ['-l', mnt]);
  rmSync(root, { recursive: true, force: true });
});

const stateDir = (): string => path.join(mnt, 'state');
const args = (): string[] => [
  '--state-dir',
  stateDir(),
  '--listen',
  `127.0.0.1:${port}`,
  '--admin-socket',
  sock,
  '--cluster',
  'sd',
];

/** Starts the registrar; resolves with it when ready, or with its exit code and output when it fails. */
function start(): Promise<{ reg: SpawnedRegistrar } | { code: number | null; output: string }> {
  return spawnRegistrar(args()).then(
    (r) => ({ reg: r }),
    () =>
      // spawnRegistrar reports only the output: run again to get the exit code too.
      new Promise((resolve) => {
        const child = spawn(process.execPath, [BIN, 'registrar', '--mdns', 'off', ...args()], {
          env: { ...process.env, MUSTER_LOG_FORMAT: 'json' },
        });
        let output = '';
        child.stdout.on('data', (c) => (output += c));
        child.stderr.on('data', (c) => (output += c));
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.on('exit', (code) => {
          clearTimeout(timer);
          resolve({ code, output });
        });
      }),
  );
}

async function mustStart(): Promise<SpawnedRegistrar> {
  const r = await start();
  if (!('reg' in r)) throw new Error(`the registrar did not start (exit ${r.code}):\n${r.output}`);
  return r.reg;
}

/** Fills the file system: writes until ENOSPC. Returns the filler's path. */
function fill(): string {
  const file = path.join(mnt, 'filler');
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(16 * 1024, 0x5a);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    // Fill the last partial page too.
    try {
      for (;;) writeSync(fd, Buffer.alloc(1));
    } catch {
      // full
    }
  } finally {
    closeSync(fd);
  }
  return file;
}

interface Joined {
  name: string;
  certificate: string;
}

function joinBody(name: string, tok: ParsedToken): { body: unknown } {
  const { csr, fp } = csrFor(name);
  const ts = Math.floor(Date.now() / 1000);
  return {
    body: {
      name,
      role: 'worker',
      cluster: '',
      csr,
      proof: {
        id: tok.id,
        ts,
        hmac: joinProofMac(tok.secret, { name, role: 'worker', cluster: '', key: fp, ts }),
      },
    },
  };
}

/** What the store holds must agree with every join that was answered with a certificate. */
async function checkStore(answered: Joined[], tokenId: string): Promise<void> {
  const store = await LevelRegistry.open(path.join(stateDir(), 'registry'));
  try {
    const records = await store.listNodes({ limit: 10_000 });
    const byName = new Map(records.map((r) => [r.name, r]));
    for (const j of answered) expect(byName.get(j.name)?.certificate, j.name).toBe(j.certificate);
    const serials = await store.listSerials();
    expect(new Set(serials.map((s) => s.serial)).size).toBe(serials.length);
    for (const s of serials) expect(byName.get(s.name)?.serial).toBe(s.serial);
    const tok = (await store.listTokens()).find((t) => t.id === tokenId);
    expect(tok?.used).toBe(records.filter((r) => r.decision?.rule === 'token').length);
    const counts = await store.counts();
    for (const state of NODE_STATES) expect(counts[state]).toBe((await store.namesInState(state)).length);
  } finally {
    await store.close();
  }
}

/** A running registrar with a token and one joined node. */
async function seeded(): Promise<{ tok: ParsedToken; answered: Joined[] }> {
  reg = await mustStart();
  const created = muster(['tokens', 'create', '--admin-socket', sock]);
  const tok = parseToken(created.stdout.trim());
  expect(tok, created.stderr).toBeDefined();
  const first = await api(reg, 'POST', '/v1/join', joinBody('first', tok!).body);
  expect(first.status).toBe(201);
  return { tok: tok!, answered: [{ name: 'first', certificate: first.body.certificate }] };
}

describe.skipIf(gate.skip)('state directory faults (tmpfs)', () => {
  it('read-only: the registrar exits at start with a clear error, the store is untouched, and it starts once writable', async () => {
    const { tok, answered } = await seeded();
    await reg!.stop('SIGTERM');
    reg = undefined;
    run('mount', ['-o', 'remount,ro', mnt]);

    const failed = await start();
    expect('code' in failed, 'the registrar started on a read-only state directory').toBe(true);
    if ('code' in failed) {
      expect(failed.code).toBe(1);
      expect(failed.output).toMatch(/read-only file system/i);
      expect(failed.output).toContain(stateDir());
    }
    run('mount', ['-o', 'remount,rw', mnt]);
    await checkStore(answered, tok.id);

    reg = await mustStart();
    const again = await api(reg, 'POST', '/v1/join', joinBody('second', tok).body);
    expect(again.status).toBe(201);
    answered.push({ name: 'second', certificate: again.body.certificate });
    await reg.stop('SIGTERM');
    reg = undefined;
    await checkStore(answered, tok.id);
  });

  it('full at start: the registrar exits with a clear error, the store is untouched, and it starts once there is room', async () => {
    const { tok, answered } = await seeded();
    await reg!.stop('SIGTERM');
    reg = undefined;
    const filler = fill();

    const failed = await start();
    expect('code' in failed, 'the registrar started on a full state directory').toBe(true);
    if ('code' in failed) {
      expect(failed.code).toBe(1);
      expect(failed.output).toMatch(/no space left on device/i);
    }
    rmSync(filler);
    await checkStore(answered, tok.id);
    reg = await mustStart();
    const again = await api(reg, 'POST', '/v1/join', joinBody('second', tok).body);
    expect(again.status).toBe(201);
    await reg.stop('SIGTERM');
    reg = undefined;
    await checkStore([...answered, { name: 'second', certificate: again.body.certificate }], tok.id);
  });

  /** Fills the disk under a running registrar and joins until one fails; the answered ones are kept. */
  async function joinsWhileFull(tok: ParsedToken, answered: Joined[]): Promise<string> {
    const filler = fill();
    // Writes that still fit in a partly used page may pass: ask until one fails (it must, soon).
    let refused = 0;
    for (let i = 0; i < 20 && refused === 0; i++) {
      const name = `full${i}`;
      const r = await api(reg!, 'POST', '/v1/join', joinBody(name, tok).body).catch(() => ({
        status: 0,
        body: undefined as { certificate?: string } | undefined,
      }));
      if (r.status === 201) answered.push({ name, certificate: r.body!.certificate! });
      else {
        expect(r.status === 0 || r.status >= 500, `a full disk answered ${r.status}`).toBe(true);
        refused++;
      }
    }
    expect(refused, 'no write failed on a full state directory').toBeGreaterThan(0);
    // The log line is written before the answer, but reaches us through a pipe: give it a moment.
    for (let i = 0; i < 50 && !/no space left on device/i.test(reg!.output()); i++) {
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(reg!.output()).toMatch(/no space left on device/i);
    return filler;
  }

  it('full while running: joins fail with 5xx and ENOSPC in the log, nothing half-written, and a restart with room serves again', async () => {
    const { tok, answered } = await seeded();
    const filler = await joinsWhileFull(tok, answered);
    rmSync(filler);
    await reg!.stop('SIGTERM');
    reg = undefined;
    await checkStore(answered, tok.id);
    reg = await mustStart();
    const again = await api(reg, 'POST', '/v1/join', joinBody('after', tok).body);
    expect(again.status).toBe(201);
    answered.push({ name: 'after', certificate: again.body.certificate });
    await reg.stop('SIGTERM');
    reg = undefined;
    await checkStore(answered, tok.id);
  });

  // Once a write fails with ENOSPC, LevelDB's background error is sticky: the registrar stops with
  // exit 1 (MUSTER_ERR_STATE_DIR) so that its unit's Restart= brings it back, and a fresh start reads
  // what is durable. Here the test restarts it as the unit would.
  it('full while running: it recovers once there is room, without an operator', async () => {
    const { tok, answered } = await seeded();
    rmSync(await joinsWhileFull(tok, answered));
    // By itself, or, when it chose to exit with a clear error, once restarted (as its unit's Restart=).
    let recovered = false;
    for (let i = 0; i < 30 && !recovered; i++) {
      if (reg!.child.exitCode !== null || reg!.child.signalCode !== null) reg = await mustStart();
      const r = await api(reg!, 'POST', '/v1/join', joinBody(`after${i}`, tok).body).catch(() => ({
        status: 0,
      }));
      if (r.status === 201) recovered = true;
      else await new Promise((res) => setTimeout(res, 200));
    }
    expect(recovered, 'no join succeeded in 6 s after the disk had room again').toBe(true);
  });
});

if (gate.mustFail) {
  it('state-dir fault tests need root and tmpfs mounts (CI)', () => {
    expect.fail('cannot mount a tmpfs: see the warning above');
  });
}
