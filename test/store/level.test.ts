/**
 * The level backend against the registry contract, and what only a store on disk has: records
 * written by earlier versions, fail stop after a failed write, retention lowered between starts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Level } from 'level';
import { bulkLoadLevel, LevelRegistry } from '../../src/store/level.js';
import { openRegistry } from '../../src/store/index.js';
import {
  isStoreConflict,
  WAITING_STATES,
  type Registry,
  type RegistryOptions,
} from '../../src/store/registry.js';
import { rec, registryContract } from './contract.js';

/** A fresh directory under the system temp dir (this suite needs nothing of the registrar helpers). */
function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

async function harness(opts?: RegistryOptions) {
  const t = tempDir('muster-store-');
  const dir = path.join(t.dir, 'registry');
  let current: Registry = await LevelRegistry.open(dir, opts);
  return {
    registry: current,
    reopen: async () => {
      await current.close();
      current = await LevelRegistry.open(dir, opts);
      return current;
    },
    cleanup: async () => {
      await current.close();
      t.cleanup();
    },
  };
}

registryContract('level', harness);

const hex16 = (n: number): string => n.toString(16).padStart(16, '0');

describe('LevelRegistry', () => {
  it('reads a store written before revisions: no rev is rev 1, channel http is https', async () => {
    const t = tempDir('muster-store-');
    const dir = path.join(t.dir, 'registry');
    // The layout and value shapes of src/registrar/registry.ts (valueEncoding json), written raw.
    const old = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    const { rev: _rev, ...legacy } = { ...rec('old', 'issued', { serial: '0107' }), channel: 'http' };
    const legacyToken = {
      id: 'tok',
      secret: 'x'.repeat(32),
      createdAt: '2025-12-01T00:00:00.000Z',
      expiresAt: null,
      maxUses: 3,
      used: 1,
      roles: [],
      clusters: [],
      revoked: false,
    };
    await old.batch([
      { type: 'put', key: 'n!old', value: legacy },
      { type: 'put', key: 's!issued!old', value: '' },
      { type: 'put', key: 'h!old!' + hex16(2), value: { ...legacy, state: 'removed', key: 'older' } },
      { type: 'put', key: 'm!counts', value: { issued: 1 } },
      { type: 'put', key: 'm!id', value: 'r-old' },
      {
        type: 'put',
        key: 'm!install-mode',
        value: { on: false, max: 2, accepted: 2, remote: false, since: 9 },
      },
      { type: 'put', key: 't!tok', value: legacyToken },
      {
        type: 'put',
        key: 'e!' + hex16(3),
        value: { seq: 3, at: '2025-12-01T00:00:00.000Z', type: 'issued', name: 'old' },
      },
      { type: 'put', key: 'sn!' + hex16(7), value: { name: 'old', serial: '0107' } },
      { type: 'put', key: 'rv!0106', value: { name: 'gone', at: '2025-11-01T00:00:00.000Z' } },
    ]);
    await old.close();

    const reg = await LevelRegistry.open(dir);
    try {
      const node = await reg.getNode('old');
      expect(node).toEqual({ ...rec('old', 'issued', { serial: '0107' }), rev: 1, channel: 'https' });
      expect(await reg.listNodes({ limit: 10 })).toEqual([node]);
      expect(await reg.listNodes({ state: 'issued', limit: 10 })).toEqual([node]);
      expect(await reg.history('old')).toEqual([{ ...node, state: 'removed', key: 'older' }]);
      expect(await reg.counts()).toMatchObject({ issued: 1, pending: 0 });
      expect(await reg.identity(() => 'r-new')).toBe('r-old');
      expect(await reg.getInstallMode()).toMatchObject({ on: false, accepted: 2 });
      expect(await reg.listTokens()).toEqual([legacyToken]);
      expect(await reg.lastEventSeq()).toBe(3);
      expect(await reg.listSerials()).toEqual([{ counter: 7, name: 'old', serial: '0107' }]);
      expect(await reg.allocateSerial()).toBeGreaterThan(7);
      expect(await reg.listRevocations()).toEqual([
        { serial: '0106', name: 'gone', at: '2025-11-01T00:00:00.000Z', reason: 'unspecified' },
      ]);
      expect(await reg.isRevoked('0106')).toBe(true);

      // Old records take part in compare-and-set at rev 1, and archive after the old history.
      await reg.apply({
        nodes: [{ expectRev: 1, next: rec('old', 'pending', { key: 'newest' }), archivePrev: true }],
        useToken: 'tok',
        events: [{ type: 'pending', name: 'old' }],
      });
      expect(await reg.getNode('old')).toMatchObject({ rev: 2, state: 'pending', key: 'newest' });
      expect((await reg.history('old')).map((r) => [r.key, r.channel])).toEqual([
        ['older', 'https'],
        ['k'.repeat(43), 'https'],
      ]);
      expect(await reg.counts()).toMatchObject({ issued: 0, pending: 1 });
      expect((await reg.getToken('tok'))!.used).toBe(2);
      expect((await reg.listEvents(0, 10)).map((e) => e.seq)).toEqual([3, 4]);

      // No group index in an old store: no old record names a group, so empty is right, and the
      // first group written starts it.
      expect(await reg.listGroups()).toEqual([]);
      const cur = (await reg.getNode('old'))!;
      await reg.apply({ nodes: [{ expectRev: cur.rev, next: { ...cur, group: 'web' } }] });
      expect(await reg.listGroups()).toEqual([{ group: 'web', count: 1 }]);
      expect((await reg.listNodes({ group: 'web', limit: 10 })).map((n) => n.name)).toEqual(['old']);
    } finally {
      await reg.close();
      t.cleanup();
    }
  });

  it('after a failed write refuses every later write (fail stop); nothing of it is stored', async () => {
    const t = tempDir('muster-store-');
    const dir = path.join(t.dir, 'registry');
    const reg = await LevelRegistry.open(dir);
    try {
      await reg.apply({
        nodes: [{ expectRev: 0, next: rec('a', 'pending') }],
        events: [{ type: 'pending', name: 'a' }],
      });
      // A disk error on the next batch (the store's own level handle, reached past its privacy: the
      // write leveldb's binding does, under abstract-level's public batch()).
      const db = (reg as unknown as { db: { _batch: (...a: unknown[]) => Promise<void> } }).db;
      const batch = db._batch.bind(db);
      db._batch = () => Promise.reject(new Error('EIO: simulated write error'));
      const failing = [
        reg.apply({
          nodes: [{ expectRev: 0, next: rec('b', 'pending') }],
          events: [{ type: 'pending', name: 'b' }],
        }),
        reg.apply({ nodes: [{ expectRev: 1, next: rec('a', 'accepted') }] }),
      ];
      for (const p of failing) await expect(p).rejects.toThrow(/EIO/);
      db._batch = batch; // the disk is fine again, but the in-memory state may not be: still refused
      await expect(reg.apply({ events: [{ type: 'token' }] })).rejects.toThrow(/EIO/);
      await expect(reg.allocateSerial()).rejects.toThrow(/EIO/);
      // Reads still answer with what is durable.
      expect(await reg.getNode('a')).toMatchObject({ rev: 1, state: 'pending' });
      expect(await reg.getNode('b')).toBeUndefined();
      expect(await reg.counts()).toMatchObject({ pending: 1, accepted: 0 });
      expect(await reg.lastEventSeq()).toBe(1);
    } finally {
      await reg.close();
    }
    const again = await LevelRegistry.open(dir);
    try {
      expect((await again.listNodes({ limit: 10 })).map((n) => [n.name, n.rev, n.state])).toEqual([
        ['a', 1, 'pending'],
      ]);
      expect(await again.lastEventSeq()).toBe(1);
      await again.apply({
        nodes: [{ expectRev: 1, next: rec('a', 'accepted') }],
        events: [{ type: 'accepted', name: 'a' }],
      });
      expect(await again.lastEventSeq()).toBe(2);
    } finally {
      await again.close();
      t.cleanup();
    }
  });

  it('checks a write against the record as queued, then as landed, whatever the read path', async () => {
    const t = tempDir('muster-store-');
    const reg = await LevelRegistry.open(path.join(t.dir, 'registry'));
    try {
      // The section reads the durable record synchronously; the pool's reads must not be needed.
      const db = (reg as unknown as { db: Record<string, unknown> }).db;
      db.get = db.getMany = () => Promise.reject(new Error('no read through the pool'));
      const a = reg.apply({ nodes: [{ expectRev: 0, next: rec('x', 'pending', { key: 'first' }) }] });
      // Called while the first write of x is queued: checked against it.
      const b = reg.apply({ nodes: [{ expectRev: 0, next: rec('x', 'pending', { key: 'second' }) }] });
      const settledB = b.catch((e: unknown) => e);
      await a;
      expect(isStoreConflict(await settledB, 'node')).toBe(true);
      // Called once x has landed (no longer queued): checked against the durable record.
      await expect(
        reg.apply({ nodes: [{ expectRev: 0, next: rec('x', 'pending', { key: 'third' }) }] }),
      ).rejects.toSatisfy((e: unknown) => isStoreConflict(e, 'node'));
      await reg.apply({ nodes: [{ expectRev: 1, next: rec('x', 'accepted', { key: 'first' }) }] });
      expect(await reg.getNode('x')).toMatchObject({ rev: 2, key: 'first', state: 'accepted' });
      expect(await reg.counts()).toMatchObject({ pending: 0, accepted: 1 });
    } finally {
      await reg.close();
      t.cleanup();
    }
  });

  it('clears events beyond a retention lowered since the last start', async () => {
    const t = tempDir('muster-store-');
    const dir = path.join(t.dir, 'registry');
    let reg: Registry = await LevelRegistry.open(dir, { eventRetention: 100 });
    for (let i = 0; i < 10; i++) await reg.apply({ events: [{ type: 'token', detail: { i } }] });
    await reg.close();
    reg = await LevelRegistry.open(dir, { eventRetention: 3 });
    try {
      expect((await reg.listEvents(0, 100)).map((e) => e.seq)).toEqual([8, 9, 10]);
      await reg.apply({ events: [{ type: 'token' }] });
      expect((await reg.listEvents(0, 100)).map((e) => e.seq)).toEqual([9, 10, 11]);
    } finally {
      await reg.close();
      t.cleanup();
    }
  });

  it('fills the waiting index of a store written without it once, at open, in every waiting state', async () => {
    const t = tempDir('muster-store-');
    const dir = path.join(t.dir, 'registry');
    const T = '2026-01-05T00:00:00.000Z';
    const nodes = [
      { ...rec('h1', 'heard', { addresses: [] }), rev: 1 },
      { ...rec('p1', 'pending', { addresses: ['192.0.2.7'] }), rev: 1 },
      { ...rec('p2', 'pending', { times: {}, lastSeen: T }), rev: 2 },
      { ...rec('i1', 'issued', { times: {}, issuedAt: T }), rev: 3 },
      { ...rec('a1', 'active'), rev: 4 },
    ];
    // bulkLoadLevel writes '' index values, as every version before the waiting index did.
    await bulkLoadLevel(dir, { id: 'r1' }, [{ nodes }]);
    const raw = async (): Promise<Record<string, string>> => {
      const db = new Level<string, string>(dir);
      try {
        return Object.fromEntries(await db.iterator({ gt: 's!', lt: 's!\uffff' }).all());
      } finally {
        await db.close();
      }
    };
    try {
      expect(Object.values(await raw()).every((v) => v === '')).toBe(true);
      let reg: Registry = await LevelRegistry.open(dir);
      const entries = async () =>
        Object.fromEntries(
          await Promise.all(
            WAITING_STATES.map(async (s) => [s, await reg.listWaiting({ state: s, limit: 10 })]),
          ),
        );
      const want = {
        heard: [{ name: 'h1', enteredAt: Date.parse('2026-01-01T00:00:00.000Z') }],
        pending: [
          { name: 'p1', enteredAt: Date.parse('2026-01-01T00:00:00.000Z'), address: '192.0.2.7' },
          { name: 'p2', enteredAt: Date.parse(T), address: '192.0.2.1' },
        ],
        issued: [{ name: 'i1', enteredAt: Date.parse(T), address: '192.0.2.1' }],
      };
      expect(await entries()).toEqual(want);
      await reg.close();
      // Filled on disk (listWaiting reads no record of theirs from now on); other states stay ''.
      const filled = await raw();
      for (const [k, v] of Object.entries(filled)) expect(v === '', k).toBe(k === 's!active!a1');
      reg = await LevelRegistry.open(dir);
      expect(await entries()).toEqual(want);
      await reg.close();
      expect(await raw()).toEqual(filled);
    } finally {
      t.cleanup();
    }
  });

  it('openRegistry opens the backend the spec names', async () => {
    const t = tempDir('muster-store-');
    const level = await openRegistry({ kind: 'level', dir: path.join(t.dir, 'registry') });
    const memory = await openRegistry({ kind: 'memory' });
    try {
      expect([level.backend, memory.backend]).toEqual(['level', 'memory']);
      expect(level).toBeInstanceOf(LevelRegistry);
    } finally {
      await level.close();
      await memory.close();
      t.cleanup();
    }
  });
});
