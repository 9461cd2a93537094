/**
 * A node that is already registered (DESIGN "Roles": run again, it exits 0 at once) keeps its promises
 * (issue 14 items 6 and 8): started with a CA pin that is not the CA it holds, it says so and exits 5
 * (MUSTER_ERR_CA_PIN) instead of "already registered", changing nothing; with the right pin it exits 0.
 * And chain.pem is absent rather than empty when the bundle has no intermediate, a stale one removed.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { certFingerprint } from '../../src/common/x509.js';
import { musterAsync } from '../helpers/cli.js';
import { joinNode, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar | undefined;

beforeEach(async () => {
  t = tempDir();
  reg = await startTestRegistrar(t.dir, { mdns: false });
});
afterEach(async () => {
  await reg?.close();
  t.cleanup();
});

const createToken = async (): Promise<string> =>
  (await reg!.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {})).token;

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir))
    out[f] = `${statSync(path.join(dir, f)).mtimeMs}:${readFileSync(path.join(dir, f), 'utf8')}`;
  return out;
}

describe('a registered node', () => {
  it('started with another --ca-fingerprint fails with exit 5 and changes nothing; with its own CA it exits 0', async () => {
    const dir = path.join(t.dir, 'node');
    await joinNode(reg!, dir, { token: await createToken() });
    const held = certFingerprint(readFileSync(path.join(dir, 'ca.crt'), 'utf8'));
    const url = reg!.url;
    // The registrar is gone: whatever the node does next, it does on its own.
    await reg!.close();
    reg = undefined;
    const before = snapshot(dir);
    const other = 'Q'.repeat(43);
    const args = [
      'join',
      '--registrar',
      url,
      '--name',
      'node-1',
      '--role',
      'worker',
      '--state-dir',
      dir,
      '--mdns',
      'off',
    ];
    const r = await musterAsync([...args, '--ca-fingerprint', other]);
    expect(r.code, r.stderr).toBe(5);
    expect(r.stdout).not.toContain('already registered');
    expect(r.stderr).toContain(held);
    expect(r.stderr).toContain(`not the pinned ${other}`);
    expect(snapshot(dir)).toEqual(before);

    const same = await musterAsync([...args, '--ca-fingerprint', held]);
    expect(same.code, same.stderr).toBe(0);
    expect(same.stdout).toContain('already registered');
    expect(snapshot(dir)).toEqual(before);
  });
});

describe('chain.pem', () => {
  it('is not written when the bundle has no intermediate, and a stale one is removed', async () => {
    const dir = path.join(t.dir, 'node');
    // Left over from an earlier registration (under a tier registrar) whose certificate was since lost.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(
      path.join(dir, 'chain.pem'),
      '-----BEGIN CERTIFICATE-----\nstale\n-----END CERTIFICATE-----\n',
    );
    const r = await joinNode(reg!, dir, { token: await createToken() });
    expect(r.status).toBe('registered');
    expect(JSON.parse(readFileSync(path.join(dir, 'bundle.json'), 'utf8')).chain).toEqual([]);
    expect(existsSync(path.join(dir, 'chain.pem'))).toBe(false);
    expect(readdirSync(dir).sort()).toEqual([
      'acknowledged',
      'bundle.json',
      'ca.crt',
      'config.json',
      'node.crt',
      'node.key',
    ]);
  });
});
