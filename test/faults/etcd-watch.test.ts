/**
 * The etcd registry's watch of the event log under faults (DESIGN "Store backends": every registrar
 * hears the events of all; a long poll on one registrar is answered by an approval on another). The
 * watch is what carries other registrars' events: when it is cut, it must come back by itself and
 * say so in the log, and when etcd ends it for good it must be started again without losing events.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdRegistry } from '../../src/store/etcd.js';
import type { MusterEvent, RegistryOptions } from '../../src/store/registry.js';
import { startEtcdCluster, etcdSuite, type EtcdCluster } from '../helpers/etcd.js';
import { sleep } from './etcd-fleet.js';

const gate = etcdSuite('faults/etcd-watch');

type Line = { level: string; message: string; detail: Record<string, unknown> };

async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe.skipIf(gate.skip)('the etcd registry watch of the event log', () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await startEtcdCluster({ members: 3 });
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  async function pair(): Promise<{ a: EtcdRegistry; b: EtcdRegistry; lines: Line[]; heard: MusterEvent[] }> {
    const prefix = `/watch-${randomBytes(6).toString('hex')}/`;
    const lines: Line[] = [];
    const log: RegistryOptions['log'] = (level, message, detail) => lines.push({ level, message, detail });
    const a = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix }, { log });
    const b = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix });
    const heard: MusterEvent[] = [];
    a.watch((ev) => heard.push(ev));
    return { a, b, lines, heard };
  }

  it('every etcd member down and back: the watch says it was cut, comes back, and hears what follows', async () => {
    const { a, b, lines, heard } = await pair();
    try {
      await b.apply({ events: [{ type: 'token', name: 'before' }] });
      await until(() => heard.length === 1);
      await Promise.all([0, 1, 2].map((i) => cluster.kill(i)));
      await until(() => lines.some((l) => l.level === 'warn' && /cut/.test(l.message)));
      await Promise.all([0, 1, 2].map((i) => cluster.restart(i)));
      await b.apply({ events: [{ type: 'token', name: 'after' }] });
      await until(() => heard.length === 2);
      expect(heard.map((e) => e.name)).toEqual(['before', 'after']);
      expect(heard[1]!.seq).toBeGreaterThan(heard[0]!.seq);
      expect(heard).toEqual(await b.listEvents(0, 10));
      await until(() => lines.some((l) => l.level === 'info' && /back/.test(l.message)));
    } finally {
      await Promise.all([0, 1, 2].map((i) => cluster.restart(i).catch(() => undefined)));
      await a.close();
      await b.close();
    }
  }, 60_000);

  it('a watch etcd ends for good is started again; the events written meanwhile are heard, once each', async () => {
    const { a, b, lines, heard } = await pair();
    try {
      await b.apply({ events: [{ type: 'token', name: 'one' }] });
      await until(() => heard.length === 1);
      // What etcd does to a watch it cancels (e.g. its revision compacted away): the stream stops
      // and the watcher emits 'error'. Stopped first, so that two events are missed meanwhile.
      const w = (a as unknown as { watcher: import('etcd3').Watcher }).watcher;
      await w.cancel();
      await b.apply({ events: [{ type: 'token', name: 'two' }] });
      await b.apply({ events: [{ type: 'token', name: 'three' }] });
      w.emit('error', new Error('etcdserver: mvcc: required revision has been compacted'));
      await until(() => heard.length >= 3);
      await b.apply({ events: [{ type: 'token', name: 'four' }] });
      await until(() => heard.length >= 4);
      await sleep(200); // a duplicate, had there been one, would have arrived by now
      expect(heard.map((e) => e.name)).toEqual(['one', 'two', 'three', 'four']);
      expect(lines.filter((l) => l.level === 'warn').map((l) => l.message)).toEqual([
        expect.stringMatching(/failed; starting it again/),
      ]);
      expect(lines.some((l) => l.level === 'info' && l.detail.missed === 2)).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  }, 30_000);
});
