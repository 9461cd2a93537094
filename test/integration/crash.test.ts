/**
 * Exactly once through a SIGKILL (DESIGN "Exactly once"): the registrar dies right after a durable
 * issue (before the answer: a token join lands acceptance and issue as one batch), or, for an
 * operator's approval, between the durable acceptance and the issue; restarted on the same store it
 * is consistent, no serial is reused, and the waiting node completes.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { LevelRegistry } from '../../src/store/level.js';
import { freePort, muster, musterAsync, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { opensslVerify, tempDir } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let reg: SpawnedRegistrar | undefined;
let sock: string;
let port: number;

const regArgs = (): string[] => ['--state-dir', path.join(t.dir, 'reg'), '--listen', `127.0.0.1:${port}`, '--admin-socket', sock];

beforeEach(async () => {
  t = tempDir();
  sock = path.join(t.dir, 'admin.sock');
  port = await freePort();
});
afterEach(async () => {
  await reg?.stop('SIGKILL');
  t.cleanup();
});

async function inspect(): Promise<{ state?: string; serial?: string; events: { type: string; name?: string }[]; serials: number }> {
  const r = await LevelRegistry.open(path.join(t.dir, 'reg', 'registry'));
  try {
    const node = await r.getNode('n1');
    const events = await r.listEvents(0, 1000);
    const serials = (await r.listSerials()).length;
    return { ...(node ? { state: node.state, serial: node.serial ?? '' } : {}), events, serials };
  } finally {
    await r.close();
  }
}

describe.each(['after-issue'])('registrar SIGKILLed %s a token join', (fault) => {
  it('restarts consistent and the node still completes, with one certificate', async () => {
    // Set-up run: create the token, then restart with the fault armed.
    reg = await spawnRegistrar(regArgs());
    const token = muster(['tokens', 'create', '--admin-socket', sock]).stdout.trim();
    await reg.stop('SIGTERM');
    reg = await spawnRegistrar(regArgs(), { MUSTER_TEST_FAULT: fault });

    const nodeDir = path.join(t.dir, 'node');
    const joining = musterAsync(['join', '--registrar', `https://127.0.0.1:${port}`, '--name', 'n1', '--state-dir', nodeDir, '--mdns', 'off'], {
      MUSTER_TOKEN: token,
    });
    const died = await reg.exited;
    expect(died.signal).toBe('SIGKILL');
    reg = undefined;

    const atCrash = await inspect();
    expect(atCrash.state).toBe('issued');
    expect(atCrash.events.filter((e) => e.type === 'issued')).toHaveLength(1);
    expect(atCrash.events.filter((e) => e.type === 'accepted')).toHaveLength(1);

    reg = await spawnRegistrar(regArgs());
    const j = await joining;
    expect(j.code, j.stderr).toBe(0);
    expect(opensslVerify(path.join(nodeDir, 'ca.crt'), path.join(nodeDir, 'node.crt')).ok).toBe(true);

    const list = JSON.parse(muster(['nodes', 'list', '--json', '--admin-socket', sock]).stdout);
    expect(list.items).toHaveLength(1);
    expect(list.items[0].state).toBe('active');
    expect(list.items[0].serial).toBe(atCrash.serial); // the durable certificate, not a second one
    const events = JSON.parse(muster(['events', '--json', '--admin-socket', sock]).stdout).items as { type: string }[];
    const types = events.map((e) => e.type);
    expect(types.filter((x) => x === 'accepted')).toHaveLength(1);
    expect(types.filter((x) => x === 'issued')).toHaveLength(1);
    const tokens = JSON.parse(muster(['tokens', 'list', '--json', '--admin-socket', sock]).stdout);
    expect(tokens.items[0].used).toBe(1); // the acceptance consumed the token once
    await reg.stop('SIGTERM');
    reg = undefined;
    expect((await inspect()).serials).toBe(1);
  });
});

it('an approval interrupted by a SIGKILL completes after the restart; serials are never reused', async () => {
  reg = await spawnRegistrar(regArgs(), { MUSTER_TEST_FAULT: 'after-accept' });
  const nodeDir = path.join(t.dir, 'node');
  const joining = musterAsync(['join', '--registrar', `https://127.0.0.1:${port}`, '--name', 'n1', '--state-dir', nodeDir, '--mdns', 'off']);
  for (let i = 0; i < 100; i++) {
    const p = muster(['nodes', 'list', '--state', 'pending', '--json', '--admin-socket', sock]);
    if (p.code === 0 && JSON.parse(p.stdout).items.length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const ap = muster(['nodes', 'approve', 'n1', '--admin-socket', sock]);
  expect(ap.code).toBe(1); // the registrar died while answering
  expect((await reg.exited).signal).toBe('SIGKILL');
  expect((await inspect()).state).toBe('accepted');

  reg = await spawnRegistrar(regArgs());
  const j = await joining;
  expect(j.code, j.stderr).toBe(0);
  const shown = muster(['nodes', 'show', 'n1', '--json', '--admin-socket', sock]);
  const node = JSON.parse(shown.stdout);
  expect(node.decision.rule).toBe('approval');

  // A second node after the restart gets a higher serial counter than anything before the crash.
  const token = muster(['tokens', 'create', '--admin-socket', sock]).stdout.trim();
  const j2 = await musterAsync(['join', '--registrar', `https://127.0.0.1:${port}`, '--name', 'n2', '--state-dir', path.join(t.dir, 'n2'), '--mdns', 'off'], {
    MUSTER_TOKEN: token,
  });
  expect(j2.code, j2.stderr).toBe(0);
  await reg.stop('SIGTERM');
  reg = undefined;
  const r = await LevelRegistry.open(path.join(t.dir, 'reg', 'registry'));
  const serials = await r.listSerials();
  await r.close();
  expect(serials.map((s) => s.name)).toEqual(['n1', 'n2']);
  expect(new Set(serials.map((s) => s.serial)).size).toBe(2);
});
