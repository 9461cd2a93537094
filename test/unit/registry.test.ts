/** The registry on a real level store: counters and indexes kept in level, bounded event log. */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { Registry, type NodeRecord } from '../../src/registrar/registry.js';
import { tempDir } from '../helpers/registrar.js';

const rec = (name: string, state: NodeRecord['state']): NodeRecord => ({
  name,
  state,
  key: 'k'.repeat(43),
  spki: '',
  role: 'worker',
  cluster: '',
  channel: 'http',
  addresses: [],
  times: {},
  lastSeen: new Date(0).toISOString(),
});

describe('Registry', () => {
  it('keeps the newest events only, and their sequence numbers keep counting across a reopen', async () => {
    const t = tempDir();
    const dir = path.join(t.dir, 'db');
    let r = await Registry.open(dir, { eventRetention: 5 });
    for (let i = 0; i < 8; i++) await r.commitOps([], [{ type: 'token', detail: { i } }]);
    expect((await r.listEvents(0, 100)).map((e) => e.seq)).toEqual([4, 5, 6, 7, 8]);
    await r.close();
    r = await Registry.open(dir, { eventRetention: 5 });
    await r.commitOps([], [{ type: 'token', detail: { i: 8 } }]);
    expect((await r.listEvents(0, 100)).map((e) => e.seq)).toEqual([5, 6, 7, 8, 9]);
    await r.close();
    t.cleanup();
  });

  it('keeps state counters and the state index in one batch with the record, also across a reopen', async () => {
    const t = tempDir();
    const dir = path.join(t.dir, 'db');
    let r = await Registry.open(dir);
    await r.commit([{ next: rec('a', 'pending') }, { next: rec('b', 'pending') }], []);
    await r.commit([{ prev: rec('a', 'pending'), next: rec('a', 'issued') }], []);
    await r.close();
    r = await Registry.open(dir);
    expect(r.countByState()).toMatchObject({ pending: 1, issued: 1 });
    expect(await r.namesInState('pending')).toEqual(['b']);
    expect((await r.listNodes({ state: 'issued', limit: 10 })).map((n) => n.name)).toEqual(['a']);
    expect((await r.listNodes({ limit: 1, after: 'a' })).map((n) => n.name)).toEqual(['b']);
    await r.close();
    t.cleanup();
  });
});
