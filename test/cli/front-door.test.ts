/**
 * The CLI's part of the front door (issue 8, hole 6 and "smaller holes"): `muster tokens create` tells
 * the person how to join and which CA the token pins, without the secret on stderr; `--no-pin` gives a
 * two-part token and warns when it is multi-use; `muster config check` never shows a join token,
 * whether it comes from MUSTER_TOKEN or was pasted into another setting. The real compiled CLI against
 * a real registrar (--mdns off, 127.0.0.1, port 0).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { type WireToken } from '../../src/admin/client.js';
import { joinProofMac, parseToken } from '../../src/common/proof.js';
import { api, csrFor } from '../helpers/registrar.js';
import { cli, filesUnder, registrarFixture } from './helpers.js';

const fx = registrarFixture({ each: 'file', prefix: 'muster-front-door-', cluster: 'lab' });

const op = (args: string[], env: NodeJS.ProcessEnv = {}) => cli([...args, '--admin-socket', fx.sock], env);

const tokens = async (): Promise<WireToken[]> =>
  (await fx.admin.request<{ tokens: WireToken[] }>('GET', '/v1/admin/tokens')).tokens;

/** A join by token proof over HTTPS, as a node makes it: the token admits (201) or not. */
async function joinWith(token: string, name: string): Promise<number> {
  const tok = parseToken(token)!;
  const n = csrFor(name);
  const ts = Math.floor(Date.now() / 1000);
  const hmac = joinProofMac(tok.secret, { name, role: 'node', cluster: '', key: n.fp, ts });
  const r = await api(fx.reg, 'POST', '/v1/join', {
    name,
    role: 'node',
    cluster: '',
    csr: n.csr,
    proof: { id: tok.id, ts, hmac },
  });
  return r.status;
}

describe('muster tokens create prints a join line that names the CA the token pins', () => {
  it('stdout is the pinned token alone; stderr says how to join and which CA, never the secret', async () => {
    const r = op(['tokens', 'create', '--uses', '100']);
    expect(r.code, r.stderr).toBe(0);
    // `TOKEN=$(muster tokens create)` keeps working: one line, the token.
    expect(r.stdout).toMatch(/^\S+\n$/);
    const tok = parseToken(r.stdout)!;
    expect(tok).toBeDefined();
    expect(tok.ca).toBe(fx.reg.ca);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual([expect.stringMatching(/^join with: muster join --token-file FILE\b/)]);
    expect(lines[0]).toContain(`pins this registrar's CA ${fx.reg.ca}`);
    expect(r.stderr).not.toContain(tok.secret);
    expect(r.stderr).not.toMatch(/warning/);
    expect((await tokens()).map((x) => x.id)).toContain(tok.id);
    expect(await joinWith(r.stdout, 'pinned-1')).toBe(201);
  });

  it('--json has the token, the CA it pins and the join command; stderr still has no secret', () => {
    const r = op(['tokens', 'create', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ ca: fx.reg.ca, join: 'muster join --token-file FILE', warnings: [] });
    const tok = parseToken(j.token)!;
    expect(tok).toMatchObject({ id: j.id, ca: fx.reg.ca });
    expect(r.stderr).toContain(fx.reg.ca);
    expect(r.stderr).not.toContain(tok.secret);
  });
});

describe('muster tokens create --no-pin', () => {
  it.each([
    [[], 'any number of nodes'],
    [['--uses', '3'], 'up to 3 nodes'],
  ])(
    '%j: a two-part token that admits, and a warning on stderr that copies of it can back a rogue registrar',
    async (extra, admits) => {
      const r = op(['tokens', 'create', '--no-pin', ...extra]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^[a-z0-9]+\.[A-Za-z0-9_-]+\n$/);
      const tok = parseToken(r.stdout)!;
      expect(tok.ca).toBeUndefined();
      expect(r.stderr).toMatch(/^join with: muster join --token-file FILE .*it pins no CA\)$/m);
      expect(r.stderr).toMatch(
        new RegExp(
          `^muster: warning: token ${tok.id} pins no CA and admits ${admits}\\b.*stand up a registrar`,
          'm',
        ),
      );
      expect(r.stderr).not.toContain(tok.secret);
      expect(await joinWith(r.stdout, `unpinned-${tok.id}`)).toBe(201);
    },
  );

  it('a single-use token without a pin gets no warning (its first node spends it)', () => {
    const r = op(['tokens', 'create', '--no-pin', '--uses', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(parseToken(r.stdout)!.ca).toBeUndefined();
    expect(r.stderr).toMatch(/it pins no CA/);
    expect(r.stderr).not.toMatch(/warning/);
  });

  it('--json: ca is null and the warning is in warnings too', () => {
    const r = op(['tokens', 'create', '--no-pin', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.ca).toBeNull();
    expect(parseToken(j.token)!.ca).toBeUndefined();
    expect(j.warnings).toEqual([expect.stringMatching(/pins no CA and admits any number of nodes/)]);
    expect(r.stderr).toMatch(/^muster: warning: /m);
  });
});

describe('muster config check never shows a join token', () => {
  let token: string;
  let secret: string;
  beforeAll(() => {
    const r = op(['tokens', 'create']);
    expect(r.code, r.stderr).toBe(0);
    token = r.stdout.trim();
    secret = parseToken(token)!.secret;
  });
  // A config file of its own (the machine's /etc/muster/muster.json is none of these tests' business).
  const empty = (): string => {
    const f = path.join(fx.dir, 'empty.json');
    writeFileSync(f, '{}');
    return f;
  };

  it('MUSTER_TOKEN: shown as set, with its source, in --json and in text', () => {
    const env = { MUSTER_TOKEN: token };
    const j = cli(['config', 'check', empty(), '--json'], env);
    expect(j.code, j.stderr).toBe(0);
    expect(JSON.parse(j.stdout).settings.join.token).toEqual({
      value: '(secret)',
      source: 'environment MUSTER_TOKEN',
    });
    const text = cli(['config', 'check', empty()], env);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain('join.token = (secret)  (environment MUSTER_TOKEN)');
    for (const r of [j, text]) expect(r.stdout + r.stderr).not.toContain(secret);
  });

  it.each(['MUSTER_TOKEN_FILE', 'MUSTER_NAME', 'MUSTER_CA_FINGERPRINT', 'MUSTER_REGISTRAR'])(
    'a token pasted into %s is refused without being echoed (exit 1, naming the variable)',
    (variable) => {
      for (const args of [['--json'], []]) {
        const r = cli(['config', 'check', empty(), ...args], { [variable]: token });
        expect(r.stdout + r.stderr).not.toContain(secret);
        expect(r.code).toBe(1);
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(new RegExp(`^muster: environment ${variable} .*join token`));
      }
    },
  );

  it('a token inside a valid setting (a hook command) is blanked out of the report', () => {
    const env = { MUSTER_ON_REGISTERED: `curl -H 'X-Token: ${token}' https://hooks.example/up` };
    const j = cli(['config', 'check', empty(), '--json'], env);
    const text = cli(['config', 'check', empty()], env);
    for (const r of [j, text]) expect(r.stdout + r.stderr).not.toContain(secret);
    expect(j.code, j.stderr).toBe(0);
    expect(JSON.parse(j.stdout).settings.join['on-registered']).toEqual({
      value: "curl -H 'X-Token: <join token, not shown>' https://hooks.example/up",
      source: 'environment MUSTER_ON_REGISTERED',
    });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(
      "join.on-registered = curl -H 'X-Token: <join token, not shown>' https://hooks.example/up  (environment MUSTER_ON_REGISTERED)",
    );
  });

  it('a token in a config file key is not echoed either', () => {
    const file = path.join(fx.dir, 'token-in-file.json');
    writeFileSync(file, JSON.stringify({ join: { tokenFile: token } }));
    const r = cli(['config', 'check', file, '--json']);
    expect(r.stdout + r.stderr).not.toContain(secret);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/token-in-file\.json join\.tokenFile holds a join token/);
  });

  it('muster join --token-file <the token itself>: a usage error that does not echo it, nothing written', () => {
    const dir = path.join(fx.dir, 'node-token-as-file');
    const r = cli([
      'join',
      '--token-file',
      token,
      '--registrar',
      fx.reg.url,
      '--state-dir',
      dir,
      '--mdns',
      'off',
    ]);
    expect(r.stdout + r.stderr).not.toContain(secret);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^muster: --token-file holds a join token, not the name of a file/);
    expect(filesUnder(dir)).toBeNull();
  });
});
