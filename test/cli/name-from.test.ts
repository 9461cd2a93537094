// `muster join --name-from` end to end (issue 9, item 7): the real CLI against a real registrar on
// 127.0.0.1 (--mdns off). `key` registers as <host>-<6 chars of the key fingerprint>, with the key
// made first; --name wins over --name-from.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { keyFingerprint } from '../../src/common/x509.js';
import { deriveNodeName } from '../../src/node/node-name.js';
import { cli, registrarFixture } from './helpers.js';

const fx = registrarFixture({ each: 'file', prefix: 'muster-name-from-' });
const op = (args: string[]) => cli([...args, '--admin-socket', fx.sock]);

function join(dir: string, extra: string[]) {
  const token = op(['tokens', 'create', '--uses', '1']).stdout.trim();
  return cli(['join', '--registrar', fx.reg.url, '--state-dir', dir, '--mdns', 'off', ...extra], {
    MUSTER_TOKEN: token,
  });
}

const names = (): string[] =>
  (JSON.parse(op(['nodes', 'list', '--json']).stdout) as { items: { name: string }[] }).items.map(
    (n) => n.name,
  );

describe('muster join --name-from', () => {
  it('key: registers as <host>-<6 chars of the fingerprint of the key it made>; run again, the same name', () => {
    const dir = path.join(fx.dir, 'by-key');
    const r = join(dir, ['--name-from', 'key']);
    expect(r.code, r.stderr).toBe(0);
    const key = createPrivateKey(readFileSync(path.join(dir, 'node.key'), 'utf8'));
    const want = deriveNodeName('key', {
      host: os.hostname(),
      keyFingerprint: keyFingerprint(createPublicKey(key)),
    });
    expect(want).toMatch(/-[a-z0-9]{6}$/);
    expect(r.stdout).toContain(`registered ${want}:`);
    expect(JSON.parse(readFileSync(path.join(dir, 'bundle.json'), 'utf8')).node).toBe(want);
    expect(names()).toContain(want);
    const again = cli(['join', '--state-dir', dir, '--mdns', 'off', '--name-from', 'key']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`already registered as ${want}`);
  });

  it('--name wins over --name-from', () => {
    const dir = path.join(fx.dir, 'named');
    const r = join(dir, ['--name-from', 'key', '--name', 'given-name']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(path.join(dir, 'bundle.json'), 'utf8')).node).toBe('given-name');
  });

  it('an unknown --name-from is a usage error (exit 2) that makes nothing', () => {
    const dir = path.join(fx.dir, 'bad');
    const r = join(dir, ['--name-from', 'serial']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--name-from must be hostname, machine-id or key/);
    expect(() => readFileSync(path.join(dir, 'node.key'))).toThrow();
  });
});
