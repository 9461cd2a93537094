// Pre-approval, rebuild and ban through the real CLI against a real registrar on 127.0.0.1
// (--mdns off) (issue 9, item 3): the operator's command, then what a node's `muster join` gets.
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient } from '../../src/admin/client.js';
import { keyFingerprint } from '../../src/common/x509.js';
import { createPrivateKey } from 'node:crypto';
import { localRegistrarArgs, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { tempDir } from '../helpers/registrar.js';
import { cli, filesUnder, registrarState, registrarStateRefused } from './helpers.js';

let t: ReturnType<typeof tempDir>;
let sock: string;
let reg: SpawnedRegistrar;

beforeAll(async () => {
  t = tempDir('muster-preapprove-');
  sock = path.join(t.dir, 'admin.sock');
  reg = await spawnRegistrar(localRegistrarArgs(t.dir, sock));
});
afterAll(async () => {
  await reg?.stop('SIGKILL');
  t?.cleanup();
});

const op = (args: string[]) => cli([...args, '--admin-socket', sock]);
const join = (name: string, dir: string, env: NodeJS.ProcessEnv = {}) =>
  cli(['join', '--registrar', reg.url, '--name', name, '--state-dir', dir, '--mdns', 'off'], env);
const dirOf = (name: string) => path.join(t.dir, 'nodes', name);
/** The registrar's state, pre-approvals and bans included. */
/** With `before`: but for the refusals on record since, whose reasons must be `reasons`. */
const state = async (before?: Record<string, unknown>, reasons: string[] = []) => {
  const c = new AdminClient(sock);
  return {
    ...(before ? await registrarStateRefused(sock, before, reasons) : await registrarState(sock)),
    preapprovals: await c.request('GET', '/v1/admin/preapprovals'),
    bans: await c.request('GET', '/v1/admin/bans'),
  };
};
const show = (name: string) =>
  JSON.parse(op(['nodes', 'show', name, '--json']).stdout) as Record<string, any>;

describe('nodes preapprove', () => {
  it('a node with no token and no install mode joins once and is issued', () => {
    const p = op(['nodes', 'preapprove', 'pre-1', '--ttl', '1h']);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/pre-1 may join once/);
    const r = join('pre-1', dirOf('pre-1'));
    expect(r.code, r.stderr).toBe(0);
    expect(filesUnder(dirOf('pre-1'))).toContain('node.crt');
    expect(show('pre-1')).toMatchObject({
      state: expect.stringMatching(/issued|active/),
      decision: { rule: 'approval' },
    });
  });

  it('--json prints the documented Preapproval (docs/cli-json.md), times in ISO 8601', () => {
    const r = op(['nodes', 'preapprove', 'pre-json', '--role', 'db', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const p = JSON.parse(r.stdout);
    expect(Object.keys(p).sort()).toEqual(['by', 'createdAt', 'expiresAt', 'name', 'role']);
    expect(p).toMatchObject({ name: 'pre-json', role: 'db' });
    // The default lifetime: a day.
    expect(Date.parse(p.expiresAt) - Date.parse(p.createdAt)).toBe(24 * 3600_000);
    expect(
      JSON.parse(op(['nodes', 'preapprove', 'pre-json', '--ttl', 'never', '--json']).stdout),
    ).toMatchObject({
      expiresAt: null,
    });
  });

  it.each([
    ['a misspelt flag', ['nodes', 'preapprove', 'pre-2', '--tll', '1h']],
    ['a bad key', ['nodes', 'preapprove', 'pre-2', '--key', 'nope']],
    ['a bad ttl', ['nodes', 'preapprove', 'pre-2', '--ttl', 'soon']],
    ['ban with neither name nor key', ['nodes', 'ban']],
    ['ban with both', ['nodes', 'ban', 'pre-2', '--key', 'k'.repeat(43)]],
    ['rebuild with a misspelt flag', ['nodes', 'rebuild', 'pre-1', '--rol', 'db']],
    ['approve --force without --key', ['nodes', 'approve', 'pre-1', '--force']],
    ['approve --key without --force', ['nodes', 'approve', 'pre-1', '--key', 'k'.repeat(43)]],
  ])('%s: exit 2, nothing changed', async (_name, args) => {
    const before = await state();
    const r = op(args);
    expect(r.code, r.stderr).toBe(2);
    expect(await state()).toEqual(before);
  });
});

describe('nodes rebuild', () => {
  it('the old key is refused (exit 3); a new key joins once with no token', async () => {
    const token = op(['tokens', 'create', '--uses', '1']).stdout.trim();
    const old = dirOf('rb-1');
    expect(join('rb-1', old, { MUSTER_TOKEN: token }).code).toBe(0);
    const oldKey = keyFingerprint(createPrivateKey(readFileSync(path.join(old, 'node.key'))));
    const r = op(['nodes', 'rebuild', 'rb-1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/revoked/);

    // The old machine asks again with its key: 410 removed, exit 3, nothing changed.
    const again = path.join(t.dir, 'nodes', 'rb-1-old');
    mkdirSync(again, { recursive: true, mode: 0o700 });
    copyFileSync(path.join(old, 'node.key'), path.join(again, 'node.key'));
    const before = await state();
    const o = join('rb-1', again);
    expect(o.code, o.stderr).toBe(3);
    expect(await state(before, ['removed'])).toEqual(before);

    const fresh = join('rb-1', dirOf('rb-1-new'));
    expect(fresh.code, fresh.stderr).toBe(0);
    const n = show('rb-1');
    expect(n.key).not.toBe(oldKey);
    expect(n.decision).toMatchObject({ rule: 'approval' });
    expect((n.history as { key: string }[]).map((h) => h.key)).toEqual([oldKey]);
  });
});

describe('nodes ban', () => {
  it('a banned name is refused (exit 3, nothing written); after unban it joins', async () => {
    const b = op(['nodes', 'ban', 'ban-1', '--reason', 'stolen']);
    expect(b.code, b.stderr).toBe(0);
    const token = op(['tokens', 'create', '--uses', '1']).stdout.trim();
    const before = await state();
    const r = join('ban-1', dirOf('ban-1'), { MUSTER_TOKEN: token });
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/banned/);
    expect(await state(before, ['banned'])).toEqual(before);

    const u = op(['nodes', 'unban', 'ban-1']);
    expect(u.code, u.stderr).toBe(0);
    const ok = join('ban-1', dirOf('ban-1'), { MUSTER_TOKEN: token });
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('banning a key removes the node that holds it and revokes its certificate', () => {
    const token = op(['tokens', 'create', '--uses', '1']).stdout.trim();
    const dir = dirOf('ban-2');
    expect(join('ban-2', dir, { MUSTER_TOKEN: token }).code).toBe(0);
    const fp = keyFingerprint(createPrivateKey(readFileSync(path.join(dir, 'node.key'))));
    const b = op(['nodes', 'ban', '--key', fp]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/removed ban-2/);
    expect(show('ban-2').state).toBe('removed');
  });
});

describe('nodes approve --force', () => {
  it('re-admits a name held by another key: the holder is removed, the new key joins', async () => {
    const token = op(['tokens', 'create', '--uses', '1']).stdout.trim();
    expect(join('force-1', dirOf('force-1'), { MUSTER_TOKEN: token }).code).toBe(0);
    const holder = show('force-1');
    const dir = dirOf('force-1-new');
    const taken = join('force-1', dir);
    expect(taken.code).not.toBe(0);
    expect(taken.stderr).toMatch(/held by key/);
    const fp = keyFingerprint(createPrivateKey(readFileSync(path.join(dir, 'node.key'))));

    const a = op(['nodes', 'approve', 'force-1', '--force', '--key', fp]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toMatch(/revoked/);
    const r = join('force-1', dir);
    expect(r.code, r.stderr).toBe(0);
    const n = show('force-1');
    expect(n.key).toBe(fp);
    expect((n.history as { key: string }[]).map((h) => h.key)).toEqual([holder.key]);
  });
});
