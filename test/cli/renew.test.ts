// `muster renew` end to end (issue 9, items 1 and 4; DESIGN "Renewal"): the real CLI and a real
// registrar on 127.0.0.1 (--mdns off) with 30-second certificates (long enough that a renewed one outlives a registrar restart on a
// loaded CI machine; 12 s did not). A node joins; `muster renew` does
// nothing before two thirds of the lifetime and renews after (a new serial that openssl verifies, the
// --on-renewed hook). The operator restarts the registrar with another --node-config: `muster renew
// --now` rewrites config.json and runs --on-changed. A removed node exits 3 with nothing changed.
import { readFileSync, existsSync } from 'node:fs';
import { createPrivateKey as createKey, X509Certificate } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { keyFingerprint } from '../../src/common/x509.js';
import { opensslVerify, tempDir } from '../helpers/registrar.js';
import { cli, filesUnder, registrarState } from './helpers.js';

let t: ReturnType<typeof tempDir>;
let sock: string;
let port: number;
let reg: SpawnedRegistrar;

/** The registrar on a fixed port (bundle.json names its URL, so a restart must keep it). */
const start = (nodeConfig: string) =>
  spawnRegistrar([
    '--state-dir',
    path.join(t.dir, 'reg'),
    '--listen',
    `127.0.0.1:${port}`,
    '--admin-socket',
    sock,
    '--cert-lifetime',
    '30s',
    '--node-config',
    nodeConfig,
  ]);

beforeAll(async () => {
  t = tempDir('muster-renew-');
  sock = path.join(t.dir, 'admin.sock');
  port = await freePort();
  reg = await start('{"*": {"color": "blue"}}');
});
afterAll(async () => {
  await reg?.stop('SIGKILL');
  t?.cleanup();
});

const op = (args: string[]) => cli([...args, '--admin-socket', sock]);
const renew = (dir: string, args: string[] = []) => cli(['renew', '--state-dir', dir, ...args]);
const read = (dir: string, f: string) => readFileSync(path.join(dir, f), 'utf8');
const cert = (dir: string) => new X509Certificate(read(dir, 'node.crt'));
const snapshot = (dir: string): Record<string, string> =>
  Object.fromEntries((filesUnder(dir) ?? []).map((f) => [f, read(dir, f)]));

function register(name: string): string {
  const token = op(['tokens', 'create', '--uses', '1']).stdout.trim();
  const dir = path.join(t.dir, name);
  const r = cli(['join', '--registrar', reg.url, '--name', name, '--state-dir', dir, '--mdns', 'off'], {
    MUSTER_TOKEN: token,
  });
  expect(r.code, r.stderr).toBe(0);
  return dir;
}

describe('muster renew', () => {
  it('renews at two thirds of the lifetime, and a --node-config change reaches the node with --now', async () => {
    const dir = register('renew-1');
    const first = cert(dir);
    const issuedAt = Date.parse((JSON.parse(read(dir, 'bundle.json')) as { issuedAt: string }).issuedAt);
    const due = issuedAt + ((Date.parse(first.validTo) - issuedAt) * 2) / 3;
    expect(JSON.parse(read(dir, 'config.json'))).toEqual({ color: 'blue' });

    // Before two thirds of the lifetime: nothing is due, nothing changes (the clock is read after the
    // run, so a slow machine that reached the due time only skips this part).
    const before = snapshot(dir);
    const early = renew(dir, ['--on-renewed', `touch ${path.join(t.dir, 'renewed-early')}`]);
    expect(early.code, early.stderr).toBe(0);
    if (Date.now() < due) {
      expect(early.stdout).toMatch(/not due/);
      expect(snapshot(dir)).toEqual(before);
      expect(existsSync(path.join(t.dir, 'renewed-early'))).toBe(false);
    }

    // After two thirds: renewed, a new serial that chains to the CA, the hook run, config unchanged.
    const wait = due - Date.now() + 500;
    if (wait > 0) await sleep(wait);
    const marker = path.join(t.dir, 'renewed');
    const changed = path.join(t.dir, 'changed');
    const r = renew(dir, ['--on-renewed', `touch ${marker}`, '--on-changed', `touch ${changed}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/renewed: renew-1/);
    const second = cert(dir);
    expect(second.serialNumber).not.toBe(first.serialNumber);
    expect(Date.parse(second.validTo)).toBeGreaterThan(Date.parse(first.validTo));
    expect(opensslVerify(path.join(dir, 'ca.crt'), path.join(dir, 'node.crt')).ok).toBe(true);
    expect(existsSync(marker)).toBe(true);
    expect(existsSync(changed)).toBe(false);
    expect(JSON.parse(read(dir, 'config.json'))).toEqual({ color: 'blue' });
    const show = JSON.parse(op(['nodes', 'show', 'renew-1', '--json']).stdout) as { serial: string };
    expect(show.serial.replace(/^(00)+/, '')).toBe(second.serialNumber.replace(/^(00)+/, ''));

    // The operator changes the node config (a start option): restart on the same state and port.
    await reg.stop('SIGTERM');
    reg = await start('{"*": {"color": "green"}}');
    const now = renew(dir, ['--now', '--on-changed', `touch ${changed}`]);
    expect(now.code, now.stderr).toBe(0);
    expect(now.stdout).toMatch(/config.json changed/);
    expect(JSON.parse(read(dir, 'config.json'))).toEqual({ color: 'green' });
    expect(existsSync(changed)).toBe(true);
    expect(opensslVerify(path.join(dir, 'ca.crt'), path.join(dir, 'node.crt')).ok).toBe(true);
  }, 90_000);

  it('--rotate-key: a new node.key, a certificate for it, and the registrar holds the new key', () => {
    const dir = register('renew-2');
    const oldKey = read(dir, 'node.key');
    const r = renew(dir, ['--rotate-key']);
    expect(r.code, r.stderr).toBe(0);
    expect(read(dir, 'node.key')).not.toBe(oldKey);
    expect(cert(dir).checkPrivateKey(createKey(read(dir, 'node.key')))).toBe(true);
    expect(opensslVerify(path.join(dir, 'ca.crt'), path.join(dir, 'node.crt')).ok).toBe(true);
    const show = JSON.parse(op(['nodes', 'show', 'renew-2', '--json']).stdout) as { key: string };
    expect(show.key).toBe(keyFingerprint(createKey(read(dir, 'node.key'))));
    // The renewed node renews again with its new key.
    expect(renew(dir, ['--now']).code).toBe(0);
  }, 30_000);

  it('a removed node exits 3 and nothing changes, here or at the registrar', async () => {
    const dir = register('renew-3');
    expect(op(['nodes', 'remove', 'renew-3']).code).toBe(0);
    const before = snapshot(dir);
    const state = await registrarState(sock);
    const r = renew(dir, ['--now', '--on-renewed', `touch ${path.join(t.dir, 'renewed-3')}`]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/removed/);
    expect(snapshot(dir)).toEqual(before);
    expect(await registrarState(sock)).toEqual(state);
    expect(existsSync(path.join(t.dir, 'renewed-3'))).toBe(false);
  }, 30_000);

  it('a node with no credentials exits 1 and is not changed', () => {
    const dir = path.join(t.dir, 'nobody');
    const r = renew(dir, ['--now']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/muster join/);
    expect(filesUnder(dir)).toBeNull();
  });
});
