// Pre-approval, rebuild and ban (issue 9, item 3) on the exactly-once core: ManualClock, memory store.
import { afterEach, describe, expect, it } from 'vitest';
import { core, FAR, node, refusedOnly, storeState, type Core } from './harness.js';
import { code } from './harness.js';

let c: Core;
afterEach(async () => c?.close());

/**
 * Everything a refusal must leave as it was, pre-approvals and bans included; with `before`, but for
 * the refusals on record since then, whose reasons must be `reasons` (harness refusedOnly).
 */
const state = async (c: Core, before?: { store: unknown }, reasons: string[] = []) => ({
  store: before ? await refusedOnly(c.registry, before.store, reasons) : await storeState(c.registry),
  preapprovals: await c.registry.listPreapprovals(),
  bans: await c.registry.listBans(),
});

describe('pre-approval', () => {
  it('admits the name once with no token and no install mode, and is consumed by that acceptance', async () => {
    c = await core();
    await c.svc.operator.preapprove('n1', { ttlMs: null }, 'alice');
    const n = node('n1');
    const out = await c.svc.join(n.request({ clock: c.clock }), FAR);
    expect(out.status).toBe(201);
    expect(await c.registry.getNode('n1')).toMatchObject({
      state: 'issued',
      key: n.fp,
      decision: { rule: 'approval', detail: 'pre-approved by alice' },
    });
    expect(await c.registry.getPreapproval('n1')).toBeUndefined();
    // Another name is not pre-approved: it waits for the operator.
    expect(await c.svc.join(node('n2').request({ clock: c.clock }), FAR)).toMatchObject({ status: 202 });
    // Another key for the name now held is refused and changes nothing.
    const before = await state(c);
    expect(await code(c.svc.join(node('n1').request({ clock: c.clock }), FAR))).toBe('name_taken');
    expect(await state(c, before, ['name_taken'])).toEqual(before);
  });

  it('with --key, --role and --ttl admits only that key and role, before the deadline', async () => {
    c = await core();
    const n = node('n1');
    await c.svc.operator.preapprove('n1', { key: n.fp, role: 'db', ttlMs: 60_000 }, 'alice');
    // Another key, or another role: it waits, and the pre-approval stays.
    expect(await c.svc.join(node('n1').request({ role: 'db', clock: c.clock }), FAR)).toMatchObject({
      status: 202,
    });
    await c.svc.operator.reject('n1', 'alice');
    expect(await c.svc.join(n.request({ role: 'web', clock: c.clock }), FAR)).toMatchObject({ status: 202 });
    expect(await c.registry.getPreapproval('n1')).toMatchObject({ key: n.fp, role: 'db' });
    expect(await c.svc.join(n.request({ role: 'db', clock: c.clock }), FAR)).toMatchObject({ status: 201 });
    expect(await c.registry.getPreapproval('n1')).toBeUndefined();

    await c.svc.operator.preapprove('n2', { ttlMs: 60_000 }, 'alice');
    c.clock.advance(60_000);
    expect(await c.svc.join(node('n2').request({ clock: c.clock }), FAR)).toMatchObject({ status: 202 });
    expect(await c.registry.getNode('n2')).toMatchObject({ state: 'pending' });
  });

  it('refuses a misspelt key and a name held by another key, writing nothing', async () => {
    c = await core();
    const tok = await c.token();
    await c.svc.join(node('n1').request({ token: tok, clock: c.clock }), FAR);
    const before = await state(c);
    expect(await code(c.svc.operator.preapprove('n1', { ttlMs: null }, 'alice'))).toBe('invalid_state');
    expect(await code(c.svc.operator.preapprove('n2', { key: 'nope', ttlMs: null }, 'alice'))).toBe(
      'bad_request',
    );
    expect(await state(c)).toEqual(before);
  });
});

describe('rebuild', () => {
  it('revokes the old certificate; the old key is refused, one new key joins once with no token', async () => {
    c = await core();
    const tok = await c.token();
    const old = node('n1');
    await c.svc.join(old.request({ token: tok, clock: c.clock }), FAR);
    const serial = (await c.registry.getNode('n1'))!.serial!;
    const { removed } = await c.svc.operator.rebuild('n1', { ttlMs: null }, 'alice');
    expect(removed).toMatchObject({ state: 'removed' });
    expect(await c.registry.isRevoked(serial)).toBe(true);
    expect(await code(c.svc.join(old.request({ clock: c.clock }), FAR))).toBe('removed');

    const fresh = node('n1');
    expect(await c.svc.join(fresh.request({ clock: c.clock }), FAR)).toMatchObject({ status: 201 });
    expect(await c.registry.getNode('n1')).toMatchObject({
      state: 'issued',
      key: fresh.fp,
      decision: { rule: 'approval' },
    });
    expect((await c.registry.history('n1')).map((r) => r.key)).toEqual([old.fp]);
    const before = await state(c);
    expect(await code(c.svc.join(node('n1').request({ clock: c.clock }), FAR))).toBe('name_taken');
    expect(await state(c, before, ['name_taken'])).toEqual(before);
  });

  it('of an unknown name is not_found and writes nothing', async () => {
    c = await core();
    const before = await state(c);
    expect(await code(c.svc.operator.rebuild('ghost', { ttlMs: null }, 'alice'))).toBe('not_found');
    expect(await state(c)).toEqual(before);
  });
});

describe('ban', () => {
  it('a banned name is refused (403 banned) with nothing written, until unban', async () => {
    c = await core();
    await c.svc.operator.ban({ kind: 'name', value: 'n1' }, 'alice', 'stolen laptop');
    const tok = await c.token();
    const n = node('n1');
    const before = await state(c);
    expect(await code(c.svc.join(n.request({ token: tok, clock: c.clock }), FAR))).toBe('banned');
    expect(await state(c, before, ['banned'])).toEqual(before);
    expect(await c.registry.getNode('n1')).toBeUndefined();
    await c.svc.operator.unban({ kind: 'name', value: 'n1' }, 'alice');
    expect(await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR)).toMatchObject({ status: 201 });
  });

  it('banning a registered name removes it and revokes its certificate; its key hears 410', async () => {
    c = await core();
    const tok = await c.token();
    const n = node('n1');
    await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    const serial = (await c.registry.getNode('n1'))!.serial!;
    await c.svc.operator.preapprove('n1', { key: n.fp, ttlMs: null }, 'alice');
    const { removed } = await c.svc.operator.ban({ kind: 'name', value: 'n1' }, 'alice');
    expect(removed).toEqual(['n1']);
    expect(await c.registry.isRevoked(serial)).toBe(true);
    expect(await c.registry.getPreapproval('n1')).toBeUndefined();
    expect(await code(c.svc.join(n.request({ token: tok, clock: c.clock }), FAR))).toBe('banned');
    expect(await code(c.svc.poll('n1', n.fp, 0, n.pollProof(c.clock)))).toBe('removed');
    // Another machine under that name is refused too.
    expect(await code(c.svc.join(node('n1').request({ token: tok, clock: c.clock }), FAR))).toBe('banned');
  });

  it('a banned key is refused under any name, and the node that holds it is removed', async () => {
    c = await core();
    const tok = await c.token();
    const n = node('n1');
    await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    const { removed } = await c.svc.operator.ban({ kind: 'key', value: n.fp }, 'alice');
    expect(removed).toEqual(['n1']);
    const other = node('n2', n.key);
    const before = await state(c);
    expect(await code(c.svc.join(other.request({ token: tok, clock: c.clock }), FAR))).toBe('banned');
    expect(await state(c, before, ['banned'])).toEqual(before);
    await c.svc.operator.unban({ kind: 'key', value: n.fp }, 'alice');
    expect(await c.svc.join(other.request({ token: tok, clock: c.clock }), FAR)).toMatchObject({
      status: 201,
    });
  });

  it('unban of what is not banned is not_found', async () => {
    c = await core();
    expect(await code(c.svc.operator.unban({ kind: 'name', value: 'n1' }, 'alice'))).toBe('not_found');
  });
});

describe('approve --force', () => {
  it('archives the holder, revokes its certificate and admits exactly the key that asked', async () => {
    c = await core();
    const tok = await c.token();
    const holder = node('n1');
    await c.svc.join(holder.request({ token: tok, clock: c.clock }), FAR);
    const serial = (await c.registry.getNode('n1'))!.serial!;
    const newcomer = node('n1');
    expect(await code(c.svc.join(newcomer.request({ clock: c.clock }), FAR))).toBe('name_taken');

    await c.svc.operator.forceApprove('n1', newcomer.fp, 'alice');
    expect(await c.registry.isRevoked(serial)).toBe(true);
    const conflict = (await c.registry.listEvents(0, 100)).find((e) => e.type === 'conflict');
    expect(conflict?.detail).toMatchObject({ archivedKey: holder.fp, key: newcomer.fp });
    // The holder's key hears 410; only the approved key is admitted, once.
    expect(await code(c.svc.join(holder.request({ clock: c.clock }), FAR))).toBe('removed');
    expect(await c.svc.join(newcomer.request({ clock: c.clock }), FAR)).toMatchObject({ status: 201 });
    expect(await c.registry.getNode('n1')).toMatchObject({ key: newcomer.fp, state: 'issued' });
    expect((await c.registry.history('n1')).map((r) => r.key)).toEqual([holder.fp]);
    expect(await c.registry.getPreapproval('n1')).toBeUndefined();
    expect(await code(c.svc.join(node('n1').request({ clock: c.clock }), FAR))).toBe('name_taken');
  });

  it('for the key that already holds the name is invalid_state and writes nothing', async () => {
    c = await core();
    const tok = await c.token();
    const n = node('n1');
    await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    const before = await state(c);
    expect(await code(c.svc.operator.forceApprove('n1', n.fp, 'alice'))).toBe('invalid_state');
    expect(await state(c)).toEqual(before);
  });
});
