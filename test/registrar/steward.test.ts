// The steward (issue 9, items 5 and 6; src/registrar/steward.ts, Registration.touchLocked): lastSeen
// on every authenticated contact, and garbage collection of heard, pending and never-acknowledged
// records after their TTLs, on a ManualClock over the in-memory registry.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isMusterError } from '../../src/common/errors.js';
import { memoryLogger } from '../../src/common/log.js';
import { buildAdminApi } from '../../src/registrar/admin-api.js';
import {
  DEFAULT_HEARD_TTL_MS,
  DEFAULT_PENDING_TTL_MS,
  DEFAULT_UNACKED_TTL_MS,
  Steward,
} from '../../src/registrar/steward.js';
import { core, FAR, node, settle, type Core } from './harness.js';

let c: Core;
afterEach(async () => c?.close());

const MIN = 60_000;
const iso = (ms: number): string => new Date(ms).toISOString();
const events = async () => c.registry.listEvents(0, 10_000);

/** Joins with a fresh token; returns the node and its serial. */
async function admitted(name: string, ack = true) {
  const n = node(name);
  const tok = await c.token();
  const out = await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
  expect(out.status).toBe(201);
  const serial = (await c.registry.getNode(name))!.serial!;
  if (ack) await c.svc.ack(name, n.signed('ack', serial, c.clock));
  return { n, serial };
}

/** Lets the background sweep (started with the service) finish, then sweeps now. */
async function sweep(): Promise<number> {
  await settle();
  return c.svc.steward.sweep();
}

describe('lastSeen: every authenticated contact, at most once a minute, no event', () => {
  it('a signed poll updates lastSeen once a minute, with compare-and-set and no event', async () => {
    c = await core();
    const { n } = await admitted('n1');
    const t0 = c.clock.now();
    const rec0 = (await c.registry.getNode('n1'))!;
    expect(rec0.lastSeen).toBe(iso(t0));
    const evs = (await events()).length;

    c.clock.advance(59_000);
    await c.svc.poll('n1', n.fp, 0, n.pollProof(c.clock));
    expect(await c.registry.getNode('n1')).toEqual(rec0); // under a minute: nothing written

    c.clock.advance(1_000);
    await c.svc.poll('n1', n.fp, 0, n.pollProof(c.clock));
    const rec1 = (await c.registry.getNode('n1'))!;
    expect(rec1).toEqual({ ...rec0, rev: rec0.rev + 1, lastSeen: iso(t0 + MIN) });
    expect((await events()).length).toBe(evs);

    // A poll whose signature does not verify is no contact.
    c.clock.advance(5 * MIN);
    const forged = { ...n.pollProof(c.clock), sig: node('n1').pollProof(c.clock).sig };
    await expect(c.svc.poll('n1', n.fp, 0, forged)).rejects.toSatisfy(isMusterError);
    expect((await c.registry.getNode('n1'))!.lastSeen).toBe(iso(t0 + MIN));
  });

  it('a signed ack and a known (name, key) join that returns its bundle update lastSeen', async () => {
    c = await core();
    const { n, serial } = await admitted('n1');
    const t0 = c.clock.now();
    c.clock.advance(2 * MIN);
    await c.svc.ack('n1', n.signed('ack', serial, c.clock)); // already active: a check-in
    expect((await c.registry.getNode('n1'))!.lastSeen).toBe(iso(t0 + 2 * MIN));

    c.clock.advance(3 * MIN);
    const again = await c.svc.join(n.request({ clock: c.clock }), FAR);
    expect(again.status).toBe(200);
    const rec = (await c.registry.getNode('n1'))!;
    expect(rec).toMatchObject({ state: 'active', lastSeen: iso(t0 + 5 * MIN) });
    expect((await events()).filter((e) => e.name === 'n1').map((e) => e.type)).toEqual([
      'accepted',
      'issued',
      'active',
    ]);
  });
});

describe('garbage collection: each TTL at its time, with a gc event', () => {
  it('a heard record expires exactly after the heard TTL; its key may then join', async () => {
    c = await core();
    const n = node('h1');
    await c.svc.heard({ name: 'h1', role: 'worker', cluster: '', key: n.fp }, ['198.18.0.30']);
    c.clock.advance(DEFAULT_HEARD_TTL_MS - 1);
    expect(await sweep()).toBe(0);
    expect((await c.registry.getNode('h1'))!.state).toBe('heard');

    c.clock.advance(1);
    expect(await sweep()).toBe(1);
    const rec = (await c.registry.getNode('h1'))!;
    expect(rec).toMatchObject({ state: 'rejected', decision: { rule: 'refused' } });
    expect(rec.decision!.detail).toMatch(/expired after TTL/);
    expect((await events()).at(-1)).toMatchObject({
      type: 'gc',
      name: 'h1',
      detail: { from: 'heard', key: n.fp },
    });

    // Not the operator's decision: the same key is decided afresh.
    const tok = await c.token();
    expect((await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR)).status).toBe(201);
  });

  it('a pending record expires after the pending TTL, and another key may take the name', async () => {
    c = await core();
    const n = node('p1');
    expect((await c.svc.join(n.request({ clock: c.clock }), FAR)).status).toBe(202);
    c.clock.advance(DEFAULT_PENDING_TTL_MS - 1);
    expect(await sweep()).toBe(0);
    expect((await c.registry.getNode('p1'))!.state).toBe('pending');
    c.clock.advance(1);
    expect(await sweep()).toBe(1);
    expect((await c.registry.getNode('p1'))!.state).toBe('rejected');
    expect((await events()).at(-1)).toMatchObject({ type: 'gc', name: 'p1', detail: { from: 'pending' } });
    expect((await c.registry.counts()).pending).toBe(0);

    const other = node('p1');
    expect((await c.svc.join(other.request({ clock: c.clock }), FAR)).status).toBe(202);
    expect((await c.registry.getNode('p1'))!).toMatchObject({ state: 'pending', key: other.fp });
  });

  it('an issued certificate never acknowledged is removed and revoked after the unacked TTL', async () => {
    c = await core();
    const { serial } = await admitted('u1', false);
    await admitted('a1'); // acknowledged: left alone
    c.clock.advance(DEFAULT_UNACKED_TTL_MS - 1);
    expect(await sweep()).toBe(0);
    expect(await c.registry.isRevoked(serial)).toBe(false);
    c.clock.advance(1);
    expect(await sweep()).toBe(1);
    expect((await c.registry.getNode('u1'))!).toMatchObject({
      state: 'removed',
      decision: { rule: 'removed' },
    });
    expect((await c.registry.getNode('a1'))!.state).toBe('active');
    expect(await c.registry.isRevoked(serial)).toBe(true);
    expect((await events()).slice(-2)).toMatchObject([
      { type: 'gc', name: 'u1', detail: { from: 'issued' } },
      { type: 'removed', name: 'u1', detail: { serial } },
    ]);
  });

  it('a record that moves on before its TTL is left alone', async () => {
    c = await core();
    const n = node('m1');
    await c.svc.join(n.request({ clock: c.clock }), FAR); // pending
    c.clock.advance(DEFAULT_PENDING_TTL_MS - MIN);
    await c.svc.operator.approve('m1', 'alice'); // issued now: its own TTL starts
    c.clock.advance(MIN);
    const before = await c.registry.getNode('m1');
    const evs = (await events()).length;
    expect(await sweep()).toBe(0);
    expect(await c.registry.getNode('m1')).toEqual(before);
    expect((await events()).length).toBe(evs);
  });

  it('reads from the state index only, and only the records past their TTL', async () => {
    c = await core();
    // One record waiting in each swept state, none yet past its TTL.
    await c.svc.heard({ name: 'h1', role: 'worker', cluster: '', key: node('h1').fp }, ['198.18.0.30']);
    await c.svc.join(node('p1').request({ clock: c.clock }), FAR);
    await admitted('u1', false);
    await settle();
    const recordReads = [vi.spyOn(c.registry, 'getNode'), vi.spyOn(c.registry, 'listNodes')];
    const index = vi.spyOn(c.registry, 'listWaiting');
    expect(await c.svc.steward.sweep()).toBe(0);
    expect(index.mock.calls.map(([o]) => o.state)).toEqual(['heard', 'pending', 'issued']);
    for (const read of recordReads) expect(read).not.toHaveBeenCalled();

    // Past the heard TTL only: that one record is read (under its lock) and expired.
    c.clock.advance(DEFAULT_HEARD_TTL_MS);
    expect(await c.svc.steward.sweep()).toBe(1);
    expect(recordReads[0]!.mock.calls.map(([name]) => name)).toEqual(['h1']);
    expect(recordReads[1]).not.toHaveBeenCalled();
    expect((await c.registry.getNode('h1'))!.state).toBe('rejected');
    expect((await c.registry.getNode('p1'))!.state).toBe('pending');
    expect((await c.registry.getNode('u1'))!.state).toBe('issued');
  });

  it('runs from a timer on the injected clock, and pages through more than one page', async () => {
    c = await core();
    const names = ['g1', 'g2', 'g3', 'g4', 'g5'];
    for (const name of names)
      await c.svc.heard({ name, role: 'worker', cluster: '', key: node(name).fp }, ['198.18.0.30']);
    await settle();
    const steward = new Steward({
      registry: c.registry,
      registration: c.svc.registration,
      clock: c.clock,
      log: c.logs.log,
      pageSize: 2,
      heardTtlMs: 30 * MIN,
    });
    const list = vi.spyOn(c.registry, 'listWaiting');
    steward.start(); // a sweep at once: nothing is 30 minutes old yet
    try {
      await settle();
      expect((await c.registry.counts()).heard).toBe(5);
      list.mockClear();
      c.clock.advance(30 * MIN); // the 10-minute timer fires; no explicit sweep
      await settle();
      expect(
        list.mock.calls.filter(([o]) => o.state === 'heard' && o.limit === 2).map(([o]) => o.after),
      ).toEqual([undefined, 'g2', 'g4']);
      expect((await c.registry.counts()).heard).toBe(0);
      const gc = (await events()).filter((e) => e.type === 'gc').map((e) => e.name);
      expect(gc.sort()).toEqual(names);
    } finally {
      steward.close();
    }
  });
});

describe('GET /v1/admin/nodes?stale=SECONDS: the nodes not seen for that long, page by page', () => {
  it('filters within the index walk, and next pages through all of them', async () => {
    c = await core();
    const stale = ['s1', 's3', 's5'];
    const fresh = ['s2', 's4'];
    const keys = new Map<string, ReturnType<typeof node>>();
    for (const name of [...stale, ...fresh].sort()) keys.set(name, (await admitted(name)).n);
    c.clock.advance(2 * 3600_000);
    for (const name of fresh)
      await c.svc.poll(name, keys.get(name)!.fp, 0, keys.get(name)!.pollProof(c.clock));
    c.clock.advance(30 * MIN);

    const admin = await buildAdminApi(c.svc, memoryLogger('admin').log);
    try {
      const seen: string[] = [];
      let after: string | undefined;
      for (let i = 0; i < 10; i++) {
        const r = await admin.inject({
          method: 'GET',
          url: `/v1/admin/nodes?stale=3600&limit=2${after ? `&after=${after}` : ''}`,
        });
        expect(r.statusCode, r.body).toBe(200);
        const body = r.json() as {
          nodes: { name: string; lastSeen: string; notAfter: string }[];
          next?: string;
        };
        for (const n of body.nodes) {
          expect(Date.parse(n.lastSeen)).toBeLessThanOrEqual(c.clock.now() - 3600_000);
          expect(n.notAfter).toEqual(expect.any(String));
        }
        seen.push(...body.nodes.map((n) => n.name));
        if (!body.next) break;
        after = body.next;
      }
      expect(seen).toEqual(stale);

      // Seen 30 minutes ago: stale for 20 minutes, not for an hour.
      const all = await admin.inject({ method: 'GET', url: '/v1/admin/nodes?stale=1200' });
      expect((all.json() as { nodes: unknown[] }).nodes).toHaveLength(5);
      for (const bad of ['0', 'abc', '-5', '1.5'])
        expect((await admin.inject({ method: 'GET', url: `/v1/admin/nodes?stale=${bad}` })).statusCode).toBe(
          400,
        );
    } finally {
      await admin.close();
    }
  });
});
