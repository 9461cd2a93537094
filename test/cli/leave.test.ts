// `muster leave` end to end (issue 9, item 2; DESIGN "HTTPS API" POST /v1/leave): the real CLI, a node
// registered with a token against a real registrar on 127.0.0.1 (--mdns off), then the node leaves.
// The registrar shows the record removed and the serial in its signed CRL; the node's credentials are
// gone. Refusals (a misspelt flag, a node that is not registered) change nothing, here or there.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { api } from '../helpers/registrar.js';
import { cli, filesUnder, registrarFixture, registrarState } from './helpers.js';

const fx = registrarFixture({ each: 'file', prefix: 'muster-leave-' });
const op = (args: string[]) => cli([...args, '--admin-socket', fx.sock]);

/** Registers `name` with a one-use token through the real `muster join`; returns its state dir. */
function register(name: string): string {
  const token = op(['tokens', 'create', '--uses', '1']).stdout.trim();
  const dir = path.join(fx.dir, name);
  const r = cli(['join', '--registrar', fx.reg.url, '--name', name, '--state-dir', dir, '--mdns', 'off'], {
    MUSTER_TOKEN: token,
  });
  expect(r.code, r.stderr).toBe(0);
  expect(filesUnder(dir)).toEqual(
    ['acknowledged', 'bundle.json', 'ca.crt', 'config.json', 'node.crt', 'node.key'].sort(),
  );
  return dir;
}

/** The certificate serial of a node.crt, as the registrar prints it. */
function serialOf(dir: string): string {
  const o = spawnSync('openssl', ['x509', '-noout', '-serial', '-in', path.join(dir, 'node.crt')], {
    encoding: 'utf8',
  });
  return o.stdout
    .trim()
    .replace(/^serial=/, '')
    .replace(/^(00)+/, '');
}

/** The serials the registrar's CRL lists, as openssl reads the PEM form. */
async function revokedSerials(): Promise<string[]> {
  const res = await api(fx.reg, 'GET', '/v1/crl?format=pem');
  expect(res.status).toBe(200);
  const f = path.join(fx.dir, 'crl.pem');
  writeFileSync(f, res.body as string);
  const o = spawnSync('openssl', ['crl', '-noout', '-text', '-in', f], { encoding: 'utf8' });
  expect(o.status, o.stderr).toBe(0);
  return [...o.stdout.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!.replace(/^(00)+/, ''));
}

const show = (name: string) =>
  JSON.parse(op(['nodes', 'show', name, '--json']).stdout) as { state: string; serial?: string };

describe('muster leave', () => {
  it('revokes the certificate at the registrar, then removes the credentials and the key (exit 0)', async () => {
    const dir = register('leaver-1');
    const serial = serialOf(dir);
    expect(show('leaver-1').state).toBe('active');
    expect(await revokedSerials()).not.toContain(serial);

    const r = cli(['leave', '--state-dir', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/left: leaver-1/);
    expect(show('leaver-1').state).toBe('removed');
    expect(await revokedSerials()).toContain(serial);
    expect(filesUnder(dir)).toEqual([]);

    // Nothing left to leave: exit 1, a clear message, and the registrar's store as it was.
    const before = await registrarState(fx.sock);
    const again = cli(['leave', '--state-dir', dir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/not registered/);
    expect(await registrarState(fx.sock)).toEqual(before);
  });

  it('--keep-key keeps node.key and removes the rest', async () => {
    const dir = register('leaver-2');
    const key = readFileSync(path.join(dir, 'node.key'), 'utf8');
    const r = cli(['leave', '--state-dir', dir, '--keep-key']);
    expect(r.code, r.stderr).toBe(0);
    expect(show('leaver-2').state).toBe('removed');
    expect(filesUnder(dir)).toEqual(['node.key']);
    expect(readFileSync(path.join(dir, 'node.key'), 'utf8')).toBe(key);
    // A key and no credentials is not registered: exit 1, the key stays, the registrar is not told.
    const before = await registrarState(fx.sock);
    const again = cli(['leave', '--state-dir', dir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/this node is not registered .*nothing was changed/);
    expect(filesUnder(dir)).toEqual(['node.key']);
    expect(readFileSync(path.join(dir, 'node.key'), 'utf8')).toBe(key);
    expect(await registrarState(fx.sock)).toEqual(before);
  });

  it('a misspelt flag exits 2 and changes nothing, on the node or at the registrar', async () => {
    const dir = register('leaver-3');
    const files = filesUnder(dir);
    const cert = readFileSync(path.join(dir, 'node.crt'), 'utf8');
    const before = await registrarState(fx.sock);
    const r = cli(['leave', '--state-dir', dir, '--keep-kye']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no flag --keep-kye \(did you mean --keep-key\?\)/);
    expect(filesUnder(dir)).toEqual(files);
    expect(readFileSync(path.join(dir, 'node.crt'), 'utf8')).toBe(cert);
    expect(await registrarState(fx.sock)).toEqual(before);
    expect(show('leaver-3').state).toBe('active');
  });

  it('a registrar that cannot be reached: exit 1, the credentials stay (the node is still registered)', async () => {
    const dir = register('leaver-4');
    const files = filesUnder(dir);
    // A port nobody listens on (the registrar's own URL with port 1).
    const url = new URL(fx.reg.url);
    url.port = '1';
    const r = cli(['leave', '--state-dir', dir, '--registrar', url.toString()]);
    expect(r.code).toBe(1);
    expect(filesUnder(dir)).toEqual(files);
    expect(show('leaver-4').state).toBe('active');
  });
});
