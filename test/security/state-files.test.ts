/**
 * Issue 8, smaller holes: state directories and the key and credential files in them.
 * - an existing state directory is made 0700 (before, only a new one got the mode);
 * - nothing follows a symbolic link to change a mode: a state directory, ca.key or ca.crt that is a
 *   link is refused with MUSTER_ERR_STATE_DIR, and the link's target is left as it was;
 * - files written into a state directory are 0600 unless public by intent (the node's config.json
 *   and bundle.json were 0644, with the operator's per-role config in them).
 * Each refusal also asserts that nothing changed (modes, files).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { isMusterError } from '../../src/common/errors.js';
import { ensureDir, readPrivateFile, readStateFile, writeFileAtomic } from '../../src/common/files.js';
import { loadOrCreateCa } from '../../src/registrar/ca.js';
import { joinNode, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

const mode = (p: string): number => statSync(p).mode & 0o7777;

async function stateDirError(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isMusterError(err, 'MUSTER_ERR_STATE_DIR'), String(err)).toBe(true);
  return err as Error;
}

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir('muster-sec-files-');
});
afterEach(() => t.cleanup());

describe('state directories', () => {
  it('an existing state directory is made 0700 (a new one too)', async () => {
    const fresh = path.join(t.dir, 'new', 'state');
    await ensureDir(fresh);
    expect(mode(fresh)).toBe(0o700);

    const old = path.join(t.dir, 'old');
    mkdirSync(old);
    chmodSync(old, 0o755);
    writeFileSync(path.join(old, 'node.key'), 'k', { mode: 0o600 });
    await ensureDir(old, 0o700);
    expect(mode(old)).toBe(0o700);
    expect(readFileSync(path.join(old, 'node.key'), 'utf8')).toBe('k');
  });

  it('a shared directory (0755: the admin socket directory, /tmp) is created but never changed', async () => {
    const shared = path.join(t.dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    await ensureDir(shared, 0o755);
    expect(mode(shared)).toBe(0o1777);
  });

  it('a state directory that is a symbolic link is refused, and its target keeps its mode', async () => {
    const target = path.join(t.dir, 'elsewhere');
    mkdirSync(target);
    chmodSync(target, 0o755);
    const link = path.join(t.dir, 'state');
    symlinkSync(target, link);
    const err = await stateDirError(ensureDir(link, 0o700));
    expect(err.message).toMatch(/state directory .*state is a symbolic link/);
    expect(mode(target)).toBe(0o755);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
  });

  it('a state directory that is a file is refused', async () => {
    const file = path.join(t.dir, 'state');
    writeFileSync(file, 'x', { mode: 0o644 });
    const err = await stateDirError(ensureDir(file, 0o700));
    expect(err.message).toMatch(/state is not a directory/);
    expect(mode(file)).toBe(0o644);
    expect(readFileSync(file, 'utf8')).toBe('x');
  });

  it('a dangling link where the state directory should be is refused, and nothing is created', async () => {
    const target = path.join(t.dir, 'not-yet');
    const link = path.join(t.dir, 'state');
    symlinkSync(target, link);
    const err = await stateDirError(ensureDir(link, 0o700));
    expect(err.message).toMatch(/is a symbolic link/);
    expect(existsSync(target)).toBe(false);
  });
});

describe('key and credential files', () => {
  it('writeFileAtomic writes 0600 unless asked for a public mode', async () => {
    const f = path.join(t.dir, 'secret.json');
    await writeFileAtomic(f, '{}\n');
    expect(mode(f)).toBe(0o600);
    const pub = path.join(t.dir, 'ca.crt');
    await writeFileAtomic(pub, 'cert\n', 0o644);
    expect(mode(pub)).toBe(0o644);
  });

  it('writeFileAtomic replaces a link at the target instead of writing through it', async () => {
    const victim = path.join(t.dir, 'victim');
    writeFileSync(victim, 'untouched\n', { mode: 0o644 });
    const f = path.join(t.dir, 'config.json');
    symlinkSync(victim, f);
    await writeFileAtomic(f, '{}\n');
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
    expect(mode(victim)).toBe(0o644);
    expect(lstatSync(f).isFile()).toBe(true);
    expect(mode(f)).toBe(0o600);
  });

  it('readPrivateFile tightens a readable key, and refuses a link without touching its target', async () => {
    const key = path.join(t.dir, 'node.key');
    writeFileSync(key, 'KEY', { mode: 0o644 });
    chmodSync(key, 0o644);
    expect(await readPrivateFile(key)).toEqual({ text: 'KEY', widened: 0o644 });
    expect(mode(key)).toBe(0o600);
    expect(await readPrivateFile(path.join(t.dir, 'missing'))).toBeUndefined();

    const target = path.join(t.dir, 'shadow');
    writeFileSync(target, 'not a key', { mode: 0o644 });
    chmodSync(target, 0o644);
    const link = path.join(t.dir, 'linked.key');
    symlinkSync(target, link);
    const err = await stateDirError(readPrivateFile(link));
    expect(err.message).toMatch(/linked\.key is a symbolic link/);
    expect(err.message).not.toContain('not a key');
    expect(mode(target)).toBe(0o644);
    await stateDirError(readStateFile(link));
  });
});

describe("the registrar's CA directory", () => {
  it('an existing CA directory and a readable ca.key are made private on load', async () => {
    const dir = path.join(t.dir, 'ca');
    await loadOrCreateCa(dir, 'sec-test', new Date());
    chmodSync(dir, 0o755);
    chmodSync(path.join(dir, 'ca.key'), 0o644);
    const again = await loadOrCreateCa(dir, 'sec-test', new Date());
    expect(again.created).toBe(false);
    expect(mode(dir)).toBe(0o700);
    expect(mode(path.join(dir, 'ca.key'))).toBe(0o600);
    expect(mode(path.join(dir, 'ca.crt'))).toBe(0o644);
  });

  it('a ca.key that is a symbolic link is refused, never chmodded through', async () => {
    const dir = path.join(t.dir, 'ca');
    await loadOrCreateCa(dir, 'sec-test', new Date());
    // The operator's (or an attacker's) file the link points at: world-readable on purpose.
    const real = path.join(t.dir, 'real.key');
    writeFileSync(real, readFileSync(path.join(dir, 'ca.key')));
    chmodSync(real, 0o644);
    const before = readdirSync(dir).sort();
    rmSync(path.join(dir, 'ca.key'));
    symlinkSync(real, path.join(dir, 'ca.key'));

    const err = await stateDirError(loadOrCreateCa(dir, 'sec-test', new Date()));
    expect(err.message).toMatch(/ca\.key is a symbolic link/);
    expect(mode(real)).toBe(0o644);
    expect(readdirSync(dir).sort()).toEqual(before);
    expect(lstatSync(path.join(dir, 'ca.key')).isSymbolicLink()).toBe(true);
  });

  it('a CA directory that is a symbolic link is refused, and nothing is created in its target', async () => {
    const target = path.join(t.dir, 'target');
    mkdirSync(target);
    chmodSync(target, 0o755);
    const link = path.join(t.dir, 'ca');
    symlinkSync(target, link);
    await stateDirError(loadOrCreateCa(link, 'sec-test', new Date()));
    expect(readdirSync(target)).toEqual([]);
    expect(mode(target)).toBe(0o755);
  });
});

describe('through the real registrar and node', () => {
  let reg: TestRegistrar | undefined;
  afterEach(async () => {
    await reg?.close();
    reg = undefined;
  });

  it('the registrar makes an existing state directory private; the node writes every file 0600', async () => {
    const stateDir = path.join(t.dir, 'registrar');
    mkdirSync(stateDir);
    chmodSync(stateDir, 0o755);
    reg = await startTestRegistrar(t.dir, { nodeConfig: { '*': { secret_hint: 'for-nodes-only' } } });
    expect(mode(stateDir)).toBe(0o700);
    expect(mode(path.join(stateDir, 'ca'))).toBe(0o700);
    expect(mode(path.join(stateDir, 'ca', 'ca.key'))).toBe(0o600);

    const { token } = await reg.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {});
    const nodeDir = path.join(t.dir, 'node');
    mkdirSync(nodeDir);
    chmodSync(nodeDir, 0o755);
    const r = await joinNode(reg, nodeDir, { name: 'files-1', token });
    expect(r.status).toBe('registered');
    expect(mode(nodeDir)).toBe(0o700);
    expect(readFileSync(path.join(nodeDir, 'config.json'), 'utf8')).toContain('for-nodes-only');
    for (const f of ['node.key', 'node.crt', 'ca.crt', 'config.json', 'bundle.json']) {
      expect(existsSync(path.join(nodeDir, f)), f).toBe(true);
      expect(mode(path.join(nodeDir, f)), f).toBe(0o600);
    }
  });

  it('the registrar refuses a state directory that is a symbolic link, and creates nothing', async () => {
    const target = path.join(t.dir, 'target');
    mkdirSync(target);
    chmodSync(target, 0o755);
    symlinkSync(target, path.join(t.dir, 'registrar'));
    await stateDirError(startTestRegistrar(t.dir));
    expect(readdirSync(target)).toEqual([]);
    expect(mode(target)).toBe(0o755);
    expect(existsSync(path.join(t.dir, 'admin.sock'))).toBe(false);
  });
});
