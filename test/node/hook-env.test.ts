/**
 * The `--on-registered` environment (issue 7 item 6, issue 14 item 8): its variables never collide
 * with a muster setting (every `MUSTER_<FLAG>` is one, and MUSTER_CONFIG names the config file), no
 * inherited MUSTER_* variable (the join token above all) reaches the hook, and the hook of a real
 * registration sees where each file is.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { envName, SETTINGS } from '../../src/common/config.js';
import type { Bundle } from '../../src/common/proof.js';
import { HOOK_VARIABLES, hookEnvironment } from '../../src/node/hook.js';
import { NodeFiles } from '../../src/node/node-files.js';
import { joinNode, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

const bundle = (chain: string[]): Bundle => ({
  v: 1,
  cluster: 'lab',
  node: 'web-1',
  role: 'web',
  certificate: 'CERT',
  chain,
  ca: 'CA',
  registrar: { url: 'https://r', id: 'r1' },
  config: {},
  issuedAt: '2026-01-01T00:00:00Z',
});

describe('the hook environment', () => {
  it('has no variable that is also a muster setting or the config-file variable', () => {
    const settings = new Set(['MUSTER_CONFIG']);
    for (const section of Object.values(SETTINGS))
      for (const flag of Object.keys(section)) settings.add(envName(flag));
    expect(settings.has('MUSTER_CLUSTER')).toBe(true); // the check covers the old, colliding names
    expect(HOOK_VARIABLES.filter((v) => settings.has(v))).toEqual([]);
  });

  it('drops every inherited MUSTER_* variable and says where each file is; the chain only when there is one', () => {
    const files = new NodeFiles('/var/lib/muster');
    const inherited = {
      PATH: '/usr/bin',
      HOME: '/root',
      MUSTER_TOKEN: 'abcdef.secret-secret-secret-secret-secret',
      MUSTER_CONFIG: '/etc/muster/muster.json',
      MUSTER_CLUSTER: 'lab',
      MUSTER_REGISTRAR: 'https://r:8443',
      muster_token: 'lower-case-too',
    };
    const env = hookEnvironment(inherited, files, bundle([]));
    expect(env).toEqual({
      PATH: '/usr/bin',
      HOME: '/root',
      MUSTER_NODE_NAME: 'web-1',
      MUSTER_NODE_ROLE: 'web',
      MUSTER_NODE_CLUSTER: 'lab',
      MUSTER_NODE_CERT: '/var/lib/muster/node.crt',
      MUSTER_NODE_KEY: '/var/lib/muster/node.key',
      MUSTER_NODE_CA: '/var/lib/muster/ca.crt',
      MUSTER_NODE_CONFIG_FILE: '/var/lib/muster/config.json',
      MUSTER_NODE_BUNDLE: '/var/lib/muster/bundle.json',
    });
    expect(hookEnvironment(inherited, files, bundle(['INTERMEDIATE'])).MUSTER_NODE_CHAIN).toBe(
      '/var/lib/muster/chain.pem',
    );
    // The group, from the bundle's config, only when the node is in one (DESIGN "Groups").
    expect(hookEnvironment(inherited, files, bundle([])).MUSTER_NODE_GROUP).toBeUndefined();
    expect(
      hookEnvironment(inherited, files, { ...bundle([]), config: { group: 'web', tier: 'x' } })
        .MUSTER_NODE_GROUP,
    ).toBe('web');
  });
});

describe('the hook of a real registration', () => {
  let t: ReturnType<typeof tempDir>;
  let reg: TestRegistrar;
  beforeEach(async () => {
    t = tempDir();
    reg = await startTestRegistrar(t.dir, { mdns: false });
  });
  afterEach(async () => {
    for (const k of ['MUSTER_TOKEN', 'MUSTER_CONFIG', 'MUSTER_CLUSTER']) delete process.env[k];
    await reg?.close();
    t.cleanup();
  });

  it('runs with the node files and without the token or any other MUSTER_* variable', async () => {
    const { token } = await reg.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {});
    const secret = token.split('.')[1]!;
    // What an env file for the unit would hold: the token and settings the hook must not see.
    process.env.MUSTER_TOKEN = token;
    process.env.MUSTER_CONFIG = path.join(t.dir, 'muster.json');
    process.env.MUSTER_CLUSTER = 'elsewhere';
    const dir = path.join(t.dir, 'node');
    const out = path.join(t.dir, 'hook.env');
    await joinNode(reg, dir, { token, onRegistered: `env > '${out}'` });
    const env = Object.fromEntries(
      readFileSync(out, 'utf8')
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(
      Object.keys(env)
        .filter((k) => k.startsWith('MUSTER_'))
        .sort(),
    ).toEqual(HOOK_VARIABLES.filter((v) => v !== 'MUSTER_NODE_CHAIN' && v !== 'MUSTER_NODE_GROUP').sort());
    expect(env).toMatchObject({
      MUSTER_NODE_NAME: 'node-1',
      MUSTER_NODE_ROLE: 'worker',
      MUSTER_NODE_CLUSTER: 'test',
      MUSTER_NODE_CERT: path.join(dir, 'node.crt'),
      MUSTER_NODE_KEY: path.join(dir, 'node.key'),
      MUSTER_NODE_CA: path.join(dir, 'ca.crt'),
      MUSTER_NODE_CONFIG_FILE: path.join(dir, 'config.json'),
      MUSTER_NODE_BUNDLE: path.join(dir, 'bundle.json'),
    });
    for (const f of [
      'MUSTER_NODE_CERT',
      'MUSTER_NODE_KEY',
      'MUSTER_NODE_CA',
      'MUSTER_NODE_CONFIG_FILE',
      'MUSTER_NODE_BUNDLE',
    ]) {
      expect(existsSync(env[f]!), f).toBe(true);
    }
    expect(readFileSync(out, 'utf8')).not.toContain(secret);
  });
});
