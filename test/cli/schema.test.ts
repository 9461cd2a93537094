/**
 * One settings schema (issue 7 item 3, issue 14): every flag of every command comes from SETTINGS, and a
 * value is judged by the same parser whether it comes from a flag, a MUSTER_* variable or the config
 * file. In process: parseCommandLine parses and validates exactly as `muster` does, and runs nothing.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  caFingerprint,
  closest,
  envName,
  FILE_SECTIONS,
  fingerprintHex,
  loadConfig,
  readConfigFile,
  resolveSettings,
  SETTINGS,
  settingsOf,
  camel,
} from '../../src/common/config.js';
import { isMusterError, MusterError } from '../../src/common/errors.js';
import { COMMANDS, parseCommandLine } from '../../src/cli/cli.js';
import { EXIT, exitCodeForCommand } from '../../src/cli/exit-codes.js';
import { knownFlags } from '../../src/cli/settings.js';

const errorOf = async (fn: () => unknown): Promise<Error> => {
  try {
    await fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('no error');
};

describe('every flag comes from the schema', () => {
  it('each command takes exactly the flags of its scopes, and every scope is used', () => {
    const used = new Set<string>();
    for (const spec of COMMANDS) {
      const fromSchema = spec.scopes.flatMap((s) => Object.keys(settingsOf(s)));
      expect(new Set(fromSchema).size, `${spec.name}: a flag in two scopes`).toBe(fromSchema.length);
      expect(knownFlags(spec)).toEqual(expect.arrayContaining(fromSchema));
      spec.scopes.forEach((s) => used.add(s));
    }
    expect([...used].sort()).toEqual(Object.keys(SETTINGS).sort());
  });

  it('a command accepts each of its flags (with a valid value) and refuses the others', async () => {
    const parsed = await parseCommandLine([
      'install-mode',
      'on',
      '--for',
      '15m',
      '--max',
      '3',
      '--role',
      'db',
      '--remote',
    ]);
    expect(parsed!.values).toMatchObject({ for: 900_000, max: 3, role: 'db', remote: true, json: false });
    expect(parsed!.ctx.sources.for).toBe('--for');
    const other = await errorOf(() =>
      parseCommandLine(['install-mode', 'on', '--for', '15m', '--ttl', '1h']),
    );
    expect(other.message).toMatch(/install-mode on has no flag --ttl/);
  });

  it('a switch given a value takes true or false only (yargs would read --remote=yes as false)', async () => {
    const yes = await errorOf(() => parseCommandLine(['install-mode', 'on', '--for', '1m', '--remote=yes']));
    expect(yes.message).toMatch(/--remote is a switch: give --remote or --no-remote/);
    const on = await parseCommandLine(['install-mode', 'on', '--for', '1m', '--remote=true']);
    expect(on!.values.remote).toBe(true);
  });

  it('repeatable flags collect; other flags given twice are refused', async () => {
    const parsed = await parseCommandLine([
      'tokens',
      'create',
      '--role',
      'a',
      '--role',
      'b',
      '--ttl',
      'never',
    ]);
    expect(parsed!.values).toMatchObject({ role: ['a', 'b'], cluster: [], ttl: null });
    const twice = await errorOf(() => parseCommandLine(['install-mode', 'on', '--for', '1m', '--for', '2m']));
    expect(twice.message).toBe('--for is given more than once');
  });
});

describe('one parser per setting, whatever the source', () => {
  const bad = ['Not A Value!', '-1', 'http://x'];
  it.each(
    FILE_SECTIONS.flatMap((section) =>
      Object.keys(settingsOf(section)).map((name) => [section, name] as const),
    ),
  )('%s.%s: a refused value gets the same reason as a flag, a variable and a file key', (section, name) => {
    const s = settingsOf(section)[name]!;
    const value = bad.find((v) => {
      try {
        s.parse(v);
        return false;
      } catch {
        return true;
      }
    });
    if (value === undefined || s.kind === 'boolean') return; // takes any of these (free text)
    const reason = (fn: () => unknown, where: string): string => {
      try {
        fn();
      } catch (err) {
        const m = (err as Error).message;
        expect(m.startsWith(where), m).toBe(true);
        return m.slice(where.length);
      }
      throw new Error(`${where}: accepted ${value}`);
    };
    const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-schema-'));
    try {
      const file = path.join(dir, 'muster.json');
      const flag = reason(() => resolveSettings([section], { [name]: value }, { file }), `--${name}`);
      const env = reason(
        () => loadConfig(section, { file, env: { [envName(name)]: value } }),
        `environment ${envName(name)}`,
      );
      expect(env).toBe(flag);
      if (!s.noFile) {
        writeFileSync(file, JSON.stringify({ [section]: { [camel(name)]: value } }));
        expect(reason(() => readConfigFile(file), `${file} ${section}.${camel(name)}`)).toBe(flag);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('flags override the environment, which overrides the file; sources say which', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-schema-'));
    const file = path.join(dir, 'muster.json');
    writeFileSync(file, JSON.stringify({ join: { role: 'from-file', cluster: 'file', name: 'file-name' } }));
    const r = resolveSettings(['join'], { role: 'from-flag' }, { file, env: { MUSTER_CLUSTER: 'env' } });
    expect(r.values).toMatchObject({ role: 'from-flag', cluster: 'env', name: 'file-name', mdns: 'on' });
    expect(r.sources).toMatchObject({
      role: '--role',
      cluster: 'environment MUSTER_CLUSTER',
      name: `${file} join.name`,
      mdns: 'default',
    });
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('the CA pin in the forms operators have', () => {
  const fp = Buffer.alloc(32, 0xab).toString('base64url');
  const hex = fingerprintHex(fp);
  it.each([
    ['base64url, as muster prints it', fp],
    ['openssl 3', `sha256 Fingerprint=${hex}`],
    ['openssl 1.1', `SHA256 Fingerprint=${hex}`],
    ['colon hex, lower case', hex.toLowerCase()],
    ['plain hex', hex.replace(/:/g, '')],
    ['with spaces around', `  ${hex}\n`],
  ])('%s', (_name, input) => {
    expect(caFingerprint(input)).toBe(fp);
  });

  it('refuses what is neither', () => {
    for (const v of ['', hex.slice(0, -3), fp.slice(1), 'SHA1 Fingerprint=AB:CD', hex.replace(/:/g, '-')]) {
      expect(() => caFingerprint(v), v).toThrow(/CA's SHA-256 fingerprint/);
    }
    expect(hex).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });
});

describe('did you mean', () => {
  it.each([
    ['maxx', ['max', 'for', 'role'], 'max'],
    ['tll', ['ttl', 'uses'], 'ttl'],
    ['statedir', ['state-dir', 'name'], 'state-dir'],
    ['stateDir', ['state-dir'], 'state-dir'],
    ['listn', ['listen', 'cluster'], 'listen'],
    ['node', ['nodes', 'tokens'], 'nodes'],
    ['polcy', ['listen', 'cluster', 'mdns'], undefined],
    ['dry-run', ['admin-socket', 'json', 'name'], undefined],
  ])('%s among %j: %s', (word, candidates, expected) => {
    expect(closest(word, candidates)).toBe(expected);
  });

  it.each([
    [['node', 'list'], /^unknown command "node" \(did you mean muster nodes\?\)/],
    [
      ['tokens', 'craete'],
      /^muster tokens: unknown command "craete" \(did you mean muster tokens create\?\)/,
    ],
    [['install-mode', 'of'], /did you mean muster install-mode (on|off)\?/],
    [['nodes'], /^muster nodes needs a command: list, show, approve, reject, remove/],
  ])('%j', async (args, message) => {
    const err = await errorOf(() => parseCommandLine(args));
    expect(isMusterError(err, 'MUSTER_ERR_USAGE')).toBe(true);
    expect(err.message).toMatch(message);
  });
});

describe('exit codes', () => {
  it('usage and config errors are 2, a request the admin API finds malformed is 2, the rest 1', () => {
    expect(exitCodeForCommand(new MusterError('MUSTER_ERR_USAGE', 'x'))).toBe(EXIT.usage);
    expect(exitCodeForCommand(new MusterError('MUSTER_ERR_CONFIG', 'x'))).toBe(EXIT.usage);
    expect(exitCodeForCommand(new MusterError('bad_request', 'x'))).toBe(EXIT.usage);
    expect(exitCodeForCommand(new MusterError('not_found', 'x'))).toBe(EXIT.failure);
    expect(exitCodeForCommand(new MusterError('MUSTER_ERR_ADMIN_SOCKET', 'x'))).toBe(EXIT.failure);
    expect(exitCodeForCommand(new Error('x'))).toBe(EXIT.failure);
  });
});
