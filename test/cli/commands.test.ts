/**
 * The CLI as an operator meets it (issue 14 items 2, 3, 4, 7, 8): messages in the operator's words with
 * the admin API's limits, exit codes, `muster config check` on a fresh machine, the CA pin (`muster ca`,
 * openssl's colon hex), the documented --json shapes, `install-units --prefix`. The real compiled CLI
 * against a real registrar (--mdns off, 127.0.0.1, port 0).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { DEFAULT_CONFIG_FILE } from '../../src/common/config.js';
import { isMusterError } from '../../src/common/errors.js';
import { INSTALL_MODE_FOR_MAX_MS, TOKEN_DESCRIPTION_MAX } from '../../src/common/limits.js';
import { api } from '../helpers/registrar.js';
import { cli, filesUnder, registrarFixture, registrarState, seed } from './helpers.js';

const fx = registrarFixture({ each: 'file', prefix: 'muster-commands-', cluster: 'lab' });

beforeAll(async () => {
  await seed(fx.reg, fx.sock, { pending: 'pend-1', issued: 'node-1' });
});

const op = (args: string[], env: NodeJS.ProcessEnv = {}) => cli([...args, '--admin-socket', fx.sock], env);

describe("messages in the operator's words, with the admin API's limits", () => {
  it.each([
    [['install-mode', 'on', '--for', '0s'], /^muster: --for must be between 1s and 365d, not "0s"$/],
    [['install-mode', 'on', '--for', '366d'], /--for must be between 1s and 365d/],
    [['install-mode', 'on', '--for', '1m', '--max', '0'], /--max must be a whole number from 1 to 1,000,000/],
    [
      ['tokens', 'create', '--role', 'Bad Role'],
      /^muster: --role must be a DNS label \(a-z, 0-9 and '-'.*not "Bad Role"$/,
    ],
    [['tokens', 'create', '--ttl', '0s'], /--ttl must be between 1s and 3650d \(10 years\), or never/],
    [['tokens', 'create', '--uses', '10000001'], /--uses must be a whole number from 1 to 10,000,000/],
    [
      ['tokens', 'create', '--description', 'x'.repeat(TOKEN_DESCRIPTION_MAX + 1)],
      /--description must be at most 200 characters$/,
    ],
  ])('%j', (args, message) => {
    const r = op(args);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(message);
    expect(r.stderr).not.toMatch(/body\/|must NOT|additional properties|schema/);
  });

  it('the boundaries the CLI accepts are the ones the admin API accepts, and one past them both refuse', async () => {
    const on = op(['install-mode', 'on', '--for', '365d', '--json']);
    expect(on.code, on.stderr).toBe(0);
    expect(op(['install-mode', 'off']).code).toBe(0);
    const past = await fx.admin
      .request('POST', '/v1/admin/install-mode', { on: true, forMs: INSTALL_MODE_FOR_MAX_MS + 1000 })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isMusterError(past, 'bad_request')).toBe(true);
    const desc = op(['tokens', 'create', '--description', 'x'.repeat(TOKEN_DESCRIPTION_MAX)]);
    expect(desc.code, desc.stderr).toBe(0);
  });

  it("what the registrar refuses reaches the operator as the registrar's own message, on one line (exit 1)", () => {
    const ghost = op(['nodes', 'approve', 'ghost']);
    expect(ghost.code).toBe(1);
    expect(ghost.stderr.trim().split('\n')).toHaveLength(1);
    expect(ghost.stderr).toMatch(/no node named ghost/);
    const token = op(['tokens', 'revoke', 'abcdef0123']);
    expect(token.code).toBe(1);
    expect(token.stderr.trim().split('\n')).toHaveLength(1);
    expect(token.stderr).not.toMatch(/body\/|params\/|schema/);
  });
});

describe('exit codes as documented', () => {
  it('0 for --help and --version; 2 for a usage error; 1 for a failure with one line', () => {
    expect(cli(['--help']).code).toBe(0);
    expect(cli(['nodes', 'remove', '--help']).stdout).toMatch(/--admin-socket/);
    expect(cli(['--version']).code).toBe(0);
    expect(cli([]).code).toBe(2);
    expect(cli(['config']).code).toBe(2);
    expect(
      cli(['registrar', '--listen', '8443', '--mdns', 'off', '--state-dir', path.join(fx.dir, 'no')]).code,
    ).toBe(2);
    const down = cli(['nodes', 'list', '--admin-socket', path.join(fx.dir, 'none.sock')]);
    expect(down.code).toBe(1);
    expect(down.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^muster: cannot reach the registrar/),
    ]);
  });
});

describe('muster config check', () => {
  it.skipIf(existsSync(DEFAULT_CONFIG_FILE))(
    `on a fresh machine (no ${DEFAULT_CONFIG_FILE}) shows the settings in force from defaults and environment, with sources, exit 0`,
    () => {
      const r = cli(['config', 'check'], { MUSTER_ROLE: 'db', MUSTER_ADMIN_SOCKET: '/run/x/admin.sock' });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`${DEFAULT_CONFIG_FILE}: not found`);
      expect(r.stdout).toContain('join.role = db  (environment MUSTER_ROLE)');
      expect(r.stdout).toContain('registrar.listen = 0.0.0.0:8443  (default)');
      expect(r.stdout).toContain('join.discovery-timeout = 5s  (default)');
      expect(r.stdout).toContain('admin.admin-socket = /run/x/admin.sock  (environment MUSTER_ADMIN_SOCKET)');
      const j = JSON.parse(cli(['config', 'check', '--json']).stdout);
      expect(j).toMatchObject({ file: DEFAULT_CONFIG_FILE, found: false, ok: true });
      expect(j.settings.registrar.cluster).toEqual({ value: 'default', source: 'default' });
    },
  );

  it('validates as the commands do: a port over 65535 fails the check (exit 1) and the registrar (exit 2)', () => {
    const file = path.join(fx.dir, 'muster.json');
    writeFileSync(file, JSON.stringify({ registrar: { listen: '127.0.0.1:99999' } }));
    const check = cli(['config', 'check', file]);
    expect(check.code).toBe(1);
    expect(check.stderr).toMatch(/registrar\.listen must have a port from 0 to 65535/);
    const env = cli(['config', 'check'], { MUSTER_LISTEN: '127.0.0.1:99999' });
    expect(env.code).toBe(1);
    expect(env.stderr).toMatch(/environment MUSTER_LISTEN must have a port from 0 to 65535/);
    const start = cli([
      'registrar',
      '--config',
      file,
      '--mdns',
      'off',
      '--state-dir',
      path.join(fx.dir, 'no'),
    ]);
    expect(start.code).toBe(2);
    expect(start.stderr).toMatch(/registrar\.listen must have a port from 0 to 65535/);
    expect(filesUnder(path.join(fx.dir, 'no'))).toBeNull();
  });

  it('warns about MUSTER_* variables that no setting reads', () => {
    const r = cli(['config', 'check'], { MUSTER_LISTN: '0.0.0.0:1' });
    expect(r.stderr).toMatch(/unknown variable MUSTER_LISTN \(did you mean MUSTER_LISTEN\?\)/);
  });
});

describe('the CA pin', () => {
  it('muster ca prints the fingerprint and exactly how to pin it', () => {
    const r = op(['ca']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(fx.reg.ca);
    expect(r.stdout).toContain(`muster join --ca-fingerprint ${fx.reg.ca}`);
    expect(r.stdout).toContain(`MUSTER_CA_FINGERPRINT=${fx.reg.ca}`);
    const j = JSON.parse(op(['ca', '--json']).stdout);
    expect(j).toMatchObject({ ca: fx.reg.ca, cluster: 'lab', verified: true });
  });

  it('muster ca --url fetches it over HTTPS, unverified, and says so', () => {
    const r = cli(['ca', '--url', fx.reg.url]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(fx.reg.ca);
    expect(r.stdout).toMatch(/WITHOUT verification/);
    expect(JSON.parse(cli(['ca', '--url', fx.reg.url, '--json']).stdout)).toMatchObject({
      ca: fx.reg.ca,
      verified: false,
    });
  });

  it('--ca-fingerprint takes what openssl prints; a node pinned that way joins, a wrong pin aborts (exit 5)', async () => {
    const pem = (await api(fx.reg, 'GET', '/v1/ca')).body as string;
    const o = spawnSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], {
      input: pem,
      encoding: 'utf8',
    });
    const printed = o.stdout.trim(); // "sha256 Fingerprint=AB:CD:..." (OpenSSL 3) or "SHA256 Fingerprint=..."
    expect(printed).toMatch(/^sha256 Fingerprint=([0-9A-F]{2}:){31}[0-9A-F]{2}$/i);
    // A token without a pin, so that --ca-fingerprint alone decides (a token's own pin that differs
    // from --ca-fingerprint is a usage error of its own).
    const token = op(['tokens', 'create', '--no-pin', '--uses', '3']).stdout.trim();
    const join = (name: string, pin: string) =>
      cli(
        [
          'join',
          '--registrar',
          fx.reg.url,
          '--name',
          name,
          '--state-dir',
          path.join(fx.dir, name),
          '--mdns',
          'off',
          '--ca-fingerprint',
          pin,
        ],
        {
          MUSTER_TOKEN: token,
        },
      );
    const ok = join('pin-1', printed);
    expect(ok.code, ok.stderr).toBe(0);
    const bare = join('pin-2', printed.replace(/^.*=/, '').toLowerCase());
    expect(bare.code, bare.stderr).toBe(0);
    const hex = printed.replace(/^.*=/, '');
    const wrong = (hex.startsWith('00') ? 'FF' : '00') + hex.slice(2);
    const refused = join('pin-3', wrong);
    expect(refused.code).toBe(5);
    expect(filesUnder(path.join(fx.dir, 'pin-3')) ?? []).not.toContain('node.crt');
  });
});

describe('--json: one documented shape per kind (docs/cli-json.md)', () => {
  it('lists are {items, next}; tokens, install mode and nodes are objects with ISO 8601 times', () => {
    const nodes = JSON.parse(op(['nodes', 'list', '--json']).stdout);
    expect(Object.keys(nodes).sort()).toEqual(['items']);
    expect(nodes.items.map((n: { name: string }) => n.name).sort()).toContain('node-1');
    const page = JSON.parse(op(['nodes', 'list', '--json', '--limit', '1']).stdout);
    expect(page.items).toHaveLength(1);
    expect(page.next).toBe(page.items[0].name);
    const rest = JSON.parse(op(['nodes', 'list', '--json', '--after', page.next]).stdout);
    expect(rest.items[0].name).not.toBe(page.next);

    const created = JSON.parse(op(['tokens', 'create', '--ttl', '30d', '--json']).stdout);
    expect(created.token).toMatch(/^[a-z0-9]+\./);
    expect(created.expiresAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(created.expiresAt) - Date.parse(created.createdAt)).toBe(30 * 86_400_000);
    const never = JSON.parse(op(['tokens', 'create', '--ttl', 'never', '--json']).stdout);
    expect(never.expiresAt).toBeNull();
    const tokens = JSON.parse(op(['tokens', 'list', '--json']).stdout);
    expect(Object.keys(tokens)).toEqual(['items']);
    for (const tk of tokens.items)
      expect(tk.expiresAt === null || !Number.isNaN(Date.parse(tk.expiresAt))).toBe(true);
    expect(tokens.items.every((tk: Record<string, unknown>) => typeof tk.expiresAt !== 'number')).toBe(true);
    const revoked = JSON.parse(op(['tokens', 'revoke', created.id, '--json']).stdout);
    expect(revoked).toMatchObject({ id: created.id, state: 'revoked', expiresAt: created.expiresAt });

    const im = JSON.parse(op(['install-mode', 'on', '--for', '10m', '--json']).stdout);
    expect(im).toMatchObject({ on: true });
    expect(Date.parse(im.until) - Date.parse(im.since)).toBe(600_000);
    expect(JSON.parse(op(['install-mode', 'off', '--json']).stdout).on).toBe(false);

    const shown = JSON.parse(op(['nodes', 'show', 'node-1', '--json']).stdout);
    expect(shown).toMatchObject({ name: 'node-1', state: 'issued' });
    expect(Array.isArray(shown.history)).toBe(true);
  });

  it('events are {items, next} too; with --follow, one event a line', async () => {
    const all = JSON.parse(op(['events', '--json']).stdout);
    expect(all.items.length).toBeGreaterThan(2);
    expect(all.next).toBeUndefined();
    const first = JSON.parse(op(['events', '--json', '--limit', '2']).stdout);
    expect(first.items.map((e: { seq: number }) => e.seq)).toEqual(
      all.items.slice(0, 2).map((e: { seq: number }) => e.seq),
    );
    expect(first.next).toBe(String(first.items[1].seq));
    const rest = JSON.parse(op(['events', '--json', '--after', first.next]).stdout);
    expect(rest.items[0].seq).toBe(all.items[2].seq);
    expect(await registrarState(fx.sock)).toBeDefined();
  });
});

describe('muster install-units --prefix', () => {
  it('installs into the image tree and suggests systemctl --root=DIR enable', () => {
    const prefix = path.join(fx.dir, 'image');
    const r = cli(['install-units', '--prefix', prefix, '--binary', process.execPath, '--no-reload']);
    expect(r.code, r.stderr).toBe(0);
    expect(filesUnder(prefix)).toContain(path.join('etc', 'systemd', 'system', 'muster-join.service'));
    expect(r.stdout).toContain(`next: systemctl --root=${prefix} enable muster-registrar.service`);
    expect(r.stdout).not.toMatch(/enable --now/);
  });
});
