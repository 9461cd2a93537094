/**
 * The etcd backend against the registry contract, on a three-member etcd cluster the test starts on
 * loopback ports, and what only a shared store has: several registries (registrars) on one prefix
 * deciding at once, events heard across them, and etcd unreachable.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MusterError } from '../../src/common/errors.js';
import { Etcd3 } from 'etcd3';
import { EtcdRegistry, etcdStats } from '../../src/store/etcd.js';
import { openRegistry } from '../../src/store/index.js';
import {
  isStoreConflict,
  type MusterEvent,
  type Registry,
  type RegistryOptions,
} from '../../src/store/registry.js';
import { startEtcdCluster, etcdSuite, type EtcdCluster } from '../helpers/etcd.js';
import { rec, registryContract, token } from './contract.js';

const gate = etcdSuite('store/etcd');

describe.skipIf(gate.skip)('etcd registry', () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await startEtcdCluster({ members: 3 });
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  /** Each case its own prefix: one cluster serves the whole file. */
  const freshPrefix = (): string => `/muster-test/${randomBytes(6).toString('hex')}/`;

  registryContract(
    'etcd',
    async (opts?: RegistryOptions) => {
      const prefix = freshPrefix();
      let current: Registry = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix }, opts);
      return {
        registry: current,
        reopen: async () => {
          await current.close();
          current = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix }, opts);
          return current;
        },
        cleanup: async () => {
          await current.close();
        },
      };
    },
    // Event numbers come from etcd revisions: increasing in commit order, with gaps.
    { denseEvents: false },
  );

  /** Two registrars' registries on one prefix (DESIGN "Exactly once" across registrars). */
  async function pair(): Promise<[Registry, Registry]> {
    const prefix = freshPrefix();
    const a = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix });
    const b = await EtcdRegistry.open({ endpoints: [...cluster.endpoints].reverse(), prefix });
    return [a, b];
  }
  /**
   * What a transaction A sends is: a commit (compares), the indexing of its committed events (writes
   * with no compare), or a read.
   */
  type TxnReq = { compare?: unknown[]; success?: Record<string, unknown>[] };
  const kindOf = (req: TxnReq): 'commit' | 'index' | 'read' =>
    (req.compare?.length ?? 0) > 0
      ? 'commit'
      : (req.success ?? []).some((op) => !op.request_range)
        ? 'index'
        : 'read';
  const settled = async <T>(ps: Promise<T>[]) => {
    const rs = await Promise.allSettled(ps);
    return {
      ok: rs
        .filter((r): r is PromiseFulfilledResult<Awaited<T>> => r.status === 'fulfilled')
        .map((r) => r.value),
      errors: rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason),
    };
  };

  describe('several registrars on one registry', () => {
    it('of racing creates of the same names from two registrars, exactly one per name lands', async () => {
      const [a, b] = await pair();
      try {
        const names = Array.from({ length: 20 }, (_, i) => `race-${i}`);
        const attempts = names.flatMap((name) =>
          [a, b, a, b].map((reg, i) =>
            reg.apply({
              nodes: [{ expectRev: 0, next: rec(name, 'pending', { key: `key-${i}` }) }],
              events: [{ type: 'pending', name }],
            }),
          ),
        );
        const { ok, errors } = await settled(attempts);
        expect(ok).toHaveLength(names.length);
        expect(errors.every((e) => isStoreConflict(e, 'node'))).toBe(true);
        expect(new Set(ok.map((evs) => evs[0]!.name))).toEqual(new Set(names));
        // Event numbers are unique across both registrars, and the log holds exactly the winners'.
        const seqs = ok.map((evs) => evs[0]!.seq).sort((x, y) => x - y);
        expect(new Set(seqs).size).toBe(names.length);
        for (const reg of [a, b]) {
          expect((await reg.counts()).pending).toBe(names.length);
          expect((await reg.listEvents(0, 100)).map((e) => e.seq)).toEqual(seqs);
          expect(await reg.lastEventSeq()).toBe(seqs.at(-1));
        }
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('counts a token and install mode exactly across registrars', async () => {
      const [a, b] = await pair();
      try {
        await a.apply({
          putToken: token('shared', 7),
          setInstallMode: { on: true, since: 42, max: 5, accepted: 0, remote: false },
        });
        const uses = await settled(
          Array.from({ length: 16 }, (_, i) =>
            (i % 2 ? a : b).apply({
              nodes: [{ expectRev: 0, next: rec(`t-${i}`, 'accepted') }],
              useToken: 'shared',
            }),
          ),
        );
        expect(uses.ok).toHaveLength(7);
        expect(uses.errors.every((e) => isStoreConflict(e, 'token'))).toBe(true);
        expect((await b.getToken('shared'))!.used).toBe(7);
        const windowUses = await settled(
          Array.from({ length: 12 }, (_, i) =>
            (i % 2 ? b : a).apply({
              nodes: [{ expectRev: 0, next: rec(`w-${i}`, 'accepted') }],
              useInstallMode: { since: 42 },
            }),
          ),
        );
        expect(windowUses.ok).toHaveLength(5);
        expect(windowUses.errors.every((e) => isStoreConflict(e, 'install-mode'))).toBe(true);
        expect(await a.getInstallMode()).toMatchObject({ on: false, accepted: 5 });
        expect((await a.counts()).accepted).toBe(12);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('a group that loses its compare to another registrar is decided again on what the failed transaction read', async () => {
      const [a, b] = await pair();
      try {
        await a.apply({ putToken: token('both', 2) });
        const kv = (a as unknown as { client: { kv: Record<string, (...x: any[]) => Promise<any>> } }).client
          .kv;
        const orig = kv.txn!.bind(kv);
        const sent: string[] = [];
        let raced = false;
        let fromB = 0;
        kv.txn = async (req: TxnReq, ...rest: unknown[]) => {
          const kind = kindOf(req);
          if (kind !== 'index') sent.push(kind);
          // B uses the token between A's read and A's commit.
          if (kind === 'commit' && !raced) {
            raced = true;
            const evs = await b.apply({
              nodes: [{ expectRev: 0, next: rec('from-b', 'accepted') }],
              useToken: 'both',
              events: [{ type: 'accepted', name: 'from-b' }],
            });
            fromB = evs[0]!.seq;
          }
          return orig(req, ...rest);
        };
        const evs = await a.apply({
          nodes: [{ expectRev: 0, next: rec('from-a', 'accepted') }],
          useToken: 'both',
          events: [{ type: 'accepted', name: 'from-a' }],
        });
        // Read, commit (lost: B moved the token), commit again on what the failure branch read: no
        // second read, and A's change counts on top of B's (and its event comes after B's).
        expect(sent).toEqual(['read', 'commit', 'commit']);
        expect(evs[0]!.seq).toBeGreaterThan(fromB);
        expect((await b.getToken('both'))!.used).toBe(2);
        // The token is used up now: a third use is refused, across registrars.
        const err = await b
          .apply({ nodes: [{ expectRev: 0, next: rec('third', 'accepted') }], useToken: 'both' })
          .catch((e: unknown) => e);
        expect(isStoreConflict(err, 'token')).toBe(true);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('a commit may decide on values it saw before without reading them; a stale one never decides wrong', async () => {
      const [a, b] = await pair();
      try {
        const [created] = await a.apply({ putToken: token('once', 1), events: [{ type: 'token' }] });
        // A has now seen every key its next change depends on: the node (absent), the token.
        expect(await a.getNode('x')).toBeUndefined();
        expect((await a.getToken('once'))!.used).toBe(0);
        const kv = (a as unknown as { client: { kv: Record<string, (...x: any[]) => Promise<any>> } }).client
          .kv;
        const orig = kv.txn!.bind(kv);
        const sent: string[] = [];
        kv.txn = async (req: TxnReq, ...rest: unknown[]) => {
          if (kindOf(req) !== 'index') sent.push(kindOf(req));
          return orig(req, ...rest);
        };
        // Meanwhile B uses the token up: what A saw of it is stale.
        await b.apply({ nodes: [{ expectRev: 0, next: rec('y', 'accepted') }], useToken: 'once' });
        const err = await a
          .apply({
            nodes: [{ expectRev: 0, next: rec('x', 'accepted') }],
            useToken: 'once',
            events: [{ type: 'accepted', name: 'x' }],
          })
          .catch((e: unknown) => e);
        // No read first; the commit lost its compare, and on what its failure branch read, the
        // token is used up: refused, nothing of it written.
        expect(sent).toEqual(['commit']);
        expect(isStoreConflict(err, 'token')).toBe(true);
        expect(await b.getNode('x')).toBeUndefined();
        expect(await b.lastEventSeq()).toBe(created!.seq);
        // With nothing stale, a change on seen keys is one transaction.
        sent.length = 0;
        await a.apply({
          nodes: [{ expectRev: 0, next: rec('x', 'pending') }],
          events: [{ type: 'pending' }],
        });
        expect(sent).toEqual(['commit']);
        expect(await b.getNode('x')).toMatchObject({ state: 'pending', rev: 1 });
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('a refusal decided on a remembered value is decided again on a fresh read (another registrar opened install mode)', async () => {
      const [a, b] = await pair();
      try {
        const use = () =>
          a.apply({ nodes: [{ expectRev: 0, next: rec('im', 'accepted') }], useInstallMode: { since: 7 } });
        // A sees install mode off (and remembers it), then B opens it.
        expect(isStoreConflict(await use().catch((e: unknown) => e), 'install-mode')).toBe(true);
        await b.apply({ setInstallMode: { on: true, since: 7, max: 1, accepted: 0, remote: false } });
        await use();
        expect(await b.getInstallMode()).toMatchObject({ on: false, accepted: 1 });
        expect(await b.getNode('im')).toMatchObject({ state: 'accepted' });
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('never hands out one serial counter twice across registrars', async () => {
      const [a, b] = await pair();
      try {
        const counters = await Promise.all(
          Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).allocateSerial()),
        );
        expect(new Set(counters).size).toBe(counters.length);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("a registrar's watch hears the other's events, in order, once (long polls across registrars)", async () => {
      const [a, b] = await pair();
      try {
        const heardByB: MusterEvent[] = [];
        const stop = b.watch((ev) => heardByB.push(ev));
        const [{ seq: s1 }] = (await a.apply({
          nodes: [{ expectRev: 0, next: rec('x', 'pending') }],
          events: [{ type: 'pending', name: 'x' }],
        })) as [MusterEvent];
        const [{ seq: s2 }] = (await b.apply({ events: [{ type: 'token' }] })) as [MusterEvent];
        const x = (await b.getNode('x'))!;
        const [{ seq: s3 }] = (await a.apply({
          nodes: [{ expectRev: x.rev, next: { ...x, state: 'accepted' } }],
          events: [{ type: 'accepted', name: 'x' }],
        })) as [MusterEvent];
        for (let i = 0; i < 400 && heardByB.length < 3; i++) await new Promise((r) => setTimeout(r, 5));
        expect(heardByB.map((e) => [e.seq, e.type])).toEqual([
          [s1, 'pending'],
          [s2, 'token'],
          [s3, 'accepted'],
        ]);
        expect(s1 < s2 && s2 < s3).toBe(true);
        expect(heardByB).toEqual(await a.listEvents(0, 10));
        stop();
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("two registrars' commits on names of their own never conflict: events share no counter", async () => {
      const [a, b] = await pair();
      try {
        const before = etcdStats();
        const evs = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            (i % 2 ? a : b).apply({
              nodes: [{ expectRev: 0, next: rec(`own-${i}`, 'accepted') }],
              events: [{ type: 'accepted', name: `own-${i}` }],
            }),
          ),
        );
        const after = etcdStats();
        expect(after.changes - before.changes).toBe(40);
        expect(after.lost - before.lost).toBe(0);
        const seqs = evs.map((e) => e[0]!.seq).sort((x, y) => x - y);
        expect(new Set(seqs).size).toBe(40);
        for (const reg of [a, b]) expect((await reg.listEvents(0, 100)).map((e) => e.seq)).toEqual(seqs);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('events a registrar committed but had not indexed when it stopped are listed, then indexed by the next to open', async () => {
      const prefix = freshPrefix();
      const raw = new Etcd3({ hosts: cluster.endpoints.map((e) => `http://${e}`) });
      const keys = async (sub: string) =>
        (
          await raw
            .getAll()
            .prefix(prefix + sub)
            .keys()
        ).length;
      const a = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix });
      try {
        // As if it crashed right after its commit: nothing indexes what it staged.
        (a as unknown as { flushIndex: () => Promise<void> }).flushIndex = async () => undefined;
        const evs = await a.apply({
          events: [
            { type: 'token', name: 'one' },
            { type: 'token', name: 'two' },
          ],
        });
        expect([await keys('q/'), await keys('e/')]).toEqual([1, 0]);
        expect(await a.listEvents(0, 10)).toEqual(evs);
        expect(await a.lastEventSeq()).toBe(evs[1]!.seq);
        await a.close();
        const b = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix });
        try {
          expect([await keys('q/'), await keys('e/')]).toEqual([0, 2]);
          expect(await b.listEvents(0, 10)).toEqual(evs);
          expect(await b.listEvents(evs[0]!.seq, 10)).toEqual([evs[1]]);
          expect(await b.lastEventSeq()).toBe(evs[1]!.seq);
        } finally {
          await b.close();
        }
      } finally {
        await a.close();
        raw.close();
      }
    });

    it('openRegistry opens it by kind, and each prefix is a registry of its own', async () => {
      const prefix = freshPrefix();
      const reg = await openRegistry({ kind: 'etcd', endpoints: cluster.endpoints, prefix });
      const other = await openRegistry({ kind: 'etcd', endpoints: cluster.endpoints, prefix: freshPrefix() });
      try {
        expect(reg.backend).toBe('etcd');
        await reg.apply({ nodes: [{ expectRev: 0, next: rec('only-here', 'pending') }] });
        expect(await other.getNode('only-here')).toBeUndefined();
        expect(await other.listNodes({ limit: 10 })).toEqual([]);
      } finally {
        await reg.close();
        await other.close();
      }
    });
  });

  describe('reads', () => {
    it('single-key reads asked for together go to etcd as one transaction, each answered with its own key', async () => {
      const reg = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix: freshPrefix() });
      try {
        await reg.apply({
          nodes: [{ expectRev: 0, next: rec('r-1', 'pending') }],
          putToken: token('r-t', 3),
          putBan: { kind: 'name', value: 'r-bad', createdAt: '2026-01-01T00:00:00.000Z', by: 'op' },
        });
        // Count what reaches etcd (the client is private: the test reaches in to watch the wire).
        const kv = (reg as unknown as { client: { kv: Record<string, (...a: unknown[]) => unknown> } }).client
          .kv;
        const calls: string[] = [];
        for (const m of ['range', 'txn'] as const) {
          const orig = kv[m]!.bind(kv);
          kv[m] = (...a: unknown[]) => {
            calls.push(m);
            return orig(...a);
          };
        }
        const [node, again, tok, ban, none, mode] = await Promise.all([
          reg.getNode('r-1'),
          reg.getNode('r-1'),
          reg.getToken('r-t'),
          reg.getBan('name', 'r-bad'),
          reg.getPreapproval('r-1'),
          reg.getInstallMode(),
        ]);
        expect(calls).toEqual(['txn']);
        expect(node).toMatchObject({ name: 'r-1', state: 'pending', rev: 1 });
        expect(again).toEqual(node);
        expect(tok).toMatchObject({ id: 'r-t', maxUses: 3 });
        expect(ban).toMatchObject({ kind: 'name', value: 'r-bad' });
        expect(none).toBeUndefined();
        expect(mode).toMatchObject({ on: false });
        // A read asked for after a change resolved sees it (linearizable, batched or not).
        const cur = (await reg.getNode('r-1'))!;
        await reg.apply({ nodes: [{ expectRev: cur.rev, next: { ...cur, state: 'accepted' } }] });
        expect(await reg.getNode('r-1')).toMatchObject({ state: 'accepted', rev: 2 });
        // Reads that wait for the batch in flight ride along with a commit that goes out meanwhile:
        // the read batch, then the commit with the waiting reads, and no third transaction.
        const moved = (await reg.getNode('r-1'))!;
        calls.length = 0;
        const inFlight = reg.getNode('r-1');
        await Promise.resolve(); // the read batch is on its way
        await Promise.resolve();
        const waiting = [reg.getBan('name', 'r-bad'), reg.getToken('r-t')] as const;
        await reg.apply({ nodes: [{ expectRev: moved.rev, next: { ...moved, state: 'issued' } }] });
        const [banAgain, tokAgain] = await Promise.all(waiting);
        await inFlight;
        expect(calls).toEqual(['txn', 'txn']);
        expect(banAgain).toMatchObject({ kind: 'name', value: 'r-bad' });
        expect(tokAgain).toMatchObject({ id: 'r-t', maxUses: 3 });
        expect(await reg.getNode('r-1')).toMatchObject({ state: 'issued', rev: 3 });
      } finally {
        await reg.close();
      }
    });
  });

  describe('large requests', () => {
    it('lists a page of 1,000 nodes with certificates (more reads than one etcd transaction may hold)', async () => {
      const reg = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix: freshPrefix() });
      try {
        const certificate = 'c'.repeat(6000); // 6 MB a page: above gRPC's default 4 MiB message
        const names = Array.from({ length: 1000 }, (_, i) => `big-${String(i).padStart(4, '0')}`);
        await Promise.all(
          names.map((name) =>
            reg.apply({ nodes: [{ expectRev: 0, next: rec(name, 'issued', { certificate }) }] }),
          ),
        );
        expect((await reg.listNodes({ limit: 1000 })).map((n) => n.name)).toEqual(names);
        expect((await reg.listNodes({ state: 'issued', limit: 1000 })).map((n) => n.name)).toEqual(names);
        expect((await reg.counts()).issued).toBe(1000);
      } finally {
        await reg.close();
      }
    }, 60_000);

    it('splits queued changes that together need more than one transaction may compare or write', async () => {
      const reg = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix: freshPrefix() });
      try {
        const n = 64;
        for (let i = 0; i < n; i++) {
          await reg.apply({
            putToken: token(`t-${i}`, 1),
            putPreapproval: {
              name: `p-${i}`,
              expiresAt: null,
              createdAt: '2026-01-01T00:00:00.000Z',
              by: 'op',
            },
          });
        }
        // Each change reads and guards a token, a pre-approval and two names: 64 of them are
        // queued at once, far beyond one transaction's 128 operations.
        const evs = await Promise.all(
          Array.from({ length: n }, (_, i) =>
            reg.apply({
              nodes: [
                { expectRev: 0, next: rec(`p-${i}`, 'accepted') },
                { expectRev: 0, next: rec(`q-${i}`, 'accepted') },
              ],
              useToken: `t-${i}`,
              usePreapproval: { name: `p-${i}` },
              events: [{ type: 'accepted', name: `p-${i}` }],
            }),
          ),
        );
        // In call order, across the transactions they were split into.
        const seqs = evs.map((e) => e[0]!.seq);
        expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
        expect((await reg.listEvents(0, 1000)).map((e) => e.seq)).toEqual(seqs);
        expect((await reg.counts()).accepted).toBe(2 * n);
        expect(await reg.listPreapprovals()).toEqual([]);
        expect((await reg.listTokens()).every((t) => t.used === 1)).toBe(true);
      } finally {
        await reg.close();
      }
    });
  });

  describe('etcd unavailable', () => {
    it('an open with no etcd listening fails with store_unavailable within its deadline', async () => {
      // A port nothing listens on: taken and released.
      const port = await new Promise<number>((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => resolve(p));
        });
      });
      const err = await EtcdRegistry.open({ endpoints: [`127.0.0.1:${port}`], callTimeoutMs: 500 }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(MusterError);
      expect(err).toMatchObject({ code: 'store_unavailable', status: 503, retryAfter: 2 });
    });

    it('goes on with one member down; without a quorum a change fails whole (503), and lands after', async () => {
      // The default budget of 5 s per call: right after members restart, a call may need a few
      // tries while the client reconnects (a shorter budget fails it on a loaded machine).
      const reg = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix: freshPrefix() });
      try {
        await cluster.kill(2);
        const [landed] = await reg.apply({
          nodes: [{ expectRev: 0, next: rec('one-down', 'pending') }],
          events: [{ type: 'pending' }],
        });
        expect(await reg.getNode('one-down')).toMatchObject({ rev: 1 });

        await cluster.kill(1);
        const err = await reg
          .apply({
            nodes: [{ expectRev: 0, next: rec('no-quorum', 'pending') }],
            putToken: token('no-quorum', 1),
            events: [{ type: 'pending', name: 'no-quorum' }],
          })
          .catch((e: unknown) => e);
        expect(err).toMatchObject({ code: 'store_unavailable', status: 503 });

        await cluster.restart(1);
        await cluster.restart(2);
        // Nothing of the failed change was written: no record, no token, no event.
        expect(await reg.getNode('no-quorum')).toBeUndefined();
        expect(await reg.getToken('no-quorum')).toBeUndefined();
        expect(await reg.lastEventSeq()).toBe(landed!.seq);
        expect(await reg.listEvents(0, 10)).toEqual([landed]);
        // The registry was not stopped by it: the same change lands now.
        await reg.apply({ nodes: [{ expectRev: 0, next: rec('no-quorum', 'pending') }] });
        expect(await reg.getNode('no-quorum')).toMatchObject({ rev: 1 });
      } finally {
        await cluster.restart(1).catch(() => undefined);
        await cluster.restart(2).catch(() => undefined);
        await reg.close();
      }
    }, 60_000);
  });
});
