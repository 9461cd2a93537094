// Groups (DESIGN "Groups", issue 10 item 4) on the exactly-once core: ManualClock, memory store.
import { afterEach, describe, expect, it } from 'vitest';
import { code, core, FAR, node, storeState, type Core } from './harness.js';

let c: Core;
afterEach(async () => c?.close());

/** Registers `name` with a token: an issued node and the node's side of it. */
async function registered(name: string) {
  const n = node(name);
  const out = await c.svc.join(n.request({ token: await c.token(), clock: c.clock }), FAR);
  expect(out.status).toBe(201);
  return n;
}

/** What the node hears at its next contact: the config of the bundle its (wait=0) poll answers. */
async function nextContactConfig(n: ReturnType<typeof node>): Promise<Record<string, string>> {
  const out = await c.svc.poll(n.name, n.fp, 0, n.pollProof(c.clock));
  expect(out.status).toBe(200);
  return (out as { bundle: { config: Record<string, string> } }).bundle.config;
}

const groupEvents = async () =>
  (await c.registry.listEvents(0, 1000))
    .filter((e) => e.type === 'group')
    .map((e) => ({ name: e.name, ...e.detail }));

describe('groups', () => {
  it('puts a registered node into a group with an event; the node hears it at its next contact', async () => {
    c = await core();
    const n = await registered('n1');
    const before = (await c.registry.getNode('n1'))!;
    expect(await nextContactConfig(n)).toEqual({});

    const r = await c.svc.operator.groups.set('n1', 'web', { force: false }, 'alice');
    expect(r).toMatchObject({ from: null, to: 'web', changed: true, node: { group: 'web' } });
    const after = (await c.registry.getNode('n1'))!;
    // One compare-and-set write of the group alone: same key, certificate and state.
    expect(after).toEqual({ ...before, group: 'web', rev: before.rev + 1 });
    expect(await groupEvents()).toEqual([{ name: 'n1', from: null, to: 'web', by: 'alice' }]);
    expect(await nextContactConfig(n)).toEqual({ group: 'web' });
    expect(await c.registry.listGroups()).toEqual([{ group: 'web', count: 1 }]);
    expect((await c.svc.operator.listNodes({ group: 'web', limit: 10 })).map((x) => x.name)).toEqual(['n1']);
  });

  it('the same group again is no change: nothing written', async () => {
    c = await core();
    await registered('n1');
    await c.svc.operator.groups.set('n1', 'web', { force: false }, 'alice');
    const before = await storeState(c.registry);
    const r = await c.svc.operator.groups.set('n1', 'web', { force: false }, 'bob');
    expect(r).toMatchObject({ from: 'web', to: 'web', changed: false });
    expect(await storeState(c.registry)).toEqual(before);
  });

  it('a second group is group_conflict naming the first, and writes nothing; --force moves it', async () => {
    c = await core();
    const n = await registered('n1');
    await c.svc.operator.groups.set('n1', 'web', { force: false }, 'alice');
    const before = await storeState(c.registry);
    const refused = c.svc.operator.groups.set('n1', 'db', { force: false }, 'bob');
    await expect(refused).rejects.toMatchObject({
      code: 'group_conflict',
      status: 409,
      message: expect.stringMatching(/in group web.*--force/),
    });
    expect(await storeState(c.registry)).toEqual(before);
    expect(await nextContactConfig(n)).toEqual({ group: 'web' });

    const moved = await c.svc.operator.groups.set('n1', 'db', { force: true }, 'bob');
    expect(moved).toMatchObject({ from: 'web', to: 'db', changed: true });
    expect((await c.registry.getNode('n1'))!.group).toBe('db');
    expect(await groupEvents()).toEqual([
      { name: 'n1', from: null, to: 'web', by: 'alice' },
      { name: 'n1', from: 'web', to: 'db', by: 'bob' },
    ]);
    expect(await c.registry.listGroups()).toEqual([{ group: 'db', count: 1 }]);
    expect(await nextContactConfig(n)).toEqual({ group: 'db' });
  });

  it('ungroup takes the node out with an event; a node in no group is a no-op', async () => {
    c = await core();
    const n = await registered('n1');
    await c.svc.operator.groups.set('n1', 'web', { force: false }, 'alice');
    const r = await c.svc.operator.groups.unset('n1', 'bob');
    expect(r).toMatchObject({ from: 'web', to: null, changed: true });
    expect((await c.registry.getNode('n1'))!).not.toHaveProperty('group');
    expect(await c.registry.listGroups()).toEqual([]);
    expect(await nextContactConfig(n)).toEqual({});
    expect((await groupEvents()).at(-1)).toEqual({ name: 'n1', from: 'web', to: null, by: 'bob' });

    const before = await storeState(c.registry);
    expect(await c.svc.operator.groups.unset('n1', 'bob')).toMatchObject({ changed: false, from: null });
    expect(await storeState(c.registry)).toEqual(before);
  });

  it('an unknown node is not_found; a bad group name is invalid_name; nothing is written', async () => {
    c = await core();
    await registered('n1');
    const before = await storeState(c.registry);
    expect(await code(c.svc.operator.groups.set('nope', 'web', { force: false }, 'alice'))).toBe('not_found');
    expect(await code(c.svc.operator.groups.unset('nope', 'alice'))).toBe('not_found');
    expect(await code(c.svc.operator.groups.set('n1', 'Web_1', { force: false }, 'alice'))).toBe(
      'invalid_name',
    );
    expect(await code(c.svc.operator.groups.set('n1', 'x'.repeat(64), { force: false }, 'alice'))).toBe(
      'invalid_name',
    );
    expect(await storeState(c.registry)).toEqual(before);
  });

  it('refuses a removed, rejected or only heard node (invalid_state), writing nothing; a pending one may be grouped', async () => {
    c = await core();
    await registered('gone');
    await c.svc.operator.remove('gone', 'alice');
    expect(await c.svc.join(node('waits').request({ clock: c.clock }), FAR)).toMatchObject({ status: 202 });
    expect(await c.svc.join(node('no').request({ clock: c.clock }), FAR)).toMatchObject({ status: 202 });
    await c.svc.operator.reject('no', 'alice');
    await c.svc.heard({ name: 'ghost', role: 'worker', cluster: '', key: 'k'.repeat(43) }, ['198.18.0.7']);
    expect((await c.registry.getNode('ghost'))?.state).toBe('heard');

    const before = await storeState(c.registry);
    for (const name of ['gone', 'no', 'ghost']) {
      await expect(c.svc.operator.groups.set(name, 'web', { force: true }, 'alice')).rejects.toMatchObject({
        code: 'invalid_state',
        message: expect.stringContaining(`node ${name} is`),
      });
    }
    expect(await storeState(c.registry)).toEqual(before);

    // Pre-grouping a pending node is harmless: the group reaches it with its first bundle.
    await c.svc.operator.groups.set('waits', 'web', { force: false }, 'alice');
    const approved = await c.svc.operator.approve('waits', 'alice');
    expect(approved).toMatchObject({ state: 'issued', group: 'web' });
  });

  it('node-config cannot set a group: the record is the only source of `group`', async () => {
    c = await core();
    // The same bundle function the issuer uses, with a node-config that names a group.
    const { bundleConfig } = await import('../../src/registrar/groups.js');
    const cfg = { '*': { group: 'forged', dns: '10.0.0.1' }, worker: { ntp: 'pool' } };
    expect(bundleConfig(cfg, { role: 'worker' })).toEqual({ dns: '10.0.0.1', ntp: 'pool' });
    expect(bundleConfig(cfg, { role: 'worker', group: 'web' })).toEqual({
      dns: '10.0.0.1',
      ntp: 'pool',
      group: 'web',
    });
  });
});
