// Groups end to end (issue 10, item 4; DESIGN "Groups"): the real CLI and a real registrar on
// 127.0.0.1 (--mdns off). A registered node is put into a group, moved with --force, refused a second
// group without it, and taken out; each time nothing runs on the node until its next contact (a
// renewal with --now, or the boot check-in of `muster join`), which writes config.json and runs
// --on-changed with MUSTER_NODE_GROUP. `nodes list --group` and `groups list` list by group.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { WireNode } from '../../src/admin/client.js';
import { cli, registrarFixture, registrarState } from './helpers.js';

const fx = registrarFixture({ each: 'file', prefix: 'muster-groups-' });

const op = (args: string[]) => cli([...args, '--admin-socket', fx.sock]);
const read = (dir: string, f: string) => readFileSync(path.join(dir, f), 'utf8');
const config = (dir: string): Record<string, string> => JSON.parse(read(dir, 'config.json'));
const record = async (name: string): Promise<WireNode> =>
  (await fx.admin.request<{ node: WireNode }>('GET', `/v1/admin/nodes/${name}`)).node;

function register(name: string): string {
  const token = op(['tokens', 'create', '--uses', '1']).stdout.trim();
  const dir = path.join(fx.dir, name);
  const r = cli(['join', '--registrar', fx.reg.url, '--name', name, '--state-dir', dir, '--mdns', 'off'], {
    MUSTER_TOKEN: token,
  });
  expect(r.code, r.stderr).toBe(0);
  return dir;
}

/**
 * An --on-changed command that records the environment it ran with; `ran()` reads it back (and
 * forgets it, so that the next contact's run is told apart), or undefined when it did not run.
 */
function hook(name: string) {
  const file = path.join(fx.dir, `${name}.env`);
  return {
    command: `env > '${file}'`,
    ran(): Record<string, string> | undefined {
      if (!existsSync(file)) return undefined;
      const env = Object.fromEntries(
        readFileSync(file, 'utf8')
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
      rmSync(file);
      return env;
    },
  };
}

describe('muster nodes group', () => {
  it('groups a registered node, which learns it at its next contact; moves need --force', async () => {
    const dir = register('grp-1');
    const h = hook('grp-1');
    expect(config(dir)).toEqual({});
    const before = await record('grp-1');

    // Grouped: one write on the registrar, nothing on the node yet (no re-registration, no restart).
    const put = op(['nodes', 'group', 'grp-1', 'web']);
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toMatch(/grp-1 put into group web; the node learns it at its next contact/);
    expect(await record('grp-1')).toMatchObject({ group: 'web', key: before.key, serial: before.serial });
    expect(config(dir)).toEqual({});

    // The next contact: a renewal (--now) writes the config and runs --on-changed with the group.
    const renewed = cli(['renew', '--state-dir', dir, '--now', '--on-changed', h.command]);
    expect(renewed.code, renewed.stderr).toBe(0);
    expect(config(dir)).toEqual({ group: 'web' });
    expect(h.ran()).toMatchObject({ MUSTER_NODE_GROUP: 'web', MUSTER_NODE_NAME: 'grp-1' });

    // A second group without --force: 409 naming the group it is in, and nothing changes anywhere.
    const state = await registrarState(fx.sock);
    const refused = op(['nodes', 'group', 'grp-1', 'db']);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/node grp-1 is in group web.*--force/);
    expect(await registrarState(fx.sock)).toEqual(state);
    expect((await record('grp-1')).group).toBe('web');

    // With --force it moves; the boot check-in (`muster join` on a registered node) sees the new group.
    const moved = op(['nodes', 'group', 'grp-1', 'db', '--force', '--json']);
    expect(moved.code, moved.stderr).toBe(0);
    expect(JSON.parse(moved.stdout)).toMatchObject({
      from: 'web',
      to: 'db',
      changed: true,
      node: { name: 'grp-1', group: 'db' },
    });
    expect(JSON.parse(moved.stdout).node).not.toHaveProperty('certificate');
    const boot = cli([
      'join',
      '--name',
      'grp-1',
      '--state-dir',
      dir,
      '--mdns',
      'off',
      '--on-changed',
      h.command,
    ]);
    expect(boot.code, boot.stderr).toBe(0);
    expect(config(dir)).toEqual({ group: 'db' });
    expect(h.ran()).toMatchObject({ MUSTER_NODE_GROUP: 'db' });

    // The same group again: nothing written, and the node's next contact finds no change.
    const events = (await registrarState(fx.sock)).events;
    const again = op(['nodes', 'group', 'grp-1', 'db']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/already in group db/);
    expect((await registrarState(fx.sock)).events).toEqual(events);
    expect(
      cli(['join', '--name', 'grp-1', '--state-dir', dir, '--mdns', 'off', '--on-changed', h.command]).code,
    ).toBe(0);
    expect(h.ran()).toBeUndefined();

    // Ungrouped: the next contact drops `group` from config.json; the hook has no MUSTER_NODE_GROUP.
    const out = op(['nodes', 'ungroup', 'grp-1']);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/grp-1 taken out of group db/);
    expect(cli(['renew', '--state-dir', dir, '--now', '--on-changed', h.command]).code).toBe(0);
    expect(config(dir)).toEqual({});
    const env = h.ran();
    expect(env).toMatchObject({ MUSTER_NODE_NAME: 'grp-1' });
    expect(env).not.toHaveProperty('MUSTER_NODE_GROUP');

    // The event log tells the story: from, to, by.
    const { events: log } = await fx.admin.request<{
      events: { type: string; name?: string; detail?: object }[];
    }>('GET', '/v1/admin/events?after=0&limit=1000');
    expect(log.filter((e) => e.type === 'group' && e.name === 'grp-1').map((e) => e.detail)).toMatchObject([
      { from: null, to: 'web' },
      { from: 'web', to: 'db' },
      { from: 'db', to: null },
    ]);
  });

  it('lists nodes by group and groups with their counts (--json)', async () => {
    for (const n of ['lst-1', 'lst-2', 'lst-3']) register(n);
    for (const [n, g] of [
      ['lst-1', 'blue'],
      ['lst-2', 'green'],
      ['lst-3', 'blue'],
    ] as const) {
      expect(op(['nodes', 'group', n, g]).code).toBe(0);
    }
    const blue = op(['nodes', 'list', '--group', 'blue', '--json']);
    expect(blue.code, blue.stderr).toBe(0);
    expect(JSON.parse(blue.stdout).items.map((n: WireNode) => [n.name, n.group])).toEqual([
      ['lst-1', 'blue'],
      ['lst-3', 'blue'],
    ]);
    const page = JSON.parse(op(['nodes', 'list', '--group', 'blue', '--limit', '1', '--json']).stdout);
    expect(page).toMatchObject({ items: [{ name: 'lst-1' }], next: 'lst-1' });
    expect(
      JSON.parse(op(['nodes', 'list', '--group', 'blue', '--state', 'pending', '--json']).stdout),
    ).toEqual({
      items: [],
    });
    const text = op(['nodes', 'list', '--group', 'green']);
    expect(text.stdout).toMatch(/lst-2/);
    expect(text.stdout).not.toMatch(/lst-1|lst-3/);

    const groups = op(['groups', 'list', '--json']);
    expect(groups.code, groups.stderr).toBe(0);
    expect(JSON.parse(groups.stdout).items).toEqual(
      expect.arrayContaining([
        { group: 'blue', count: 2 },
        { group: 'green', count: 1 },
      ]),
    );
    expect(op(['groups', 'list']).stdout).toMatch(/GROUP\s+NODES[\s\S]*blue\s+2[\s\S]*green\s+1/);
  });

  it('refuses usage errors (exit 2), an unknown node and a removed one (exit 1), changing nothing', async () => {
    register('bad-1');
    expect(op(['nodes', 'remove', 'bad-1']).code).toBe(0);
    const state = await registrarState(fx.sock);
    for (const args of [
      ['nodes', 'group', 'bad-1'],
      ['nodes', 'group', 'bad-1', 'Not_A_Label'],
      ['nodes', 'group', 'bad-1', 'x'.repeat(64)],
      ['nodes', 'group', 'bad-1', 'web', '--force=maybe'],
      ['nodes', 'ungroup'],
      ['nodes', 'list', '--group', 'UPPER'],
      ['groups', 'list', 'extra'],
    ]) {
      const r = op(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stdout).toBe('');
    }
    const unknown = op(['nodes', 'group', 'nope', 'web']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no node named nope/);
    const removed = op(['nodes', 'group', 'bad-1', 'web']);
    expect(removed.code).toBe(1);
    expect(removed.stderr).toMatch(/node bad-1 is removed/);
    expect(await registrarState(fx.sock)).toEqual(state);
  });
});
