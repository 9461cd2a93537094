/**
 * The per-source pending counts load in the background (a registrar on a million records is ready
 * without reading every pending record first), so a count asked before the load finished must
 * still include every pending record of the store, and events that land meanwhile.
 */
import { describe, expect, it } from 'vitest';
import { PendingSources } from '../../src/registrar/admission/pending-sources.js';
import { MemoryRegistry } from '../../src/store/memory.js';
import type { NodeRecord } from '../../src/store/registry.js';

const pending = (name: string, address: string): NodeRecord => ({
  name,
  rev: 0,
  state: 'pending',
  key: `k-${name}`,
  spki: '',
  role: 'worker',
  cluster: '',
  channel: 'https',
  addresses: [address],
  times: { pending: new Date(0).toISOString() },
  lastSeen: new Date(0).toISOString(),
});

describe('PendingSources', () => {
  it('counts every stored pending record of a source, even when asked right after open', async () => {
    const reg = new MemoryRegistry();
    // More than one page (1000) from one source, a few from another.
    for (let i = 0; i < 1203; i++) {
      const address = i % 100 === 0 ? '10.0.0.2' : '10.0.0.1';
      const name = `n-${String(i).padStart(5, '0')}`;
      await reg.apply({
        nodes: [{ expectRev: 0, next: pending(name, address) }],
        events: [{ type: 'pending', name, detail: { address } }],
      });
    }
    const p = PendingSources.open(reg);
    try {
      const [a, b, none] = await Promise.all([p.count('10.0.0.1'), p.count('10.0.0.2'), p.count('10.9.9.9')]);
      expect([a, b, none]).toEqual([1203 - 13, 13, 0]);
    } finally {
      p.close();
    }
  });

  it('reads nothing at open: the stored records are read by load() (after the registrar is ready) or the first count()', async () => {
    const reg = new MemoryRegistry();
    await reg.apply({
      nodes: [{ expectRev: 0, next: pending('stored', '10.0.0.1') }],
      events: [{ type: 'pending', name: 'stored', detail: { address: '10.0.0.1' } }],
    });
    let reads = 0;
    const listWaiting = reg.listWaiting.bind(reg);
    reg.listWaiting = (o) => {
      reads++;
      return listWaiting(o);
    };
    const p = PendingSources.open(reg);
    try {
      // Events that land before the load are followed, and the stored record is not counted twice.
      await reg.apply({
        nodes: [{ expectRev: 0, next: pending('live', '10.0.0.1') }],
        events: [{ type: 'pending', name: 'live', detail: { address: '10.0.0.1' } }],
      });
      expect(reads).toBe(0);
      await Promise.all([p.load(), p.load()]);
      expect(reads).toBe(1);
      expect(await p.count('10.0.0.1')).toBe(2);
      expect(reads).toBe(1);
    } finally {
      p.close();
    }
  });
});
