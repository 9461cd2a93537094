/** Settings: one schema for file, environment and flags; errors name the key and its source. */
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { configFileFrom, envName, loadConfig, readConfigFile } from '../../src/common/config.js';
import { isMusterError } from '../../src/common/errors.js';
import { muster } from '../helpers/cli.js';
import { tempDir } from '../helpers/registrar.js';

function file(content: unknown): { file: string; cleanup: () => void } {
  const t = tempDir();
  const f = path.join(t.dir, 'muster.json');
  writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
  return { file: f, cleanup: t.cleanup };
}

const errorOf = (fn: () => unknown): Error => {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('no error');
};

describe('config schema', () => {
  it('reads a section, with the file key as the source, frozen', () => {
    const f = file({
      join: { registrar: 'https://10.0.0.1:8443', discoveryTimeout: '3s', cluster: '' },
      registrar: { rateLimit: 50 },
    });
    const c = loadConfig('join', { file: f.file, env: {} });
    expect(c.values).toEqual({ registrar: 'https://10.0.0.1:8443', 'discovery-timeout': 3000, cluster: '' });
    expect(c.raw['discovery-timeout']).toBe('3s');
    expect(c.sources['discovery-timeout']).toBe(`${f.file} join.discoveryTimeout`);
    expect(Object.isFrozen(c.values)).toBe(true);
    expect(loadConfig('registrar', { file: f.file, env: {} }).values).toEqual({ 'rate-limit': 50 });
    f.cleanup();
  });

  it('the environment overrides the file and names the variable', () => {
    const f = file({ join: { cluster: 'a' } });
    const c = loadConfig('join', { file: f.file, env: { MUSTER_CLUSTER: 'b', MUSTER_TOKEN: 'x.y' } });
    expect(c.values).toMatchObject({ cluster: 'b', token: 'x.y' });
    expect(c.sources.cluster).toBe('environment MUSTER_CLUSTER');
    f.cleanup();
  });

  it.each([
    [
      { join: { discoveryTimeout: '5x' } },
      /join\.discoveryTimeout must be a duration such as 90s.*, not "5x"/,
    ],
    [{ join: { clustr: 'a' } }, /join\.clustr: unknown setting/],
    [{ join: { token: 'a.b' } }, /join\.token: a join token does not belong/],
    [
      { registrar: { autoregister: 'sometimes' } },
      /registrar\.autoregister must be local, any or off, not "sometimes"/,
    ],
    [
      { registrar: { rateLimit: 0 } },
      /registrar\.rateLimit must be a whole number from 1 to 1,000,000, not 0/,
    ],
    [
      { registrar: { interface: 'eth0' } },
      /registrar\.interface must be an IPv4 address such as 10\.0\.0\.1, not "eth0"/,
    ],
    [{ registrar: { listen: '127.0.0.1:99999' } }, /registrar\.listen must have a port from 0 to 65535/],
    [{ join: { registrar: 'http://10.0.0.1:8443' } }, /join\.registrar must be an https:\/\/ URL/],
    [{ join: { clustr: 'a' } }, /did you mean cluster\?/],
    [{ nodes: {} }, /unknown section "nodes"/],
    ['{ not json', /not valid JSON/],
    [[1, 2], /expected a JSON object/],
  ])('refuses %j naming the key and the file', (content, msg) => {
    const f = file(content);
    const err = errorOf(() => readConfigFile(f.file));
    expect(isMusterError(err, 'MUSTER_ERR_CONFIG')).toBe(true);
    expect(err.message).toContain(f.file);
    expect(err.message).toMatch(msg);
    f.cleanup();
  });

  it('a bad variable names the variable', () => {
    const err = errorOf(() =>
      loadConfig('join', { file: '/nonexistent/muster.json', env: { MUSTER_MDNS: 'maybe' } }),
    );
    expect(err.message).toMatch(/^environment MUSTER_MDNS must be on or off, not "maybe"/);
  });

  it('a missing default file is fine; a missing explicit one is an error', () => {
    expect(loadConfig('admin', { file: '/nonexistent/muster.json', env: {} }).values).toEqual({});
    expect(
      errorOf(() => loadConfig('admin', { file: '/nonexistent/muster.json', explicitFile: true, env: {} }))
        .message,
    ).toMatch(/cannot read it/);
  });

  it('finds --config and MUSTER_CONFIG; names variables from flags', () => {
    expect(configFileFrom(['join', '--config', '/x.json'], {})).toEqual({ file: '/x.json', explicit: true });
    expect(configFileFrom(['join', '--config=/y.json'], {})).toEqual({ file: '/y.json', explicit: true });
    expect(configFileFrom(['join'], { MUSTER_CONFIG: '/z.json' })).toEqual({
      file: '/z.json',
      explicit: true,
    });
    expect(configFileFrom(['join'], {})).toEqual({ explicit: false });
    expect(envName('ca-fingerprint')).toBe('MUSTER_CA_FINGERPRINT');
  });
});

describe('muster config check, and settings reaching commands', () => {
  it('exits 0 on a good file and lists the settings with their sources', () => {
    const f = file({ join: { registrar: 'https://10.0.0.1:8443' } });
    const r = muster(['config', 'check', f.file], { MUSTER_ROLE: 'db' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('join.registrar = https://10.0.0.1:8443');
    expect(r.stdout).toContain('join.role = db  (environment MUSTER_ROLE)');
    f.cleanup();
  });

  it('exits 1 with one line naming the key on a bad file', () => {
    const f = file({ join: { mdns: 'sometimes' } });
    const r = muster(['config', 'check', f.file]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('join.mdns');
    f.cleanup();
  });

  it('a command refuses a bad setting with exit 2 before doing anything', () => {
    const f = file({ join: { discoveryTimeout: 'soon' } });
    const r = muster(['join', '--config', f.file, '--mdns', 'off']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('join.discoveryTimeout');
    // The whole file is validated, whichever command reads it.
    const e = muster(['nodes', 'list'], { MUSTER_CONFIG: f.file });
    expect(e.code).toBe(2);
    expect(e.stderr).toContain('join.discoveryTimeout');
    f.cleanup();
  });

  it('a flag overrides the file', () => {
    const t = tempDir();
    const f = file({ admin: { adminSocket: path.join(t.dir, 'from-file.sock') } });
    const fromFile = muster(['nodes', 'list', '--config', f.file]);
    expect(fromFile.stderr).toContain('from-file.sock');
    const fromFlag = muster([
      'nodes',
      'list',
      '--config',
      f.file,
      '--admin-socket',
      path.join(t.dir, 'flag.sock'),
    ]);
    expect(fromFlag.stderr).toContain('flag.sock');
    f.cleanup();
    t.cleanup();
  });
});

describe('empty variables', () => {
  it('an empty MUSTER_CLUSTER means "any cluster" for a node and is unset for the registrar', () => {
    expect(
      loadConfig('join', { file: '/nonexistent/muster.json', env: { MUSTER_CLUSTER: '' } }).values,
    ).toEqual({ cluster: '' });
    expect(
      loadConfig('registrar', {
        file: '/nonexistent/muster.json',
        env: { MUSTER_CLUSTER: '', MUSTER_LISTEN: '' },
      }).values,
    ).toEqual({});
  });
});
