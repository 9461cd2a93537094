/**
 * The registry contract (DESIGN "Store backends": every backend passes one suite). Tests the
 * Registry interface only, never a backend's layout: level, memory and etcd run the same cases.
 *
 * make(opts) opens a fresh, empty registry. A persistent backend also gives reopen(), which closes
 * the registry it returned last and opens the same storage again with the same options, and the
 * cases about surviving a restart run on it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import {
  INSTALL_MODE_OFF,
  NODE_STATES,
  isStoreConflict,
  type Ban,
  type Change,
  type InstallModeState,
  type MusterEvent,
  type NodeRecord,
  type NodeState,
  type Preapproval,
  type Registry,
  type RegistryOptions,
  type TokenRecord,
} from '../../src/store/registry.js';

export interface Harness {
  registry: Registry;
  reopen?: () => Promise<Registry>;
  cleanup: () => Promise<void>;
}

export function rec(name: string, state: NodeState, over: Partial<NodeRecord> = {}): NodeRecord {
  return {
    name,
    rev: 0,
    state,
    key: 'k'.repeat(43),
    spki: '',
    role: 'worker',
    cluster: '',
    channel: 'https',
    addresses: ['192.0.2.1'],
    times: { [state]: '2026-01-01T00:00:00.000Z' },
    lastSeen: '2026-01-01T00:00:00.000Z',
    ...over,
  };
}

export function token(id: string, maxUses: number | null, over: Partial<TokenRecord> = {}): TokenRecord {
  return {
    id,
    secret: 's'.repeat(32),
    createdAt: '2026-01-01T00:00:00.000Z',
    expiresAt: null,
    maxUses,
    used: 0,
    roles: [],
    clusters: [],
    revoked: false,
    ...over,
  };
}

const create = (reg: Registry, name: string, state: NodeState = 'pending', over: Partial<NodeRecord> = {}) =>
  reg.apply({ nodes: [{ expectRev: 0, next: rec(name, state, over) }], events: [{ type: state, name }] });

/** Moves a node to `state` with compare-and-set on the rev it reads. */
async function move(reg: Registry, name: string, state: NodeState, archivePrev = false): Promise<NodeRecord> {
  const cur = (await reg.getNode(name))!;
  const next = { ...cur, state, times: { ...cur.times, [state]: '2026-01-02T00:00:00.000Z' } };
  await reg.apply({ nodes: [{ expectRev: cur.rev, next, archivePrev }], events: [{ type: state, name }] });
  return (await reg.getNode(name))!;
}

/** Puts a node into `group` (undefined: out of any group) with compare-and-set, as an operator does. */
async function regroup(reg: Registry, name: string, group: string | undefined): Promise<NodeRecord> {
  const { group: _old, ...cur } = (await reg.getNode(name))!;
  const next = group === undefined ? cur : { ...cur, group };
  await reg.apply({ nodes: [{ expectRev: cur.rev, next }], events: [{ type: 'group', name }] });
  return (await reg.getNode(name))!;
}

/** Outcomes of settled promises: how many landed, and the reasons of the others. */
function outcomes<T>(results: PromiseSettledResult<T>[]): { ok: T[]; errors: unknown[] } {
  return {
    ok: results.filter((r): r is PromiseFulfilledResult<T> => r.status === 'fulfilled').map((r) => r.value),
    errors: results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason),
  };
}

/** Waits (by polling, not by timing) until cond() holds. */
async function eventually(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(cond()).toBe(true);
}

/** Everything a reader can see, to compare before and after a refused change or a restart. */
async function snapshot(reg: Registry) {
  return {
    nodes: await reg.listNodes({ limit: 1000 }),
    counts: await reg.counts(),
    groups: await reg.listGroups(),
    tokens: await reg.listTokens(),
    installMode: await reg.getInstallMode(),
    serials: await reg.listSerials(),
    revocations: await reg.listRevocations(),
    preapprovals: await reg.listPreapprovals(),
    bans: await reg.listBans(),
    lastEventSeq: await reg.lastEventSeq(),
    events: await reg.listEvents(0, 1000),
  };
}

/**
 * What a backend promises of event numbers beyond the contract's: `dense` (the default: level,
 * memory) numbers them 1, 2, 3... with no gap; etcd numbers them by the revision of the transaction
 * that wrote them (unique and increasing in commit order, with gaps: no counter every commit of
 * every registrar advances). Every backend: increasing in commit order, and `after` cursors resume.
 */
export interface ContractOptions {
  denseEvents?: boolean;
}

export function registryContract(
  label: string,
  make: (opts?: RegistryOptions) => Promise<Harness>,
  { denseEvents = true }: ContractOptions = {},
): void {
  /** Strictly increasing (and, for a dense backend, exactly from..from+n-1). */
  const expectNumbered = (seqs: number[], from?: number): void => {
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
    if (denseEvents && from !== undefined) expect(seqs).toEqual(seqs.map((_, i) => from + i));
  };
  /** The log holds `n` events after `after`, and lastEventSeq() is the last of them. */
  const expectEvents = async (reg: Registry, n: number, after = 0): Promise<void> => {
    const evs = await reg.listEvents(after, 100_000);
    expect(evs).toHaveLength(n);
    expectNumbered([after, ...evs.map((e) => e.seq)], after);
    expect(await reg.lastEventSeq()).toBe(evs.at(-1)?.seq ?? after);
  };
  describe(`registry contract: ${label}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    const open = async (opts?: RegistryOptions): Promise<Harness> => {
      const h = await make(opts);
      cleanups.push(h.cleanup);
      return h;
    };
    afterEach(async () => {
      for (const c of cleanups.splice(0)) await c();
    });

    describe('identity', () => {
      it('stores the first id it is given and returns it ever after (also after a restart)', async () => {
        const h = await open();
        expect(await h.registry.identity(() => 'r-first')).toBe('r-first');
        expect(await h.registry.identity(() => 'r-second')).toBe('r-first');
        if (h.reopen) {
          const again = await h.reopen();
          expect(await again.identity(() => 'r-third')).toBe('r-first');
        }
      });

      it('asked twice at once, stores one id', async () => {
        const { registry: reg } = await open();
        let n = 0;
        const ids = await Promise.all([reg.identity(() => `r-${++n}`), reg.identity(() => `r-${++n}`)]);
        expect(ids[0]).toBe(ids[1]);
        expect(await reg.identity(() => 'r-other')).toBe(ids[0]);
      });
    });

    describe('nodes', () => {
      it('creates a record at rev 1 and reads it back as written', async () => {
        const clock = new ManualClock(Date.UTC(2026, 2, 3, 4, 5, 6));
        const { registry: reg } = await open({ now: () => clock.now() });
        expect(await reg.getNode('a')).toBeUndefined();
        const evs = await create(reg, 'a', 'pending', { pendingReason: 'waiting for approval' });
        expect(evs).toEqual([
          { seq: evs[0]!.seq, at: '2026-03-03T04:05:06.000Z', type: 'pending', name: 'a' },
        ]);
        expect(evs[0]!.seq).toBeGreaterThan(0);
        expectNumbered([0, evs[0]!.seq], 0);
        expect(await reg.getNode('a')).toEqual({
          ...rec('a', 'pending', { pendingReason: 'waiting for approval' }),
          rev: 1,
        });
        expect(await reg.counts()).toEqual({
          ...Object.fromEntries(NODE_STATES.map((s) => [s, 0])),
          pending: 1,
        });
      });

      it('moves a record by compare-and-set: each write is the next rev', async () => {
        const { registry: reg } = await open();
        await create(reg, 'a');
        expect((await move(reg, 'a', 'accepted')).rev).toBe(2);
        expect(await move(reg, 'a', 'issued')).toMatchObject({ rev: 3, state: 'issued' });
      });

      it('refuses a stale rev, or rev 0 for a name that has a record, and writes nothing', async () => {
        const { registry: reg } = await open();
        await create(reg, 'a');
        await move(reg, 'a', 'accepted');
        const before = await snapshot(reg);
        const heard: MusterEvent[] = [];
        reg.watch((ev) => heard.push(ev));
        for (const expectRev of [0, 1, 3]) {
          const err = await reg
            .apply({
              nodes: [{ expectRev, next: rec('a', 'rejected', { key: 'other' }) }],
              events: [{ type: 'rejected', name: 'a' }],
            })
            .catch((e: unknown) => e);
          expect(isStoreConflict(err, 'node')).toBe(true);
        }
        expect(await snapshot(reg)).toEqual(before);
        // A later change is heard: the refused ones before it would have been heard first.
        const [b] = await create(reg, 'b');
        await eventually(() => heard.length > 0);
        expect(heard.map((e) => [e.seq, e.name])).toEqual([[b!.seq, 'b']]);
        expectNumbered([before.lastEventSeq, b!.seq], before.lastEventSeq);
      });

      it('a change is all or nothing: one stale write refuses the other writes of the change', async () => {
        const { registry: reg } = await open();
        await create(reg, 'a');
        await reg.apply({ putToken: token('t1', null) });
        const before = await snapshot(reg);
        const err = await reg
          .apply({
            nodes: [
              { expectRev: 0, next: rec('b', 'accepted') },
              { expectRev: 5, next: rec('a', 'accepted') },
            ],
            useToken: 't1',
            putToken: token('t2', 1),
            setInstallMode: { on: true, since: 1, max: 1, accepted: 0, remote: false },
            serial: { counter: await reg.allocateSerial(), serial: '0a', name: 'b' },
            revoke: { serial: '09', name: 'a', at: '2026-01-01T00:00:00.000Z', reason: 'test' },
            events: [{ type: 'accepted', name: 'b' }],
          })
          .catch((e: unknown) => e);
        expect(isStoreConflict(err, 'node')).toBe(true);
        expect(await snapshot(reg)).toEqual(before);
        expect(await reg.getNode('b')).toBeUndefined();
        expect(await reg.isRevoked('09')).toBe(false);
      });

      it('of concurrent writes to one name from the same rev, exactly one lands', async () => {
        const { registry: reg } = await open();
        const created = outcomes(
          await Promise.allSettled(
            Array.from({ length: 10 }, (_, i) => create(reg, 'x', 'pending', { key: `key-${i}` })),
          ),
        );
        expect(created.ok).toHaveLength(1);
        expect(created.errors.every((e) => isStoreConflict(e, 'node'))).toBe(true);
        const winner = created.ok[0]![0]!.seq;
        expect(await reg.lastEventSeq()).toBe(winner);
        const cur = (await reg.getNode('x'))!;
        expect(cur.rev).toBe(1);

        const moved = outcomes(
          await Promise.allSettled(
            NODE_STATES.map((state) =>
              reg.apply({
                nodes: [{ expectRev: 1, next: { ...cur, state } }],
                events: [{ type: state, name: 'x' }],
              }),
            ),
          ),
        );
        expect(moved.ok).toHaveLength(1);
        expect(moved.errors).toHaveLength(NODE_STATES.length - 1);
        const state = moved.ok[0]![0]!.type as NodeState;
        expect(await reg.getNode('x')).toMatchObject({ rev: 2, state });
        expect((await reg.counts())[state]).toBe(1);
        expect(Object.values(await reg.counts()).reduce((a, b) => a + b)).toBe(1);
      });

      it('two writes to one name in one change chain their revs', async () => {
        const { registry: reg } = await open();
        await reg.apply({
          nodes: [
            { expectRev: 0, next: rec('a', 'accepted') },
            { expectRev: 1, next: rec('a', 'issued') },
          ],
        });
        expect(await reg.getNode('a')).toMatchObject({ rev: 2, state: 'issued' });
        expect(await reg.counts()).toMatchObject({ accepted: 0, issued: 1 });
      });

      it('keeps counts, namesInState and listNodes(state) in agreement through transitions', async () => {
        const { registry: reg } = await open();
        for (const n of ['a', 'b', 'c', 'd', 'e']) await create(reg, n, 'pending');
        await move(reg, 'a', 'accepted');
        await move(reg, 'a', 'issued');
        await move(reg, 'a', 'active');
        await move(reg, 'b', 'rejected');
        await move(reg, 'c', 'accepted');
        await move(reg, 'c', 'issued');
        await move(reg, 'c', 'removed');
        await move(reg, 'd', 'pending'); // same state: the index and counts stay
        expect(await reg.counts()).toEqual({
          heard: 0,
          pending: 2,
          accepted: 0,
          issued: 0,
          active: 1,
          rejected: 1,
          removed: 1,
        });
        const counts = await reg.counts();
        for (const state of NODE_STATES) {
          const names = await reg.namesInState(state);
          expect((await reg.listNodes({ state, limit: 100 })).map((n) => n.name)).toEqual(names);
          expect(names).toHaveLength(counts[state]);
          for (const n of await reg.listNodes({ state, limit: 100 })) expect(n.state).toBe(state);
        }
        expect(await reg.namesInState('pending')).toEqual(['d', 'e']);
        expect(await reg.namesInState('pending', 1)).toEqual(['d']);
      });

      it('lists nodes by name, a page at a time, with and without a state', async () => {
        const { registry: reg } = await open();
        const names = Array.from({ length: 25 }, (_, i) => `n-${String(i).padStart(2, '0')}`);
        // Created out of order: listing is by name, not by time.
        for (const n of [...names].reverse()) await create(reg, n, 'pending');
        const active = names.filter((_, i) => i % 3 === 0);
        for (const n of active) await move(reg, n, 'active');

        const pages = async (state?: NodeState, limit = 10): Promise<string[][]> => {
          const out: string[][] = [];
          let after: string | undefined;
          for (;;) {
            const page = await reg.listNodes({
              limit,
              ...(state ? { state } : {}),
              ...(after ? { after } : {}),
            });
            if (page.length === 0) return out;
            expect(page.length).toBeLessThanOrEqual(limit);
            out.push(page.map((n) => n.name));
            after = page[page.length - 1]!.name;
          }
        };
        const all = await pages();
        expect(all.map((p) => p.length)).toEqual([10, 10, 5]);
        expect(all.flat()).toEqual(names);
        const byState = await pages('active', 4);
        expect(byState.map((p) => p.length)).toEqual([4, 4, 1]);
        expect(byState.flat()).toEqual(active);
        expect((await pages('pending', 100)).flat()).toEqual(names.filter((n) => !active.includes(n)));
        expect(await reg.listNodes({ limit: 3, after: 'n-10' })).toMatchObject([
          { name: 'n-11' },
          { name: 'n-12', state: 'active' },
          { name: 'n-13' },
        ]);
        expect(await reg.listNodes({ state: 'issued', limit: 10 })).toEqual([]);
        expect(await reg.listNodes({ limit: 10, after: 'n-24' })).toEqual([]);
      });

      it('keeps earlier records of a name when asked (archivePrev), oldest first', async () => {
        const { registry: reg } = await open();
        await create(reg, 'x', 'pending', { key: 'key-1' });
        const removed = await move(reg, 'x', 'removed');
        await move(reg, 'x', 'rejected'); // no archivePrev: not kept
        expect(await reg.history('x')).toEqual([]);
        const rejected = (await reg.getNode('x'))!;
        await reg.apply({
          nodes: [
            { expectRev: rejected.rev, next: rec('x', 'pending', { key: 'key-2' }), archivePrev: true },
          ],
        });
        const second = (await reg.getNode('x'))!;
        await reg.apply({
          nodes: [{ expectRev: second.rev, next: rec('x', 'pending', { key: 'key-3' }), archivePrev: true }],
        });
        expect(await reg.history('x')).toEqual([rejected, second]);
        expect(removed.rev).toBe(2);
        expect(await reg.getNode('x')).toMatchObject({ rev: 5, key: 'key-3' });
        expect(await reg.history('y')).toEqual([]);
        expect(await reg.history('x-')).toEqual([]);
      });

      it('stores a copy: changing the caller’s objects afterwards changes nothing', async () => {
        const { registry: reg } = await open();
        const next = rec('a', 'pending');
        const t = token('t1', 3);
        const change: Change = {
          nodes: [{ expectRev: 0, next }],
          putToken: t,
          events: [{ type: 'pending', name: 'a', detail: { x: 1 } }],
        };
        await reg.apply(change);
        next.addresses.push('198.51.100.9');
        next.state = 'active';
        t.roles.push('admin');
        change.events![0]!.detail!.x = 2;
        expect(await reg.getNode('a')).toEqual({ ...rec('a', 'pending'), rev: 1 });
        expect((await reg.getToken('t1'))!.roles).toEqual([]);
        expect((await reg.listEvents(0, 10))[0]!.detail).toEqual({ x: 1 });
        const read = (await reg.getNode('a'))!;
        read.addresses.push('203.0.113.1');
        expect((await reg.getNode('a'))!.addresses).toEqual(['192.0.2.1']);
      });

      it('lands changes in the order apply() was called', async () => {
        const { registry: reg } = await open();
        const [first] = await create(reg, 'a');
        const a = (await reg.getNode('a'))!;
        const all = await Promise.all([
          create(reg, 'new-1'),
          reg.apply({ putToken: token('t1', 1), events: [{ type: 'token' }] }),
          reg.apply({
            nodes: [{ expectRev: a.rev, next: { ...a, state: 'accepted' } }],
            events: [{ type: 'accepted', name: 'a' }],
          }),
          create(reg, 'new-2'),
          reg.apply({ events: [{ type: 'group' }] }),
        ]);
        expectNumbered(
          all.map((evs) => evs[0]!.seq),
          2,
        );
        expectNumbered([first!.seq, ...all.map((evs) => evs[0]!.seq)], 1);
        expect((await reg.listEvents(first!.seq, 10)).map((e) => e.type)).toEqual([
          'pending',
          'token',
          'accepted',
          'pending',
          'group',
        ]);
      });
      it('listWaiting: each heard, pending or issued record with when it entered its state and its first address, by name, paged, after every write', async () => {
        const h = await open();
        const reg = h.registry;
        const T = (d: number): string => `2026-01-0${d}T00:00:00.000Z`;
        await create(reg, 'p2', 'pending', {
          times: { pending: T(2) },
          addresses: ['192.0.2.2', '192.0.2.9'],
        });
        await create(reg, 'p1', 'pending', { times: { pending: T(1) } });
        await create(reg, 'p3', 'pending', { times: {}, lastSeen: T(3) }); // no transition time: lastSeen
        await create(reg, 'h1', 'heard', { addresses: [], times: { heard: T(4) } });
        // An issued record written before transition times: its issuedAt.
        await create(reg, 'i1', 'issued', { times: {}, issuedAt: T(5), lastSeen: T(6) });
        await create(reg, 'a1', 'active');
        const all = { state: 'pending', limit: 100 } as const;
        expect(await reg.listWaiting(all)).toEqual([
          { name: 'p1', enteredAt: Date.parse(T(1)), address: '192.0.2.1' },
          { name: 'p2', enteredAt: Date.parse(T(2)), address: '192.0.2.2' },
          { name: 'p3', enteredAt: Date.parse(T(3)), address: '192.0.2.1' },
        ]);
        expect(await reg.listWaiting({ state: 'heard', limit: 100 })).toEqual([
          { name: 'h1', enteredAt: Date.parse(T(4)) },
        ]);
        expect(await reg.listWaiting({ state: 'issued', limit: 100 })).toEqual([
          { name: 'i1', enteredAt: Date.parse(T(5)), address: '192.0.2.1' },
        ]);
        expect((await reg.listWaiting({ state: 'pending', limit: 2 })).map((e) => e.name)).toEqual([
          'p1',
          'p2',
        ]);
        expect(
          (await reg.listWaiting({ state: 'pending', limit: 2, after: 'p2' })).map((e) => e.name),
        ).toEqual(['p3']);
        expect(await reg.listWaiting({ state: 'pending', limit: 0 })).toEqual([]);

        // Rewritten in the same state (asked again from another address): the entry follows.
        const p1 = (await reg.getNode('p1'))!;
        await reg.apply({
          nodes: [
            { expectRev: p1.rev, next: { ...p1, addresses: ['198.51.100.7'], times: { pending: T(7) } } },
          ],
        });
        // Out of the waiting states, and into another.
        await move(reg, 'p2', 'accepted');
        await move(reg, 'i1', 'active');
        await move(reg, 'a1', 'issued');
        const expected = {
          pending: [
            { name: 'p1', enteredAt: Date.parse(T(7)), address: '198.51.100.7' },
            { name: 'p3', enteredAt: Date.parse(T(3)), address: '192.0.2.1' },
          ],
          issued: [{ name: 'a1', enteredAt: Date.parse('2026-01-02T00:00:00.000Z'), address: '192.0.2.1' }],
        };
        expect(await reg.listWaiting(all)).toEqual(expected.pending);
        expect(await reg.listWaiting({ state: 'issued', limit: 100 })).toEqual(expected.issued);
        if (h.reopen) {
          const again = await h.reopen();
          expect(await again.listWaiting(all)).toEqual(expected.pending);
          expect(await again.listWaiting({ state: 'issued', limit: 100 })).toEqual(expected.issued);
        }
      });
    });

    describe('groups', () => {
      const inGroup = async (reg: Registry, group: string, state?: NodeState): Promise<string[]> =>
        (await reg.listNodes({ group, limit: 1000, ...(state ? { state } : {}) })).map((n) => n.name);

      it('is empty until a record names a group', async () => {
        const { registry: reg } = await open();
        await create(reg, 'a');
        expect(await reg.listGroups()).toEqual([]);
        expect(await inGroup(reg, 'web')).toEqual([]);
      });

      it('the index follows the record: created in a group, moved, taken out, through state changes', async () => {
        const { registry: reg } = await open();
        await create(reg, 'a', 'active', { group: 'web' });
        for (const n of ['b', 'c', 'd']) await create(reg, n, 'active');
        await regroup(reg, 'b', 'web');
        await regroup(reg, 'c', 'db');
        expect(await reg.listGroups()).toEqual([
          { group: 'db', count: 1 },
          { group: 'web', count: 2 },
        ]);
        expect(await inGroup(reg, 'web')).toEqual(['a', 'b']);

        // A move: out of the old group's index, into the new one's; the emptied group is gone.
        const moved = await regroup(reg, 'c', 'web');
        expect(moved).toMatchObject({ group: 'web', rev: 3 });
        expect(await inGroup(reg, 'web')).toEqual(['a', 'b', 'c']);
        expect(await inGroup(reg, 'db')).toEqual([]);
        expect(await reg.listGroups()).toEqual([{ group: 'web', count: 3 }]);

        // Out of any group.
        const out = await regroup(reg, 'a', undefined);
        expect(out.group).toBeUndefined();
        expect(await inGroup(reg, 'web')).toEqual(['b', 'c']);
        expect(await reg.listGroups()).toEqual([{ group: 'web', count: 2 }]);

        // A state change keeps the group (the record carries it), and the listing shows the new state.
        await move(reg, 'b', 'removed');
        expect(await inGroup(reg, 'web')).toEqual(['b', 'c']);
        expect(await inGroup(reg, 'web', 'removed')).toEqual(['b']);
        expect(await inGroup(reg, 'web', 'active')).toEqual(['c']);
        expect(await reg.listGroups()).toEqual([{ group: 'web', count: 2 }]);
        // The same group written again changes nothing in the index.
        await regroup(reg, 'c', 'web');
        expect(await reg.listGroups()).toEqual([{ group: 'web', count: 2 }]);
      });

      it('lists a group by name, a page at a time, with and without a state', async () => {
        const { registry: reg } = await open();
        const names = Array.from({ length: 30 }, (_, i) => `n-${String(i).padStart(2, '0')}`);
        for (const n of [...names].reverse()) await create(reg, n, 'active');
        const web = names.filter((_, i) => i % 2 === 0);
        for (const n of web) await regroup(reg, n, 'web');
        for (const n of names.filter((_, i) => i % 2 === 1)) await regroup(reg, n, 'db');
        const removed = web.filter((_, i) => i % 3 === 0);
        for (const n of removed) await move(reg, n, 'removed');

        const pages = async (group: string, limit: number, state?: NodeState): Promise<string[][]> => {
          const out: string[][] = [];
          let after: string | undefined;
          for (;;) {
            const page = await reg.listNodes({
              group,
              limit,
              ...(state ? { state } : {}),
              ...(after ? { after } : {}),
            });
            if (page.length === 0) return out;
            expect(page.length).toBeLessThanOrEqual(limit);
            for (const n of page) expect(n.group).toBe(group);
            out.push(page.map((n) => n.name));
            after = page[page.length - 1]!.name;
          }
        };
        const all = await pages('web', 4);
        expect(all.map((p) => p.length)).toEqual([4, 4, 4, 3]);
        expect(all.flat()).toEqual(web);
        const active = await pages('web', 4, 'active');
        expect(active.flat()).toEqual(web.filter((n) => !removed.includes(n)));
        expect(active.map((p) => p.length)).toEqual([4, 4, 2]);
        expect((await pages('web', 100, 'removed')).flat()).toEqual(removed);
        expect(await reg.listNodes({ group: 'web', limit: 2, after: 'n-03' })).toMatchObject([
          { name: 'n-04' },
          { name: 'n-06', state: 'removed' },
        ]);
        expect(await reg.listNodes({ group: 'nope', limit: 10 })).toEqual([]);
        expect(await reg.listNodes({ group: 'web', state: 'pending', limit: 10 })).toEqual([]);
        expect(await reg.listGroups()).toEqual([
          { group: 'db', count: 15 },
          { group: 'web', count: 15 },
        ]);
      });

      it('a refused change leaves the index as it was; the index survives a restart', async () => {
        const h = await open();
        let reg = h.registry;
        await create(reg, 'a', 'active', { group: 'web' });
        await create(reg, 'b', 'active');
        const a = (await reg.getNode('a'))!;
        const b = (await reg.getNode('b'))!;
        // b's write is stale: neither the move of a nor b's new group lands.
        await expect(
          reg.apply({
            nodes: [
              { expectRev: a.rev, next: { ...a, group: 'db' } },
              { expectRev: b.rev + 1, next: { ...b, group: 'db' } },
            ],
          }),
        ).rejects.toSatisfy((e) => isStoreConflict(e, 'node'));
        expect(await reg.listGroups()).toEqual([{ group: 'web', count: 1 }]);
        expect(await inGroup(reg, 'db')).toEqual([]);
        // Two writes to one name in one change: the index holds the last one's group only.
        await reg.apply({
          nodes: [
            { expectRev: a.rev, next: { ...a, group: 'db' } },
            { expectRev: a.rev + 1, next: { ...a, group: 'mq' } },
          ],
        });
        expect(await reg.listGroups()).toEqual([{ group: 'mq', count: 1 }]);
        if (!h.reopen) return;
        reg = await h.reopen();
        expect(await reg.listGroups()).toEqual([{ group: 'mq', count: 1 }]);
        expect(await inGroup(reg, 'mq')).toEqual(['a']);
        await regroup(reg, 'b', 'mq');
        expect(await reg.listGroups()).toEqual([{ group: 'mq', count: 2 }]);
      });
    });

    describe('tokens', () => {
      it('puts, reads and lists tokens; a put replaces', async () => {
        const { registry: reg } = await open();
        expect(await reg.listTokens()).toEqual([]);
        expect(await reg.getToken('t1')).toBeUndefined();
        await reg.apply({ putToken: token('t2', null, { description: 'second' }) });
        await reg.apply({ putToken: token('t1', 3, { roles: ['worker'], clusters: ['c1'] }) });
        expect(await reg.getToken('t1')).toEqual(token('t1', 3, { roles: ['worker'], clusters: ['c1'] }));
        expect((await reg.listTokens()).map((t) => t.id).sort()).toEqual(['t1', 't2']);
        const revoked = token('t1', 3, { revoked: true, revokedAt: '2026-01-03T00:00:00.000Z' });
        await reg.apply({
          putToken: revoked,
          events: [{ type: 'token', detail: { action: 'revoked', id: 't1' } }],
        });
        expect(await reg.getToken('t1')).toEqual(revoked);
        expect(await reg.listTokens()).toHaveLength(2);
      });

      it('of 20 concurrent uses of a 5-use token exactly 5 land, and the stored count is 5', async () => {
        const { registry: reg } = await open();
        await reg.apply({ putToken: token('t5', 5) });
        const seqBefore = await reg.lastEventSeq();
        const results = outcomes(
          await Promise.allSettled(
            Array.from({ length: 20 }, (_, i) =>
              reg.apply({
                nodes: [{ expectRev: 0, next: rec(`n-${String(i).padStart(2, '0')}`, 'accepted') }],
                useToken: 't5',
                events: [{ type: 'accepted', name: `n-${String(i).padStart(2, '0')}` }],
              }),
            ),
          ),
        );
        expect(results.ok).toHaveLength(5);
        expect(results.errors).toHaveLength(15);
        expect(results.errors.every((e) => isStoreConflict(e, 'token'))).toBe(true);
        expect((await reg.getToken('t5'))!.used).toBe(5);
        // The refused acceptances left no node, no count and no event.
        const landed = results.ok.map((evs) => evs[0]!.name).sort();
        expect((await reg.listNodes({ limit: 100 })).map((n) => n.name)).toEqual(landed);
        expect((await reg.counts()).accepted).toBe(5);
        const after = await reg.listEvents(seqBefore, 100);
        expect(after.map((e) => e.name).sort()).toEqual(landed);
        expectNumbered([seqBefore, ...after.map((e) => e.seq)], seqBefore);
        expect(await reg.lastEventSeq()).toBe(after.at(-1)!.seq);
      });

      it('refuses a revoked, used-up or unknown token, changing nothing; unlimited tokens count on', async () => {
        const { registry: reg } = await open();
        await reg.apply({ putToken: token('rev', 5, { revoked: true }) });
        await reg.apply({ putToken: token('one', 1) });
        await reg.apply({ putToken: token('any', null) });
        await reg.apply({ nodes: [{ expectRev: 0, next: rec('first', 'accepted') }], useToken: 'one' });
        const before = await snapshot(reg);
        for (const id of ['rev', 'one', 'nope']) {
          const err = await reg
            .apply({
              nodes: [{ expectRev: 0, next: rec('n', 'accepted') }],
              useToken: id,
              events: [{ type: 'accepted', name: 'n' }],
            })
            .catch((e: unknown) => e);
          expect(isStoreConflict(err, 'token')).toBe(true);
        }
        expect(await snapshot(reg)).toEqual(before);
        for (let i = 0; i < 7; i++) await reg.apply({ useToken: 'any' });
        expect(await reg.getToken('any')).toMatchObject({ used: 7, maxUses: null });
      });
    });

    describe('install mode', () => {
      const window = (since: number, max: number | null): InstallModeState => ({
        on: true,
        since,
        until: since + 600_000,
        max,
        accepted: 0,
        role: 'worker',
        remote: false,
      });

      it('is off until set; set replaces it and reads back', async () => {
        const { registry: reg } = await open();
        expect(await reg.getInstallMode()).toEqual(INSTALL_MODE_OFF);
        await reg.apply({
          setInstallMode: window(1000, 3),
          events: [{ type: 'install-mode', detail: { on: true } }],
        });
        expect(await reg.getInstallMode()).toEqual(window(1000, 3));
        const off: InstallModeState = { ...window(1000, 3), on: false, offReason: 'operator' };
        await reg.apply({ setInstallMode: off });
        expect(await reg.getInstallMode()).toEqual(off);
      });

      it('counts acceptances; the one that reaches max switches it off with an event; more are refused', async () => {
        const clock = new ManualClock(Date.UTC(2026, 0, 1, 12));
        const { registry: reg } = await open({ now: () => clock.now() });
        await reg.apply({ setInstallMode: window(1000, 3) });
        const seqBefore = await reg.lastEventSeq();
        const results = outcomes(
          await Promise.allSettled(
            Array.from({ length: 6 }, (_, i) =>
              reg.apply({
                nodes: [{ expectRev: 0, next: rec(`n-${i}`, 'accepted') }],
                useInstallMode: { since: 1000 },
                events: [{ type: 'accepted', name: `n-${i}` }],
              }),
            ),
          ),
        );
        expect(results.ok).toHaveLength(3);
        expect(results.errors.every((e) => isStoreConflict(e, 'install-mode'))).toBe(true);
        expect(await reg.getInstallMode()).toEqual({
          ...window(1000, 3),
          on: false,
          accepted: 3,
          offReason: '3 node(s) accepted',
        });
        // The third acceptance carries the event that says install mode is off, after its own.
        const last = results.ok.find((evs) => evs.length === 2)!;
        expect(last.map((e) => e.type)).toEqual(['accepted', 'install-mode']);
        expect(last[1]).toMatchObject({
          at: new Date(clock.now()).toISOString(),
          detail: { on: false, reason: '3 node(s) accepted' },
        });
        expect(results.ok.filter((evs) => evs.length === 1)).toHaveLength(2);
        const events = await reg.listEvents(seqBefore, 100);
        expect(events.map((e) => e.type)).toEqual(['accepted', 'accepted', 'accepted', 'install-mode']);
        expect((await reg.counts()).accepted).toBe(3);
      });

      it('refuses a use of another window (stale since) or of install mode off, changing nothing', async () => {
        const { registry: reg } = await open();
        const tryUse = (since: number) =>
          reg
            .apply({ nodes: [{ expectRev: 0, next: rec('n', 'accepted') }], useInstallMode: { since } })
            .catch((e: unknown) => e);
        expect(isStoreConflict(await tryUse(1000), 'install-mode')).toBe(true);
        await reg.apply({ setInstallMode: window(1000, 5) });
        await reg.apply({ useInstallMode: { since: 1000 } });
        await reg.apply({ setInstallMode: window(2000, 5) });
        const before = await snapshot(reg);
        expect(isStoreConflict(await tryUse(1000), 'install-mode')).toBe(true);
        await reg.apply({ setInstallMode: { ...window(2000, 5), on: false, offReason: 'operator' } });
        const off = await snapshot(reg);
        expect(isStoreConflict(await tryUse(2000), 'install-mode')).toBe(true);
        expect(await snapshot(reg)).toEqual(off);
        expect(before.installMode.accepted).toBe(0);
      });

      it('switches a window off only while that window is on (installModeWindow): one of two racing offs lands', async () => {
        const { registry: reg } = await open();
        await reg.apply({ setInstallMode: window(1000, 5) });
        const off = (reason: string, since: number) =>
          reg.apply({
            setInstallMode: { ...window(since, 5), on: false, offReason: reason },
            installModeWindow: since,
            events: [{ type: 'install-mode', detail: { on: false, reason } }],
          });
        const raced = outcomes(await Promise.allSettled([off('deadline', 1000), off('deadline', 1000)]));
        expect(raced.ok).toHaveLength(1);
        expect(raced.errors.every((e) => isStoreConflict(e, 'install-mode'))).toBe(true);
        await expectEvents(reg, 1);
        // A new window opened meanwhile is not switched off by a late off of the old one.
        await reg.apply({ setInstallMode: window(2000, 5) });
        const before = await snapshot(reg);
        expect(isStoreConflict(await off('deadline', 1000).catch((e: unknown) => e), 'install-mode')).toBe(
          true,
        );
        expect(await snapshot(reg)).toEqual(before);
        expect(await reg.getInstallMode()).toEqual(window(2000, 5));
      });

      it('without a max, counts on and stays on', async () => {
        const { registry: reg } = await open();
        await reg.apply({ setInstallMode: window(1000, null) });
        await Promise.all(Array.from({ length: 8 }, () => reg.apply({ useInstallMode: { since: 1000 } })));
        expect(await reg.getInstallMode()).toEqual({ ...window(1000, null), accepted: 8 });
        expect(await reg.lastEventSeq()).toBe(0);
      });
    });

    describe('lockout (refused attempts)', () => {
      const open5 = (since: number): InstallModeState => ({
        on: true,
        since,
        until: since + 600_000,
        max: null,
        accepted: 0,
        remote: false,
      });
      const AT = '2026-01-01T00:00:00.000Z';

      it('of 30 concurrent failures of a window with max 20, exactly 20 count; the 20th switches it off with its event', async () => {
        const { registry: reg } = await open();
        await reg.apply({ setInstallMode: open5(1000) });
        const seqBefore = await reg.lastEventSeq();
        const results = await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            reg.apply({
              installModeFailure: { since: 1000, max: 20 },
              events: [{ type: 'refused', name: `n-${i}`, detail: { reason: 'bad_proof' } }],
            }),
          ),
        );
        // A refusal is never refused: every change lands, with its own event.
        expect(results.every((evs) => evs[0]!.type === 'refused')).toBe(true);
        const locking = results.filter((evs) => evs.length === 2);
        expect(locking).toHaveLength(1);
        expect(locking[0]![1]).toMatchObject({
          type: 'install-mode',
          detail: { on: false, reason: 'locked: 20 refused attempts', failures: 20 },
        });
        expect(await reg.getInstallMode()).toEqual({
          ...open5(1000),
          on: false,
          failures: 20,
          offReason: 'locked: 20 refused attempts',
        });
        const types = (await reg.listEvents(seqBefore, 100)).map((e) => e.type);
        expect(types.filter((t) => t === 'install-mode')).toHaveLength(1);
        expect(types).toHaveLength(31);
      });

      it('counts nothing for another window or install mode off; a new window starts at zero', async () => {
        const { registry: reg } = await open();
        await reg.apply({ installModeFailure: { since: 1000, max: 2 } });
        expect(await reg.getInstallMode()).toEqual(INSTALL_MODE_OFF);
        await reg.apply({ setInstallMode: open5(1000) });
        await reg.apply({ installModeFailure: { since: 1000, max: 3 } });
        await reg.apply({ installModeFailure: { since: 999, max: 3 } });
        expect((await reg.getInstallMode()).failures).toBe(1);
        await reg.apply({ setInstallMode: open5(2000) });
        await reg.apply({ installModeFailure: { since: 1000, max: 3 } });
        expect(await reg.getInstallMode()).toEqual(open5(2000));
        expect(await reg.lastEventSeq()).toBe(0);
      });

      it('of 12 concurrent bad proofs for a token with max 5, exactly 5 count; the 5th locks it with a token event', async () => {
        const { registry: reg } = await open();
        await reg.apply({ putToken: token('t1', null) });
        const results = await Promise.all(
          Array.from({ length: 12 }, () => reg.apply({ tokenBadProof: { id: 't1', max: 5, at: AT } })),
        );
        expect(results.flat()).toHaveLength(1);
        expect(results.flat()[0]).toMatchObject({
          type: 'token',
          detail: { action: 'locked', id: 't1', badProofs: 5 },
        });
        expect(await reg.getToken('t1')).toEqual(
          token('t1', null, { badProofs: 5, locked: true, lockedAt: AT }),
        );
        // A locked token is used no more, like a revoked one.
        const err = await reg
          .apply({ nodes: [{ expectRev: 0, next: rec('n', 'accepted') }], useToken: 't1' })
          .catch((e: unknown) => e);
        expect(isStoreConflict(err, 'token')).toBe(true);
        expect(await reg.getNode('n')).toBeUndefined();
      });

      it("applies the operator's revoke and unlock to the token as stored: uses and bad proofs that landed after the caller read it are kept", async () => {
        const { registry: reg } = await open();
        await reg.apply({ putToken: token('t2', 3) });
        await reg.apply({ tokenBadProof: { id: 't2', max: 2, at: AT } });
        await reg.apply({ tokenBadProof: { id: 't2', max: 2, at: AT } });
        const seen = await reg.getToken('t2'); // what an operator command read: locked, 0 used
        expect(seen).toMatchObject({ used: 0, locked: true });
        // A use cannot land while locked; unlock, then a use lands before a second unlock by a
        // caller that still holds the old read.
        await reg.apply({ tokenUpdate: { id: 't2', unlock: true } });
        await reg.apply({ nodes: [{ expectRev: 0, next: rec('u1', 'accepted') }], useToken: 't2' });
        await reg.apply({ tokenBadProof: { id: 't2', max: 5, at: AT } });
        await reg.apply({ tokenUpdate: { id: 't2', unlock: true } });
        expect(await reg.getToken('t2')).toEqual(token('t2', 3, { used: 1, badProofs: 0 }));
        await reg.apply({ nodes: [{ expectRev: 0, next: rec('u2', 'accepted') }], useToken: 't2' });
        await reg.apply({ tokenUpdate: { id: 't2', revokedAt: AT } });
        await reg.apply({ tokenUpdate: { id: 't2', revokedAt: 'later' } });
        expect(await reg.getToken('t2')).toEqual(
          token('t2', 3, { used: 2, badProofs: 0, revoked: true, revokedAt: AT }),
        );
        const before = await snapshot(reg);
        const err = await reg
          .apply({ tokenUpdate: { id: 'nope', unlock: true }, events: [{ type: 'token' }] })
          .catch((e: unknown) => e);
        expect(isStoreConflict(err, 'token')).toBe(true);
        expect(await snapshot(reg)).toEqual(before);
      });

      it('creates no record for an unknown token id and counts nothing for a revoked one', async () => {
        const { registry: reg } = await open();
        await reg.apply({ putToken: token('rev', null, { revoked: true }) });
        const before = await snapshot(reg);
        for (let i = 0; i < 3; i++) {
          await reg.apply({ tokenBadProof: { id: 'nope', max: 2, at: AT } });
          await reg.apply({ tokenBadProof: { id: 'rev', max: 2, at: AT } });
        }
        expect(await snapshot(reg)).toEqual(before);
        expect(await reg.getToken('nope')).toBeUndefined();
      });

      it('keeps failure counts and a lock across a restart, and counts on from there', async (ctx) => {
        const h = await open();
        if (!h.reopen) return ctx.skip();
        await h.registry.apply({ setInstallMode: open5(1000) });
        await h.registry.apply({ putToken: token('a', null) });
        await h.registry.apply({ putToken: token('b', null) });
        for (let i = 0; i < 3; i++) {
          await h.registry.apply({ installModeFailure: { since: 1000, max: 4 } });
          await h.registry.apply({ tokenBadProof: { id: 'a', max: 4, at: AT } });
        }
        for (let i = 0; i < 2; i++) await h.registry.apply({ tokenBadProof: { id: 'b', max: 2, at: AT } });
        const reg = await h.reopen();
        expect((await reg.getInstallMode()).failures).toBe(3);
        expect(await reg.getToken('a')).toMatchObject({ badProofs: 3 });
        expect(await reg.getToken('b')).toMatchObject({ badProofs: 2, locked: true });
        await reg.apply({ installModeFailure: { since: 1000, max: 4 } });
        await reg.apply({ tokenBadProof: { id: 'a', max: 4, at: AT } });
        expect(await reg.getInstallMode()).toMatchObject({ on: false, failures: 4 });
        expect(await reg.getToken('a')).toMatchObject({ badProofs: 4, locked: true });
      });
    });

    describe('serials and revocations', () => {
      it('hands out unique serial counters, also when asked concurrently', async () => {
        const { registry: reg } = await open();
        const got = await Promise.all(Array.from({ length: 50 }, () => reg.allocateSerial()));
        expect(new Set(got).size).toBe(50);
        for (const c of got) expect(c).toBeGreaterThan(0);
        expect(await reg.allocateSerial()).toBeGreaterThan(Math.max(...got));
      });

      it('lists the serials written, by counter, a page at a time', async () => {
        const { registry: reg } = await open();
        const written = [];
        for (let i = 0; i < 7; i++) {
          const counter = await reg.allocateSerial();
          if (i === 3) continue; // allocated, never issued: a gap
          const s = { counter, serial: `0${counter.toString(16)}aa`, name: `n-${i}` };
          await reg.apply({
            nodes: [{ expectRev: 0, next: rec(s.name, 'issued', { serial: s.serial }) }],
            serial: s,
          });
          written.push(s);
        }
        expect(await reg.listSerials()).toEqual(written);
        expect(await reg.listSerials({ limit: 2 })).toEqual(written.slice(0, 2));
        expect(await reg.listSerials({ after: written[1]!.counter, limit: 3 })).toEqual(written.slice(2, 5));
        expect(await reg.listSerials({ after: written[5]!.counter })).toEqual([]);
      });

      it('never hands out a serial counter again after a restart, even one never written', async (ctx) => {
        const h = await open();
        if (!h.reopen) return ctx.skip();
        const before = await Promise.all(Array.from({ length: 5 }, () => h.registry.allocateSerial()));
        await h.registry.apply({ serial: { counter: before[0]!, serial: '01', name: 'a' } });
        const reg = await h.reopen();
        const after = await Promise.all(Array.from({ length: 5 }, () => reg.allocateSerial()));
        for (const c of after) expect(before).not.toContain(c);
        expect(new Set(after).size).toBe(5);
      });

      it('records revocations and answers isRevoked', async () => {
        const { registry: reg } = await open();
        expect(await reg.listRevocations()).toEqual([]);
        const r1 = { serial: '0b', name: 'b', at: '2026-01-02T00:00:00.000Z', reason: 'removed by operator' };
        const r2 = { serial: '0a', name: 'a', at: '2026-01-03T00:00:00.000Z', reason: 'rebuilt' };
        await reg.apply({ revoke: r1, events: [{ type: 'removed', name: 'b' }] });
        await reg.apply({ revoke: r2 });
        expect(await reg.isRevoked('0b')).toBe(true);
        expect(await reg.isRevoked('0a')).toBe(true);
        expect(await reg.isRevoked('0c')).toBe(false);
        expect((await reg.listRevocations()).sort((x, y) => x.serial.localeCompare(y.serial))).toEqual([
          r2,
          r1,
        ]);
      });
    });

    describe('pre-approvals and bans', () => {
      const pa = (name: string, over: Partial<Preapproval> = {}): Preapproval => ({
        name,
        expiresAt: null,
        createdAt: '2026-01-01T00:00:00.000Z',
        by: 'operator',
        ...over,
      });

      it('keeps one pre-approval per name, replaced by a put and gone after a delete', async () => {
        const { registry: reg } = await open();
        expect(await reg.getPreapproval('a')).toBeUndefined();
        await reg.apply({ putPreapproval: pa('b', { key: 'k1' }) });
        await reg.apply({ putPreapproval: pa('a', { role: 'db', expiresAt: 5 }) });
        await reg.apply({ putPreapproval: pa('b', { key: 'k2' }) });
        expect(await reg.getPreapproval('b')).toEqual(pa('b', { key: 'k2' }));
        expect((await reg.listPreapprovals()).map((p) => p.name)).toEqual(['a', 'b']);
        await reg.apply({ deletePreapproval: 'a' });
        expect(await reg.getPreapproval('a')).toBeUndefined();
        expect(await reg.listPreapprovals()).toEqual([pa('b', { key: 'k2' })]);
      });

      it('consumes a pre-approval with the acceptance it admits, exactly once under concurrency', async () => {
        const { registry: reg } = await open();
        await reg.apply({ putPreapproval: pa('a') });
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, i) =>
            reg.apply({
              nodes: [{ expectRev: 0, next: rec(`a-${i}`, 'accepted') }],
              usePreapproval: { name: 'a' },
              events: [{ type: 'accepted', name: `a-${i}` }],
            }),
          ),
        );
        const { ok, errors } = outcomes(results);
        expect(ok).toHaveLength(1);
        expect(errors).toHaveLength(7);
        for (const e of errors) expect(isStoreConflict(e, 'preapproval')).toBe(true);
        expect(await reg.getPreapproval('a')).toBeUndefined();
        expect((await reg.counts()).accepted).toBe(1);
        await expectEvents(reg, 1);
      });

      it('refuses to consume a missing or expired pre-approval and changes nothing', async () => {
        const { registry: reg } = await open();
        await reg.apply({ putPreapproval: pa('a', { expiresAt: 1000 }) });
        const before = await snapshot(reg);
        for (const change of [
          { usePreapproval: { name: 'other' } },
          { usePreapproval: { name: 'a', now: 1000 } },
        ] satisfies Change[]) {
          await expect(
            reg.apply({ ...change, nodes: [{ expectRev: 0, next: rec('x', 'accepted') }] }),
          ).rejects.toSatisfy((e: unknown) => isStoreConflict(e, 'preapproval'));
        }
        expect(await snapshot(reg)).toEqual(before);
        expect(await reg.getPreapproval('a')).toEqual(pa('a', { expiresAt: 1000 }));
        await reg.apply({ usePreapproval: { name: 'a', now: 999 } });
        expect(await reg.getPreapproval('a')).toBeUndefined();
      });

      it('keeps bans by kind and value until lifted, also after a restart', async () => {
        const h = await open();
        const byName: Ban = { kind: 'name', value: 'a', createdAt: '2026-01-01T00:00:00.000Z', by: 'op' };
        const byKey: Ban = { ...byName, kind: 'key', value: 'a', reason: 'stolen' };
        await h.registry.apply({ putBan: byKey });
        await h.registry.apply({ putBan: byName, putPreapproval: pa('p') });
        expect(await h.registry.getBan('name', 'a')).toEqual(byName);
        expect(await h.registry.getBan('key', 'a')).toEqual(byKey);
        expect(await h.registry.getBan('name', 'b')).toBeUndefined();
        expect(await h.registry.listBans()).toEqual([byKey, byName]);
        let reg = h.registry;
        if (h.reopen) {
          reg = await h.reopen();
          expect(await reg.listBans()).toEqual([byKey, byName]);
          expect(await reg.getPreapproval('p')).toEqual(pa('p'));
        }
        await reg.apply({ deleteBan: { kind: 'key', value: 'a' } });
        expect(await reg.getBan('key', 'a')).toBeUndefined();
        expect(await reg.listBans()).toEqual([byName]);
        if (h.reopen) {
          reg = await h.reopen();
          expect(await reg.listBans()).toEqual([byName]);
        }
      });

      it('a put after a delete in queued changes leaves the put, a delete after a put leaves nothing', async () => {
        const { registry: reg } = await open();
        await Promise.all([
          reg.apply({ putPreapproval: pa('a') }),
          reg.apply({ deletePreapproval: 'a' }),
          reg.apply({ putPreapproval: pa('b') }),
          reg.apply({ deletePreapproval: 'b' }),
          reg.apply({ putPreapproval: pa('b', { by: 'again' }) }),
        ]);
        expect(await reg.listPreapprovals()).toEqual([pa('b', { by: 'again' })]);
      });
    });

    describe('events', () => {
      it('numbers events in order, stamps them with the injected clock, and lists them by page', async () => {
        const clock = new ManualClock(Date.UTC(2026, 4, 1));
        const { registry: reg } = await open({ now: () => clock.now() });
        expect(await reg.lastEventSeq()).toBe(0);
        expect(await reg.listEvents(0, 10)).toEqual([]);
        const first = await reg.apply({
          events: [
            { type: 'token', detail: { action: 'created', id: 't1' } },
            { type: 'pending', name: 'a', detail: { reason: 'approval' } },
          ],
        });
        clock.advance(1500);
        const second = await reg.apply({ events: [{ type: 'group', name: 'a', detail: { group: 'g' } }] });
        const t0 = '2026-05-01T00:00:00.000Z';
        const [s1, s2, s3] = [...first, ...second].map((e) => e.seq) as [number, number, number];
        expectNumbered([s1, s2, s3], 1);
        expect([...first, ...second]).toEqual([
          { seq: s1, at: t0, type: 'token', detail: { action: 'created', id: 't1' } },
          { seq: s2, at: t0, type: 'pending', name: 'a', detail: { reason: 'approval' } },
          { seq: s3, at: '2026-05-01T00:00:01.500Z', type: 'group', name: 'a', detail: { group: 'g' } },
        ]);
        expect(await reg.lastEventSeq()).toBe(s3);
        expect(await reg.listEvents(0, 10)).toEqual([...first, ...second]);
        expect(await reg.listEvents(0, 2)).toEqual(first);
        expect(await reg.listEvents(s1, 1)).toEqual([first[1]]);
        expect(await reg.listEvents(s2, 10)).toEqual(second);
        expect(await reg.listEvents(s3, 10)).toEqual([]);
        expect(await reg.apply({ putToken: token('quiet', 1) })).toEqual([]);
        expect(await reg.lastEventSeq()).toBe(s3);
      });

      it('keeps the newest eventRetention events; numbering goes on', async () => {
        const h = await open({ eventRetention: 5 });
        const seqs: number[] = [];
        const add = async (reg: Registry, n: number): Promise<void> => {
          const evs = await reg.apply({
            events: Array.from({ length: n }, (_, i) => ({ type: 'token' as const, detail: { i } })),
          });
          seqs.push(...evs.map((e) => e.seq));
        };
        for (let i = 0; i < 8; i++) await add(h.registry, 1);
        expectNumbered(seqs, 1);
        expect((await h.registry.listEvents(0, 100)).map((e) => e.seq)).toEqual(seqs.slice(3, 8));
        expect(await h.registry.lastEventSeq()).toBe(seqs[7]);
        // Several events in one change each push out one old event.
        await add(h.registry, 3);
        expectNumbered(seqs, 1);
        expect((await h.registry.listEvents(0, 100)).map((e) => e.seq)).toEqual(seqs.slice(6, 11));
        if (h.reopen) {
          const reg = await h.reopen();
          expect(await reg.lastEventSeq()).toBe(seqs[10]);
          await add(reg, 1);
          expectNumbered(seqs, 1);
          expect((await reg.listEvents(0, 100)).map((e) => e.seq)).toEqual(seqs.slice(7, 12));
        }
      });

      it('watch hears every event once, in order, after apply() resolved and its state is readable', async () => {
        const { registry: reg } = await open();
        const heard: { ev: MusterEvent; resolved: boolean; node: Promise<NodeRecord | undefined> }[] = [];
        const resolved = new Set<number>();
        reg.watch((ev) =>
          heard.push({ ev, resolved: resolved.has(ev.seq), node: reg.getNode(ev.name ?? '') }),
        );
        const applies = Array.from({ length: 30 }, (_, i) =>
          reg
            .apply({
              nodes: [{ expectRev: 0, next: rec(`n-${i}`, 'pending') }],
              events: [
                { type: 'pending', name: `n-${i}` },
                ...(i % 4 === 0 ? [{ type: 'group' as const, name: `n-${i}` }] : []),
              ],
            })
            .then((evs) => {
              for (const e of evs) resolved.add(e.seq);
              return evs;
            }),
        );
        const total = (await Promise.all(applies)).flat().length;
        await eventually(() => heard.length >= total);
        expect(heard.map((h) => h.ev.seq)).toEqual([...resolved].sort((x, y) => x - y));
        expectNumbered(
          heard.map((h) => h.ev.seq),
          1,
        );
        expect(heard.every((h) => h.resolved)).toBe(true);
        for (const h of heard) expect(await h.node).toMatchObject({ name: h.ev.name, rev: 1 });
        expect(heard.map((h) => h.ev)).toEqual(await reg.listEvents(0, 100));
      });

      it('a watcher hears only events after it subscribed, and nothing after it unsubscribed', async () => {
        const { registry: reg } = await open();
        const one = async (): Promise<number> => (await reg.apply({ events: [{ type: 'token' }] }))[0]!.seq;
        const s1 = await one();
        const early: number[] = [];
        const late: number[] = [];
        const stopEarly = reg.watch((ev) => early.push(ev.seq));
        const s2 = await one();
        const stopLate = reg.watch((ev) => late.push(ev.seq));
        const s3 = await one();
        await eventually(() => late.length === 1);
        stopEarly();
        const s4 = await one();
        await eventually(() => late.length === 2);
        expectNumbered([s1, s2, s3, s4], 1);
        expect(early).toEqual([s2, s3]);
        expect(late).toEqual([s3, s4]);
        stopLate();
      });
    });

    describe('restart and close', () => {
      it('keeps everything across a restart', async (ctx) => {
        const h = await open({ eventRetention: 1000 });
        if (!h.reopen) return ctx.skip();
        let reg = h.registry;
        await reg.identity(() => 'r-1');
        for (const n of ['a', 'b', 'c']) await create(reg, n);
        await move(reg, 'a', 'accepted');
        await move(reg, 'b', 'removed');
        await reg.apply({
          nodes: [{ expectRev: 2, next: rec('b', 'pending', { key: 'new' }), archivePrev: true }],
        });
        await reg.apply({ putToken: token('t1', 4) });
        await reg.apply({ useToken: 't1' });
        await reg.apply({
          setInstallMode: { on: true, since: 5, until: 10, max: 2, accepted: 0, remote: true },
        });
        await reg.apply({ useInstallMode: { since: 5 } });
        const counter = await reg.allocateSerial();
        await reg.apply({ serial: { counter, serial: '7f01', name: 'a' } });
        await reg.apply({
          revoke: { serial: '7f00', name: 'b', at: '2026-01-01T00:00:00.000Z', reason: 'removed' },
        });
        const before = await snapshot(reg);
        const history = await reg.history('b');
        expect(history).toHaveLength(1);
        reg = await h.reopen();
        expect(await snapshot(reg)).toEqual(before);
        expect(await reg.history('b')).toEqual(history);
        expect(await reg.identity(() => 'r-2')).toBe('r-1');
        expect(await reg.namesInState('pending')).toEqual(['b', 'c']);
        expect(await reg.isRevoked('7f00')).toBe(true);
        // Writing goes on from where it was: revs, uses, event numbers.
        await move(reg, 'a', 'issued');
        expect(await reg.getNode('a')).toMatchObject({ rev: 3 });
        await reg.apply({ useToken: 't1' });
        expect((await reg.getToken('t1'))!.used).toBe(2);
        await expectEvents(reg, 1, before.lastEventSeq);
      });

      it('close() waits for the changes already called for; they are there after a restart', async (ctx) => {
        const h = await open();
        if (!h.reopen) return ctx.skip();
        await h.registry.apply({ putToken: token('t', 100) });
        await h.registry.apply({
          setInstallMode: { on: true, since: 7, max: null, accepted: 0, remote: false },
        });
        // Many changes in flight at once: written together, each token and install-mode use counts.
        const applies = Array.from({ length: 40 }, (_, i) =>
          h.registry.apply({
            nodes: [{ expectRev: 0, next: rec(`n-${String(i).padStart(2, '0')}`, 'accepted') }],
            ...(i % 2 ? { useToken: 't' } : { useInstallMode: { since: 7 } }),
            events: [{ type: 'accepted', name: `n-${i}` }],
          }),
        );
        const reg = await h.reopen(); // closes the first without awaiting the applies
        expect((await Promise.all(applies)).flat()).toHaveLength(40);
        await expectEvents(reg, 40);
        expect((await reg.counts()).accepted).toBe(40);
        expect((await reg.getToken('t'))!.used).toBe(20);
        expect((await reg.getInstallMode()).accepted).toBe(20);
        expect(await reg.listNodes({ limit: 100 })).toHaveLength(40);
      });

      it('refuses changes after close()', async () => {
        const { registry: reg } = await open();
        await reg.close();
        await expect(reg.apply({ events: [{ type: 'token' }] })).rejects.toThrow(/closed/);
      });
    });
  });
}
