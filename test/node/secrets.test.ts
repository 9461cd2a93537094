/**
 * Key and credential files are private, and no log holds a secret (issue 8, "Prove it": key files
 * are 0600, captured logs hold no secret). A full join with a token, once in process with every log
 * line captured at debug level, once through the real CLI with its stderr captured: node.key,
 * bundle.json and config.json are 0600 and the state directory 0700; neither the node's log nor the
 * registrar's holds the token secret or the node's private key.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseToken } from '../../src/common/proof.js';
import { musterAsync } from '../helpers/cli.js';
import { joinNode, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar;

beforeEach(async () => {
  t = tempDir('muster-secrets-');
  // Per-role config is the operator's and may be sensitive: it lands in config.json and bundle.json.
  reg = await startTestRegistrar(t.dir, { mdns: false, nodeConfig: { '*': { db_password: 'cfg-s3cret' } } });
});
afterEach(async () => {
  await reg?.close();
  t.cleanup();
});

const mode = (p: string): number => statSync(p).mode & 0o7777;

/** The pieces of a PEM private key that a leak would show: its base64 lines and the whole DER. */
function keyMaterial(pem: string): string[] {
  const body = pem.split('\n').filter((l) => l && !l.startsWith('-----'));
  return [body.join(''), ...body.filter((l) => l.length >= 16)];
}

function expectPrivate(dir: string): void {
  expect(mode(dir)).toBe(0o700);
  for (const f of ['node.key', 'bundle.json', 'config.json']) expect(mode(path.join(dir, f)), f).toBe(0o600);
  expect(readFileSync(path.join(dir, 'config.json'), 'utf8')).toContain('cfg-s3cret');
}

function expectNoSecret(log: string, secret: string, keyPem: string, where: string): void {
  expect(log.length, `${where}: nothing was captured`).toBeGreaterThan(0);
  expect(log.includes(secret), `${where} holds the token secret`).toBe(false);
  expect(log).not.toContain('PRIVATE KEY');
  for (const piece of keyMaterial(keyPem))
    expect(log.includes(piece), `${where} holds the private key`).toBe(false);
}

describe('a full join with a token', () => {
  it('in process: the files are private and no captured log line (debug) holds a secret', async () => {
    const { token } = await reg.admin.request<{ token: string }>('POST', '/v1/admin/tokens', { uses: 5 });
    const secret = parseToken(token)!.secret;
    const dir = path.join(t.dir, 'node');
    const r = await joinNode(reg, dir, { name: 'sec-1', token });
    expect(r.status).toBe('registered');
    expectPrivate(dir);
    const keyPem = readFileSync(path.join(dir, 'node.key'), 'utf8');
    expectNoSecret(r.logs.text(), secret, keyPem, 'the node log');
    expect(r.logs.text()).not.toContain('cfg-s3cret'); // the operator's config is not logged either
    expectNoSecret(reg.logs.text(), secret, keyPem, 'the registrar log');
  });

  it('through the CLI (token in MUSTER_TOKEN, debug logs): the same', async () => {
    const { token } = await reg.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {});
    const secret = parseToken(token)!.secret;
    const dir = path.join(t.dir, 'node');
    const r = await musterAsync(
      ['join', '--registrar', reg.url, '--name', 'sec-2', '--state-dir', dir, '--mdns', 'off'],
      { MUSTER_TOKEN: token, MUSTER_LOG_LEVEL: 'debug' },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('"acknowledged"');
    expectPrivate(dir);
    const keyPem = readFileSync(path.join(dir, 'node.key'), 'utf8');
    expectNoSecret(r.stdout + r.stderr, secret, keyPem, "the CLI's output");
    expectNoSecret(reg.logs.text(), secret, keyPem, 'the registrar log');
  });
});
