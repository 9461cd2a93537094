// A removed node learns of it at its next contact, and its unit stops retrying (issue 9, item 2):
// the registrar answers 410 `removed` to a join with a removed (name, key), and `muster join` exits 3
// (refused), which muster-join.service lists in RestartPreventExitStatus. Nothing is written on the
// node. The real CLI against a real registrar on 127.0.0.1 (--mdns off).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localRegistrarArgs, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { tempDir } from '../helpers/registrar.js';
import { cli, filesUnder, registrarState, registrarStateRefused } from './helpers.js';

const UNIT = path.resolve(import.meta.dirname, '../../systemd/muster-join.service');

let t: ReturnType<typeof tempDir>;
let sock: string;
let reg: SpawnedRegistrar;

// Short-lived certificates, so that a node's credentials expire within the test and it asks again.
beforeAll(async () => {
  t = tempDir('muster-removed-');
  sock = path.join(t.dir, 'admin.sock');
  reg = await spawnRegistrar([...localRegistrarArgs(t.dir, sock), '--cert-lifetime', '3s']);
});
afterAll(async () => {
  await reg?.stop('SIGKILL');
  t?.cleanup();
});

const op = (args: string[]) => cli([...args, '--admin-socket', sock]);
const join = (name: string, dir: string, env: NodeJS.ProcessEnv = {}) =>
  cli(['join', '--registrar', reg.url, '--name', name, '--state-dir', dir, '--mdns', 'off'], env);

function register(name: string): string {
  const token = op(['tokens', 'create', '--uses', '1']).stdout.trim();
  const dir = path.join(t.dir, name);
  const r = join(name, dir, { MUSTER_TOKEN: token });
  expect(r.code, r.stderr).toBe(0);
  return dir;
}

/** The node's files and their contents. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries((filesUnder(dir) ?? []).map((f) => [f, readFileSync(path.join(dir, f), 'utf8')]));
}

describe('a removed node at its next contact', () => {
  it('muster-join.service does not retry exit 3 (refused)', () => {
    const line = readFileSync(UNIT, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('RestartPreventExitStatus='));
    expect(line?.slice('RestartPreventExitStatus='.length).split(/\s+/)).toContain('3');
  });

  it('removed by the operator, its certificate expired: the join is refused with 410, exit 3, nothing written', async () => {
    const dir = register('gone-1');
    const cert = new X509Certificate(readFileSync(path.join(dir, 'node.crt')));
    const rm = op(['nodes', 'remove', 'gone-1']);
    expect(rm.code, rm.stderr).toBe(0);
    // Wait (real time, no assertion on it) until the certificate has expired: the node asks again.
    const left = Date.parse(cert.validTo) - Date.now();
    if (left > -1000) await sleep(left + 1000);
    const before = snapshot(dir);
    const state = await registrarState(sock);

    const r = join('gone-1', dir);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/removed/);
    expect(snapshot(dir)).toEqual(before);
    expect(await registrarStateRefused(sock, state, ['removed'])).toEqual(state);
  });

  it('left with --keep-key: joining again with that key is refused (exit 3), nothing written', async () => {
    const dir = register('gone-2');
    const l = cli(['leave', '--state-dir', dir, '--keep-key']);
    expect(l.code, l.stderr).toBe(0);
    const before = snapshot(dir);
    expect(Object.keys(before)).toEqual(['node.key']);
    const state = await registrarState(sock);

    const r = join('gone-2', dir);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/removed/);
    expect(snapshot(dir)).toEqual(before);
    expect(await registrarStateRefused(sock, state, ['removed'])).toEqual(state);
  });
});
