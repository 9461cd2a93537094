/**
 * The boot check-in of a registered node (issue 9, items 4 and 5): `muster join` on a node that is
 * already registered makes one signed `wait=0` poll to the registrar of its bundle. A changed
 * `--node-config` is written to config.json (and --on-changed runs), lastSeen moves, a removed node
 * exits 3 with its files untouched, and a registrar that is down or silent is only a warning (exit 0).
 * Real registrars on 127.0.0.1 (mDNS off); the real CLI where the exit code is the point.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { freePort, musterAsync } from '../helpers/cli.js';
import { joinNode, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar | undefined;
let port: number;
let dir: string;

beforeEach(async () => {
  t = tempDir('muster-checkin-');
  port = await freePort();
  dir = path.join(t.dir, 'node');
});
afterEach(async () => {
  await reg?.close();
  reg = undefined;
  t.cleanup();
});

const start = (config: Record<string, string>, clock?: ManualClock) =>
  startTestRegistrar(t.dir, {
    mdns: false,
    listen: `127.0.0.1:${port}`,
    nodeConfig: { '*': config },
    ...(clock ? { clock } : {}),
  });

/** A node registered with a registrar whose node config is `config`. */
async function registered(config: Record<string, string>, clock?: ManualClock): Promise<void> {
  reg = await start(config, clock);
  const { token } = await reg.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {});
  const r = await joinNode(reg, dir, { token, ...(clock ? { clock } : {}) });
  expect(r.status).toBe('registered');
  expect(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'))).toEqual(config);
}

function snapshot(d: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(d))
    out[f] = `${statSync(path.join(d, f)).mtimeMs}:${readFileSync(path.join(d, f), 'utf8')}`;
  return out;
}

const joinArgs = (...more: string[]) => [
  'join',
  '--name',
  'node-1',
  '--role',
  'worker',
  '--state-dir',
  dir,
  '--mdns',
  'off',
  ...more,
];

describe('the boot check-in of a registered node', () => {
  it('picks up a changed --node-config: config.json rewritten, --on-changed run once, lastSeen updated, nothing else written', async () => {
    // Registered two minutes ago (lastSeen is written at most once a minute per node)...
    await registered({ ntp: 'a.example' }, new ManualClock(Date.now() - 120_000));
    const before = snapshot(dir);
    await reg!.close();
    // ...then the operator restarts the registrar with another --node-config on the same state dir.
    const clock = new ManualClock(Date.now());
    reg = await start({ ntp: 'b.example' }, clock);
    const marker = path.join(t.dir, 'changed');
    const onChanged = `printf '%s\\n' "$MUSTER_NODE_CONFIG_FILE" >> '${marker}'`;

    const r = await joinNode(reg, dir, { clock, onChanged });
    expect(r.status).toBe('already-registered');
    expect(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'))).toEqual({ ntp: 'b.example' });
    expect(readFileSync(marker, 'utf8')).toBe(`${path.join(dir, 'config.json')}\n`);
    const after = snapshot(dir);
    for (const f of Object.keys(before)) if (f !== 'config.json') expect(after[f], f).toBe(before[f]);
    expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());
    const shown = await reg.admin.request<{ node: { lastSeen: string } }>('GET', '/v1/admin/nodes/node-1');
    expect(shown.node.lastSeen).toBe(new Date(clock.now()).toISOString());

    // Unchanged since: nothing is written and the command does not run again.
    const again = snapshot(dir);
    await joinNode(reg, dir, { clock, onChanged });
    expect(snapshot(dir)).toEqual(again);
    expect(readFileSync(marker, 'utf8').split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('a failing --on-changed command is the hook exit (6), after config.json was written', async () => {
    await registered({ ntp: 'a.example' });
    await reg!.close();
    reg = await start({ ntp: 'b.example' });
    const r = await musterAsync(joinArgs('--on-changed', 'exit 9'));
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr).toContain('--on-changed command exited with 9');
    expect(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'))).toEqual({ ntp: 'b.example' });
  });

  it('a removed node exits 3 (its unit does not retry) and keeps its files', async () => {
    await registered({ ntp: 'a.example' });
    await reg!.admin.request('POST', '/v1/admin/nodes/node-1/remove', {});
    const before = snapshot(dir);
    const marker = path.join(t.dir, 'changed');
    const r = await musterAsync(joinArgs('--on-changed', `touch '${marker}'`));
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout).not.toContain('already registered');
    expect(r.stderr).toContain('removed this node');
    expect(snapshot(dir)).toEqual(before);
    expect(existsSync(marker)).toBe(false);
  });

  it('a registrar that is down is a warning: exit 0, already registered, nothing written', async () => {
    await registered({ ntp: 'a.example' });
    await reg!.close();
    reg = undefined;
    const before = snapshot(dir);
    const r = await musterAsync(joinArgs());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('already registered as node-1');
    expect(r.stderr).toContain('boot check-in failed');
    expect(snapshot(dir)).toEqual(before);
  });

  // A server that takes the connection and never answers: the check-in gives up after its 5 s cap
  // (the test's own 10 s timeout is the bound the boot job relies on).
  it('a registrar that never answers is a warning after the cap: exit 0', { timeout: 10_000 }, async () => {
    await registered({ ntp: 'a.example' });
    await reg!.close();
    reg = undefined;
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve));
    try {
      const before = snapshot(dir);
      const r = await musterAsync(joinArgs());
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('already registered as node-1');
      expect(r.stderr).toContain('no answer within 5000 ms');
      expect(sockets.length).toBeGreaterThan(0);
      expect(snapshot(dir)).toEqual(before);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
