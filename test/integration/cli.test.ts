/**
 * The README flow with real processes of the real CLI: a registrar, a token, `muster join`,
 * `openssl verify`, a second join; operator commands and their exit codes; SIGTERM.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { muster, musterAsync } from '../helpers/cli.js';
import { opensslVerify } from '../helpers/registrar.js';
import { filesUnder, registrarFixture, registrarState } from '../cli/helpers.js';

const fx = registrarFixture({ each: 'test', cluster: 'lab' });

/** `muster join` against the test registrar, mDNS off: the node's name and its state in <dir>/<stateDir>. */
const join = (name: string, stateDir: string, flags: string[] = [], env: NodeJS.ProcessEnv = {}) =>
  musterAsync(
    [
      'join',
      '--registrar',
      fx.reg.url,
      '--name',
      name,
      ...flags,
      '--state-dir',
      path.join(fx.dir, stateDir),
      '--mdns',
      'off',
    ],
    env,
  );

describe('muster CLI', () => {
  it('registrar + token + join: openssl verifies the certificate, a second join exits 0 and keeps it', async () => {
    const tok = muster(['tokens', 'create', '--admin-socket', fx.sock, '--ttl', '1h']);
    expect(tok.code).toBe(0);
    const token = tok.stdout.trim();
    expect(token).toMatch(/^[a-z0-9]+\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]{43})?$/); // the token alone on stdout, for $(...)
    writeFileSync(path.join(fx.dir, 'token'), token + '\n', { mode: 0o600 });

    const node = path.join(fx.dir, 'node');
    const hookOut = path.join(fx.dir, 'hook.out');
    const j1 = await join('web-1', 'node', [
      '--token-file',
      path.join(fx.dir, 'token'),
      '--role',
      'web',
      '--cluster',
      'lab',
      '--on-registered',
      `echo "$MUSTER_NODE_NAME $MUSTER_NODE_CLUSTER" > ${hookOut}`,
    ]);
    expect(j1.code, j1.stderr).toBe(0);
    expect(j1.stdout).toContain('registered web-1');
    expect(opensslVerify(path.join(node, 'ca.crt'), path.join(node, 'node.crt'))).toMatchObject({ ok: true });
    expect(readFileSync(hookOut, 'utf8').trim()).toBe('web-1 lab');
    expect(statSync(path.join(node, 'node.key')).mode & 0o777).toBe(0o600);
    expect(statSync(fx.sock).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(fx.dir, 'reg', 'ca', 'ca.key')).mode & 0o777).toBe(0o600);
    expect(j1.stderr + fx.reg.output()).not.toContain(token.split('.')[1]);
    const cert = readFileSync(path.join(node, 'node.crt'), 'utf8');

    const j2 = await join('web-1', 'node', ['--role', 'web']);
    expect(j2.code).toBe(0);
    expect(j2.stdout).toContain('already registered');
    expect(readFileSync(path.join(node, 'node.crt'), 'utf8')).toBe(cert);

    const list = muster(['nodes', 'list', '--json', '--admin-socket', fx.sock]);
    expect(list.code).toBe(0);
    const nodes = JSON.parse(list.stdout).items;
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({ name: 'web-1', state: 'active', role: 'web' });
    const show = muster(['nodes', 'show', 'web-1', '--admin-socket', fx.sock]);
    expect(show.stdout).toMatch(/decision:\s+token: join token/);
    const events = muster(['events', '--json', '--admin-socket', fx.sock]);
    expect(JSON.parse(events.stdout).items.map((e: { type: string }) => e.type)).toEqual([
      'token',
      'accepted',
      'issued',
      'active',
    ]);
  });

  it('install mode on/status/off and approvals from the command line', async () => {
    expect(
      muster(['install-mode', 'on', '--for', '10m', '--max', '1', '--admin-socket', fx.sock]).stdout,
    ).toMatch(/install mode on for/);
    const st = muster(['install-mode', 'status', '--json', '--admin-socket', fx.sock]);
    expect(JSON.parse(st.stdout)).toMatchObject({ on: true, max: 1 });
    const a = await join('a', 'a');
    expect(a.code, a.stderr).toBe(0);
    expect(
      JSON.parse(muster(['install-mode', 'status', '--json', '--admin-socket', fx.sock]).stdout).on,
    ).toBe(false);

    // Next node waits; the operator approves it from another shell.
    const b = join('b', 'b');
    let pending = '';
    for (let i = 0; i < 100 && !pending.includes('"b"'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      pending = muster(['nodes', 'list', '--state', 'pending', '--json', '--admin-socket', fx.sock]).stdout;
    }
    expect(JSON.parse(pending).items[0]).toMatchObject({ name: 'b', state: 'pending' });
    const ap = muster(['nodes', 'approve', 'b', '--admin-socket', fx.sock]);
    expect(ap.code).toBe(0);
    expect(ap.stdout).toMatch(/approved b \(key [A-Za-z0-9_-]{43}\)/);
    const joined = await b;
    expect(joined.code, joined.stderr).toBe(0);
    expect(muster(['install-mode', 'off', '--admin-socket', fx.sock]).code).toBe(0);
  });

  it('usage errors exit 2 and change nothing; failures exit 1 with one line on stderr', async () => {
    const before = await registrarState(fx.sock);
    const bad = muster(['nodes', 'frobnicate', '--admin-socket', fx.sock]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown command "frobnicate"/);
    const badDur = muster(['install-mode', 'on', '--for', 'soon', '--admin-socket', fx.sock]);
    expect(badDur.code).toBe(2);
    expect(badDur.stderr).toMatch(/--for must be a duration such as 90s.*, not "soon"/);
    const typo = muster(['install-mode', 'on', '--for', '15m', '--maxx', '3', '--admin-socket', fx.sock]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/--maxx \(did you mean --max\?\)/);
    const node = path.join(fx.dir, 'bad-name');
    const badName = muster([
      'join',
      '--registrar',
      fx.reg.url,
      '--name',
      'Bad_Name',
      '--mdns',
      'off',
      '--state-dir',
      node,
    ]);
    expect(badName.code).toBe(2);
    expect(badName.stderr).toContain('--name must be a DNS label');
    expect(filesUnder(node)).toBeNull(); // no key was made
    expect(await registrarState(fx.sock)).toEqual(before); // install mode still off, no node, no event

    const missing = muster(['nodes', 'approve', 'ghost', '--admin-socket', fx.sock]);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toContain('no node named ghost');
    const noSock = muster(['nodes', 'list', '--admin-socket', path.join(fx.dir, 'nope.sock')]);
    expect(noSock.code).toBe(1);
    expect(noSock.stderr).toMatch(/is the registrar running/);
  });

  it('a name held by another key exits 4; after removal the new key joins and the old one is refused (exit 3)', async () => {
    const token = muster(['tokens', 'create', '--admin-socket', fx.sock]).stdout.trim();
    const env = { MUSTER_TOKEN: token };
    const j = await join('x', 'x1', [], env);
    expect(j.code, j.stderr).toBe(0);
    const clone = await join('x', 'x2', [], env);
    expect(clone.code).toBe(4);
    expect(clone.stderr).toMatch(/held by key/);
    expect(muster(['nodes', 'remove', 'x', '--admin-socket', fx.sock]).code).toBe(0);
    const again = await join('x', 'x2', [], env);
    expect(again.code, again.stderr).toBe(0); // the clone's key now holds the name
    // The removed machine, asked to join again with its old key, is told it is taken (409 -> 4) ...
    rmSync(path.join(fx.dir, 'x1', 'bundle.json'));
    const old = await join('x', 'x1', [], env);
    expect(old.code).toBe(4);
    // ... and once the name is free again, its removed key stays refused (410 -> 3).
    expect(muster(['nodes', 'remove', 'x', '--admin-socket', fx.sock]).code).toBe(0);
    const refused = await join('x', 'x2', [], env);
    // x2 still holds valid local files: its boot check-in hears 410 (issue 9, item 4), exit 3
    expect(refused.code, refused.stderr).toBe(3);
    expect(refused.stderr).toMatch(/removed this node/);
    rmSync(path.join(fx.dir, 'x2', 'bundle.json'));
    const refused2 = await join('x', 'x2', [], env);
    expect(refused2.code).toBe(3);
    expect(refused2.stderr).toMatch(/removed by the operator/);
  });

  it("a pinned CA fingerprint that begins with '-' is read as the pin, not as flags", async () => {
    const pin = '-' + 'A'.repeat(42);
    const r = await join('p', 'p', ['--ca-fingerprint', pin]);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain(`not the pinned ${pin}`);
    const empty = muster(['join', '--registrar', fx.reg.url, '--ca-fingerprint', '--mdns', 'off']);
    expect(empty.code).toBe(2); // never silently unpinned
  });

  it('SIGTERM stops the registrar cleanly (exit 0) and removes its admin socket', async () => {
    const r = await fx.reg.stop('SIGTERM');
    expect(r.code).toBe(0);
    expect(() => statSync(fx.sock)).toThrow();
  });
});
