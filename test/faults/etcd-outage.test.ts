/**
 * etcd failing under registrars that share it (issue 11, item 4; README "Scale out"): two real
 * registrar processes on one three-member etcd cluster (loopback ports).
 * - the etcd leader killed: joins still succeed (the client goes to the other members), exactly once;
 * - quorum lost (the leader and one more killed), then every member down: a join gets 503
 *   store_unavailable with Retry-After, nothing of it is written, the registrars keep running, and
 *   the same join succeeds once etcd is back.
 */
import { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { etcdSuite, type EtcdCluster } from '../helpers/etcd.js';
import { api } from '../helpers/registrar.js';
import {
  exactlyOnceViolations,
  joinBody,
  joinUntilAnswered,
  makeHerd,
  snapshot,
  fleetPerTest,
} from './etcd-fleet.js';

const gate = etcdSuite('faults/etcd-outage');

/** The index of the member that leads the cluster now (etcd's status call on each member). */
async function leaderIndex(cluster: EtcdCluster): Promise<number> {
  const ids: string[] = [];
  let leader: string | undefined;
  for (const ep of cluster.endpoints) {
    const c = new Etcd3({ hosts: `http://${ep}` });
    try {
      const s = await c.maintenance.status();
      ids.push(s.header.member_id);
      leader ??= s.leader;
    } finally {
      c.close();
    }
  }
  const i = ids.indexOf(leader!);
  if (i < 0) throw new Error('no member leads the etcd cluster');
  return i;
}

describe.skipIf(gate.skip)('registrars on etcd when etcd fails', () => {
  const env = fleetPerTest();

  it('with the etcd leader killed, joins through both registrars still succeed, exactly once', async () => {
    const fleet = await env.start('muster-etcd-member-', 2);
    const token = await fleet.token(0);
    const urls = fleet.registrars.map((r) => r!.url);
    const dead = await leaderIndex(env.cluster);
    await env.cluster.kill(dead);
    try {
      const nodes = makeHerd('m-', 60);
      const until = Date.now() + 30_000;
      const statuses = await Promise.all(
        nodes.map((n, i) => joinUntilAnswered(n, token, () => urls, i, until)),
      );
      expect(statuses.every((s) => s === 201)).toBe(true);
      const reg = await fleet.open();
      try {
        expect(exactlyOnceViolations(await snapshot(reg), nodes, fleet.caPem, token.id)).toEqual([]);
      } finally {
        await reg.close();
      }
    } finally {
      await env.cluster.restart(dead);
    }
  }, 60_000);

  it('without a quorum a join gets 503 + Retry-After and writes nothing; joins succeed once etcd is back', async () => {
    const fleet = await env.start('muster-etcd-outage-', 2);
    const f = fleet;
    const token = await f.token(0);
    const urls = f.registrars.map((r) => r!.url);
    // Some history first, so that "unchanged" has something to compare.
    const before = makeHerd('pre-', 5);
    for (const n of before)
      expect(await joinUntilAnswered(n, token, () => urls, 0, Date.now() + 10_000)).toBe(201);
    const reg = await f.open();
    const was = await snapshot(reg);
    await reg.close();

    const [late] = makeHerd('late-', 1);
    const refused = async (): Promise<void> => {
      for (const url of urls) {
        const r = await api({ url }, 'POST', '/v1/join', joinBody(late!, token));
        expect(r.status).toBe(503);
        expect(r.body).toMatchObject({ error: 'store_unavailable' });
        expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
        // Still serving what needs no store.
        expect((await api({ url }, 'GET', '/v1/ca')).status).toBe(200);
      }
    };
    // The leader and one more member down: the survivor has no leader and can commit nothing (its
    // calls run to the deadline). Killing the leader first means no member holds a proposal that a
    // later election could still commit.
    const leader = await leaderIndex(env.cluster);
    const other = (leader + 1) % 3;
    await env.cluster.kill(leader);
    await env.cluster.kill(other);
    try {
      await refused();
      // Every member down: connections refused at once.
      await env.cluster.kill((leader + 2) % 3);
      await refused();
      for (const r of f.registrars) expect(r!.child.exitCode).toBeNull();
    } finally {
      await Promise.all([0, 1, 2].map((i) => env.cluster.restart(i)));
    }

    // Nothing of the refused joins was written: no record, no serial, no event, no token use.
    const back = await f.open();
    try {
      expect(await snapshot(back)).toEqual(was);
      // Service recovers without a restart: the same node is admitted now, exactly once.
      const status = await joinUntilAnswered(late!, token, () => urls, 1, Date.now() + 20_000);
      expect(status).toBe(201);
      expect(exactlyOnceViolations(await snapshot(back), [...before, late!], f.caPem, token.id)).toEqual([]);
    } finally {
      await back.close();
    }
  }, 60_000);
});
