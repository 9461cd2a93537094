/**
 * Registrars on one registry in etcd (issue 11, item 3; DESIGN "Store backends", "Exactly once"):
 * real registrars on 127.0.0.1 (mDNS off) sharing a three-member etcd cluster on loopback ports and
 * one root CA (the same CA files given to each), serving real joins end to end.
 */
import { cpSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ManualClock, type TimerHandle } from '../../src/common/clock.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEtcdCluster, etcdSuite, type EtcdCluster } from '../helpers/etcd.js';
import { joinProofMac, parseToken } from '../../src/common/proof.js';
import {
  api,
  csrFor,
  joinNode,
  opensslVerify,
  startTestRegistrar,
  tempDir,
  type TestRegistrar,
} from '../helpers/registrar.js';
import { localRegistrarArgs, musterAsync, spawnRegistrar } from '../helpers/cli.js';
import { AdminClient } from '../../src/admin/client.js';
import { EtcdRegistry } from '../../src/store/etcd.js';

const gate = etcdSuite('integration/etcd-store');

/** A manual clock that tells how many live timers are due at a time (to know both registrars armed one). */
class TimersClock extends ManualClock {
  private readonly live = new Map<unknown, number>();
  override setTimeout(fn: () => void, ms: number): TimerHandle {
    const h = super.setTimeout(fn, ms);
    this.live.set(h.id, this.now() + Math.max(ms, 0));
    return h;
  }
  override clearTimeout(h: TimerHandle): void {
    this.live.delete(h.id);
    super.clearTimeout(h);
  }
  armedAt(at: number): number {
    return [...this.live.values()].filter((t) => t === at).length;
  }
}

describe.skipIf(gate.skip)('registrars on etcd', () => {
  let cluster: EtcdCluster;
  let t: ReturnType<typeof tempDir>;
  const running: TestRegistrar[] = [];
  beforeAll(async () => {
    cluster = await startEtcdCluster({ members: 3 });
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  afterEach(async () => {
    for (const r of running.splice(0)) await r.close();
    t?.cleanup();
  });

  /** Two registrars on one etcd prefix; the second gets a copy of the first's CA (README "Scale out"). */
  async function twoRegistrars(over: { clock?: TimersClock } = {}): Promise<[TestRegistrar, TestRegistrar]> {
    t = tempDir('muster-etcd-int-');
    const store = `etcd://${cluster.endpoints.join(',')}/it-${path.basename(t.dir)}`;
    const a = await startTestRegistrar(path.join(t.dir, 'a'), { store, ...over });
    running.push(a);
    cpSync(path.join(t.dir, 'a', 'registrar', 'ca'), path.join(t.dir, 'b', 'registrar', 'ca'), {
      recursive: true,
    });
    const b = await startTestRegistrar(path.join(t.dir, 'b'), { store, ...over });
    running.push(b);
    return [a, b];
  }

  it('a token made on one registrar admits a node through the other, exactly once, under one CA', async () => {
    const [a, b] = await twoRegistrars();
    expect(a.caFingerprint).toBe(b.caFingerprint);
    // Each registrar keeps an id of its own (its mDNS name and server certificate), not the store's.
    expect(a.id).not.toBe(b.id);
    expect(readFileSync(path.join(t.dir, 'a', 'registrar', 'registrar-id'), 'utf8').trim()).toBe(a.id);
    expect(existsSync(path.join(t.dir, 'a', 'registrar', 'registry'))).toBe(false); // no level store

    const { token } = await a.admin.request<{ token: string }>('POST', '/v1/admin/tokens', { uses: 1 });
    const nodeDir = path.join(t.dir, 'node');
    const first = await joinNode(b, nodeDir, { token });
    expect(first.status).toBe('registered');
    expect(opensslVerify(first.caFile, first.certFile)).toMatchObject({ ok: true });
    // The record, the token use and the events are in the shared registry: A sees them.
    const { node } = await a.admin.request<{ node: { state: string; decision: { rule: string } } }>(
      'GET',
      '/v1/admin/nodes/node-1',
    );
    expect(node).toMatchObject({ state: 'active', decision: { rule: 'token' } });
    expect((await a.service.registry.listTokens())[0]!.used).toBe(1);
    // The used-up token is refused by the other registrar too: no record, no use.
    const seq = await a.service.registry.lastEventSeq();
    const err = await joinNode(a, path.join(t.dir, 'other'), { name: 'node-2', token }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'bad_proof' });
    expect(await b.service.registry.getNode('node-2')).toBeUndefined();
    expect((await b.service.registry.listTokens())[0]!.used).toBe(1);
    // Whatever it recorded of the refusal, it admitted nothing.
    const after = await b.service.registry.listEvents(seq, 100);
    expect(after.filter((e) => e.name === 'node-2' && e.type !== 'refused')).toEqual([]);
  });

  it('160 concurrent joins for 40 names through two registrars issue exactly 40 certificates, one per name', async () => {
    const [a, b] = await twoRegistrars();
    const { token } = await a.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {});
    const { id, secret } = parseToken(token)!;
    const nodes = Array.from({ length: 40 }, (_, i) => ({ name: `m${i}`, ...csrFor(`m${i}`) }));
    const intruders = nodes.slice(0, 8).map((n) => ({ name: n.name, ...csrFor(n.name) })); // same name, other key
    const results = await Promise.all(
      Array.from({ length: 160 }, (_, i) => {
        // Each name asked for 4 times, alternately through A and B; m0..m7 once of those by another key.
        const n = i >= 120 && i % 40 < 8 ? intruders[i % 40]! : nodes[i % 40]!;
        const ts = Math.floor(Date.now() / 1000);
        const proof = {
          id,
          ts,
          hmac: joinProofMac(secret, { name: n.name, role: 'worker', cluster: '', key: n.fp, ts }),
        };
        return api(i % 2 ? a : b, 'POST', '/v1/join', {
          name: n.name,
          role: 'worker',
          cluster: '',
          csr: n.csr,
          proof,
        });
      }),
    );
    for (const r of results) expect([200, 201, 409]).toContain(r.status);
    expect(results.filter((r) => r.status === 201)).toHaveLength(40);
    const certByName = new Map<string, Set<string>>();
    for (const r of results.filter((r) => r.status < 300)) {
      certByName.set(r.body.node, (certByName.get(r.body.node) ?? new Set()).add(r.body.certificate));
    }
    expect(certByName.size).toBe(40);
    for (const certs of certByName.values()) expect(certs.size).toBe(1);
    expect((await b.service.registry.counts()).issued).toBe(40);
    const issued = (await a.service.registry.listEvents(0, 10_000)).filter((e) => e.type === 'issued');
    expect(issued).toHaveLength(40);
    expect(new Set(issued.map((e) => e.detail!.serial)).size).toBe(40);
    expect((await b.service.registry.getToken(id))!.used).toBe(40);
  }, 60_000);

  it('install mode opened on one registrar is on for both; at its deadline both switch it off, one event says so', async () => {
    const clock = new TimersClock(Date.UTC(2026, 10, 30, 12));
    const [a, b] = await twoRegistrars({ clock });
    await b.admin.request('POST', '/v1/admin/install-mode', { on: true, forMs: 60_000, max: 10 });
    expect(await a.admin.request('GET', '/v1/admin/install-mode')).toMatchObject({ on: true });
    const seq = await a.service.registry.lastEventSeq();
    // Both registrars armed their deadline timer (A from the event its store watch heard).
    const deadline = clock.now() + 60_000;
    for (let i = 0; i < 500 && clock.armedAt(deadline) < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(clock.armedAt(deadline)).toBe(2);
    clock.advance(60_000);
    for (let i = 0; i < 500 && (await b.service.registry.getInstallMode()).on; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 300)); // the other registrar's settle, had it written
    expect(await a.service.registry.getInstallMode()).toMatchObject({ on: false });
    const offs = (await a.service.registry.listEvents(seq, 100)).filter(
      (e) => e.type === 'install-mode' && e.detail?.on === false,
    );
    expect(offs).toHaveLength(1);
  });

  it("a node waiting on one registrar is answered when the operator approves on the other (the store's watch)", async () => {
    const [a, b] = await twoRegistrars();
    const nodeDir = path.join(t.dir, 'node');
    // No token, not on the link: the node waits for approval, long-polling registrar B.
    const joining = joinNode(b, nodeDir, { name: 'waiter' });
    for (let i = 0; i < 500; i++) {
      if ((await a.service.registry.getNode('waiter'))?.state === 'pending') break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect((await a.service.registry.getNode('waiter'))?.state).toBe('pending');
    await a.admin.request('POST', '/v1/admin/nodes/waiter/approve', {});
    const joined = await joining;
    expect(joined.status).toBe('registered');
    expect(await b.service.registry.getNode('waiter')).toMatchObject({ state: 'active' });
  }, 30_000);

  it('an approval whose issue the other registrar finished first answers the certificate it issued, not an internal error', async () => {
    const [a, b] = await twoRegistrars();
    const nodeDir = path.join(t.dir, 'node');
    const joining = joinNode(b, nodeDir, { name: 'race' });
    for (let i = 0; i < 500; i++) {
      if ((await a.service.registry.getNode('race'))?.state === 'pending') break;
      await new Promise((r) => setTimeout(r, 10));
    }
    // The race, made certain: right after A commits the acceptance, B (whose long poll would see it
    // through the watch) finishes it before A signs.
    const reg = a.service.registry;
    const apply = reg.apply.bind(reg);
    reg.apply = async (change) => {
      const out = await apply(change);
      if (change.events?.some((e) => e.type === 'accepted' && e.name === 'race')) {
        for (let i = 0; i < 500; i++) {
          await b.service.registration.ensureIssued('race');
          if ((await b.service.registry.getNode('race'))?.state !== 'accepted') break;
          await new Promise((r) => setTimeout(r, 10));
        }
      }
      return out;
    };
    const seq = await a.service.registry.lastEventSeq();
    const node = await a.admin.request<{ state: string; serial: string }>(
      'POST',
      '/v1/admin/nodes/race/approve',
      {},
    );
    const stored = await b.service.registry.getNode('race');
    expect(['issued', 'active']).toContain(node.state);
    expect(node.serial).toBe(stored?.serial); // the certificate B issued: one, not two
    const joined = await joining;
    expect(joined.status).toBe('registered');
    const issued = (await a.service.registry.listEvents(seq, 100)).filter(
      (e) => e.type === 'issued' && e.name === 'race',
    );
    expect(issued).toHaveLength(1);
  }, 30_000);
});

describe.skipIf(gate.skip)('muster registrar --store etcd://', () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await startEtcdCluster({ members: 3 });
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('serves a real join from the registry in etcd, and config check shows the store', async () => {
    const t = tempDir('muster-etcd-cli-');
    const store = `etcd://${cluster.endpoints.join(',')}/cli`;
    const sock = path.join(t.dir, 'admin.sock');
    const reg = await spawnRegistrar([...localRegistrarArgs(t.dir, sock), '--store', store]);
    try {
      const admin = new AdminClient(sock);
      const { token } = await admin.request<{ token: string }>('POST', '/v1/admin/tokens', {});
      const joined = await joinNode(reg, path.join(t.dir, 'node'), { token, name: 'cli-node' });
      expect(joined.status).toBe('registered');
      expect(opensslVerify(joined.caFile, joined.certFile)).toMatchObject({ ok: true });
      // The record is in etcd, under the prefix: a registry opened there reads it.
      const shared = await EtcdRegistry.open({ endpoints: cluster.endpoints, prefix: '/cli/' });
      try {
        expect(await shared.getNode('cli-node')).toMatchObject({ state: 'active' });
      } finally {
        await shared.close();
      }
      expect(existsSync(path.join(t.dir, 'reg', 'registry'))).toBe(false);

      const shown = await musterAsync(['config', 'check'], { MUSTER_STORE: store });
      expect(shown.code).toBe(0);
      expect(shown.stdout).toContain(`registrar.store = ${store}`);
      expect((await musterAsync(['config', 'check'])).stdout).toMatch(
        /registrar\.store = level +\(default\)/,
      );
      const bad = await musterAsync(['config', 'check'], { MUSTER_STORE: 'etcd://10.0.0.5' });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain('MUSTER_STORE');
    } finally {
      await reg.stop();
      t.cleanup();
    }
  }, 60_000);
});
