/**
 * The store benchmark (src/bench/store.ts) writes its million-record stores with bulkLoadLevel, not
 * one apply() per transition. Its figures mean something only if that store is the one the registrar
 * itself would have written: same records, indexes, counters, serials, revocations, events and token
 * uses. Both builders run the same transitions here and the stores are compared through the
 * Registry interface (per-build randomness — keys, certificates, token id, times — masked).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildStore, buildStoreThroughRegistry, type BuiltStore } from '../../src/bench/store.js';
import { bulkLoadLevel, LevelRegistry } from '../../src/store/level.js';
import type { Registry } from '../../src/store/registry.js';
import { rec } from './contract.js';

const N = 250; // covers every kind of node (i % 100) and more than one 100-block
const dirs: string[] = [];
const temp = (): string => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'muster-bulk-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const ISO = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g;

async function snapshot(b: BuiltStore): Promise<Record<string, unknown>> {
  const reg: Registry = await LevelRegistry.open(path.join(b.stateDir, 'registry'));
  try {
    const mask = (v: unknown): unknown =>
      JSON.parse(JSON.stringify(v).replace(ISO, 'TIME').split(b.tokenId).join('TOKEN'));
    const nodes = await reg.listNodes({ limit: 10 * N });
    const byName = (xs: { name?: string }[]) => xs.map((x) => x.name).sort();
    const events = await reg.listEvents(0, 10 * N);
    const token = (await reg.getToken(b.tokenId))!;
    return {
      counts: await reg.counts(),
      groups: await reg.listGroups(),
      nodes: nodes.map(({ key, spki, certificate, serial, ...rest }) => ({
        ...(mask(rest) as object),
        key: typeof key,
        spki: typeof spki,
        certificate: typeof certificate,
        serial: typeof serial,
      })),
      byState: Object.fromEntries(
        await Promise.all(
          (['pending', 'issued', 'active', 'removed'] as const).map(async (s) => [
            s,
            (await reg.listNodes({ state: s, limit: 10 * N })).map((r) => r.name),
          ]),
        ),
      ),
      // The bulk store's waiting index is filled by its first open (LevelRegistry.fillWaitingIndex):
      // the same entries as the store written change by change.
      waiting: Object.fromEntries(
        await Promise.all(
          (['pending', 'issued'] as const).map(async (s) => [
            s,
            await Promise.all(
              (await reg.listWaiting({ state: s, limit: 10 * N })).map(async (e) => {
                const r = (await reg.getNode(e.name))!;
                expect(e.enteredAt).toBe(Date.parse(r.times[s]!));
                return { name: e.name, address: e.address };
              }),
            ),
          ]),
        ),
      ),
      serials: byName(await reg.listSerials()),
      maxSerialCounter: Math.max(...(await reg.listSerials()).map((s) => s.counter)),
      revocations: byName(await reg.listRevocations()),
      lastEventSeq: await reg.lastEventSeq(),
      eventSeqs: events.map((e) => e.seq),
      // apply() order interleaves nodes (many in flight): compare the events as a set.
      events: events
        .map(({ seq: _s, at: _a, detail, ...e }) => {
          const { key: _k, serial: _n, ...d } = (detail ?? {}) as Record<string, unknown>;
          return JSON.stringify(mask({ ...e, detail: d }));
        })
        .sort(),
      token: { used: token.used, maxUses: token.maxUses, expiresAt: token.expiresAt, revoked: token.revoked },
      id: await reg.identity(() => 'made-at-open'),
    };
  } finally {
    await reg.close();
  }
}

describe('bench store: bulk load vs apply()', () => {
  it('leaves the same registry as the transitions written one by one', async () => {
    const bulk = await snapshot(await buildStore(temp(), N));
    const applied = await snapshot(await buildStoreThroughRegistry(temp(), N));
    expect(bulk.id).not.toBe('made-at-open');
    expect(applied.id).not.toBe('made-at-open');
    const { id: _b, ...b } = bulk;
    const { id: _a, ...a } = applied;
    expect(b).toEqual(a);
    expect(b.lastEventSeq).toBeGreaterThan(N);
  });

  it("says in the owner's log when its first open builds the waiting index, and only then", async () => {
    const dir = path.join(temp(), 'registry');
    const nodes = [
      ...['p1', 'p2', 'p3'].map((n) => rec(n, 'pending')),
      ...['i1', 'i2'].map((n) => rec(n, 'issued')),
      rec('a1', 'active'),
    ];
    await bulkLoadLevel(dir, { id: 'r-x' }, [{ nodes }]);
    const lines: [string, string, Record<string, unknown>][] = [];
    const log = (level: string, message: string, detail: Record<string, unknown>): void => {
      lines.push([level, message, detail]);
    };
    const first = await LevelRegistry.open(dir, { log });
    try {
      expect((await first.listWaiting({ state: 'pending', limit: 10 })).map((e) => e.name)).toEqual([
        'p1',
        'p2',
        'p3',
      ]);
    } finally {
      await first.close();
    }
    expect(lines.map(([level, message, { ms: _ms, ...d }]) => [level, message, d])).toEqual([
      [
        'info',
        "building the store's index of waiting nodes, once (an earlier muster wrote this store)",
        { state: 'pending', nodes: 3 },
      ],
      ['info', "the store's index of waiting nodes is built", { state: 'pending', entries: 3 }],
      [
        'info',
        "building the store's index of waiting nodes, once (an earlier muster wrote this store)",
        { state: 'issued', nodes: 2 },
      ],
      ['info', "the store's index of waiting nodes is built", { state: 'issued', entries: 2 }],
    ]);
    lines.length = 0;
    await (await LevelRegistry.open(dir, { log })).close();
    expect(lines).toEqual([]);
  });

  it('keeps the newest eventRetention events, as apply() trims them', async () => {
    const dir = path.join(temp(), 'registry');
    const events = Array.from({ length: 25 }, (_, i) => ({
      at: new Date(1_000 + i).toISOString(),
      type: 'pending' as const,
      name: `n${i}`,
    }));
    await bulkLoadLevel(dir, { id: 'r-x', eventRetention: 10 }, [
      { events: events.slice(0, 12) },
      { events: events.slice(12) },
    ]);
    const reg = await LevelRegistry.open(dir, { eventRetention: 10 });
    try {
      expect(await reg.lastEventSeq()).toBe(25);
      const kept = await reg.listEvents(0, 100);
      expect(kept.map((e) => [e.seq, e.name])).toEqual(
        Array.from({ length: 10 }, (_, k) => [16 + k, `n${15 + k}`]),
      );
    } finally {
      await reg.close();
    }
  });

  it('refuses a directory that already holds a store, writing nothing', async () => {
    const dir = path.join(temp(), 'registry');
    const reg = await LevelRegistry.open(dir);
    await reg.identity(() => 'r-first');
    await reg.close();
    await expect(
      bulkLoadLevel(dir, { id: 'r-second' }, [
        { events: [{ at: new Date(0).toISOString(), type: 'pending', name: 'x' }] },
      ]),
    ).rejects.toThrow(/already holds a store/);
    const again = await LevelRegistry.open(dir);
    try {
      expect(await again.identity(() => 'unused')).toBe('r-first');
      expect(await again.lastEventSeq()).toBe(0);
    } finally {
      await again.close();
    }
  });
});
