// The exactly-once core (src/registrar/registration.ts, operator.ts, delivery.ts; DESIGN "Exactly
// once", "Admission policy") on a ManualClock over the in-memory registry: no sockets, no sleeps.
import { X509Certificate } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { parseToken } from '../../src/common/proof.js';
import { MemoryRegistry } from '../../src/store/memory.js';
import { StoreConflict, type Change, type Registry } from '../../src/store/registry.js';
import { core, FAR, node, ON_LINK, refusedOnly, settle, storeState, testCa, type Core } from './harness.js';
import { code } from './harness.js';

let c: Core;
afterEach(async () => c?.close());

describe('join: decided once, answered the same', () => {
  it('a token join is accepted and issued in one change; asking again returns the same certificate', async () => {
    c = await core();
    const tok = await c.token({ uses: 3 });
    const n = node('n1');
    const first = await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    expect(first.status).toBe(201);
    if (first.status !== 201) return;
    const ca = await testCa();
    expect(
      new X509Certificate(first.bundle.certificate).verify(new X509Certificate(ca.certPem).publicKey),
    ).toBe(true);
    const rec = (await c.registry.getNode('n1'))!;
    expect(rec).toMatchObject({
      state: 'issued',
      rev: 1,
      key: n.fp,
      channel: 'https',
      decision: { rule: 'token' },
      tokenId: tok.id,
    });
    expect((await c.registry.getToken(tok.id))!.used).toBe(1);
    expect((await c.registry.listSerials()).map((s) => s.name)).toEqual(['n1']);
    const types = (await c.registry.listEvents(0, 100)).map((e) => e.type);
    expect(types).toEqual(['token', 'accepted', 'issued']);

    const before = await storeState(c.registry);
    const again = await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    expect(again).toMatchObject({ status: 200, bundle: { certificate: first.bundle.certificate } });
    expect(await storeState(c.registry)).toEqual(before);
  });

  it('20 concurrent joins of one (name, key) issue one certificate and use the token once', async () => {
    c = await core();
    const tok = await c.token({ uses: 5 });
    const n = node('n1');
    const outs = await Promise.all(
      Array.from({ length: 20 }, () => c.svc.join(n.request({ token: tok, clock: c.clock }), FAR)),
    );
    const certs = new Set(outs.map((o) => (o.status === 202 ? '' : o.bundle.certificate)));
    expect(certs.size).toBe(1);
    expect(outs.filter((o) => o.status === 201)).toHaveLength(1);
    expect(await c.registry.listSerials()).toHaveLength(1);
    expect((await c.registry.getToken(tok.id))!.used).toBe(1);
  });

  it('a token with 3 uses admits exactly 3 of 10 concurrent nodes; the rest get bad_proof and change nothing', async () => {
    c = await core();
    const tok = await c.token({ uses: 3 });
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        code(c.svc.join(node(`n${i}`).request({ token: tok, clock: c.clock }), FAR)),
      ),
    );
    expect(results.filter((r) => r === 'ok')).toHaveLength(3);
    expect(results.filter((r) => r === 'bad_proof')).toHaveLength(7);
    expect((await c.registry.getToken(tok.id))!.used).toBe(3);
    expect((await c.registry.counts()).issued).toBe(3);
    expect(await c.registry.listSerials()).toHaveLength(3);
  });

  it('another key for a held name is name_taken (naming the holder) and changes nothing', async () => {
    c = await core();
    const tok = await c.token();
    await c.svc.join(node('n1').request({ token: tok, clock: c.clock }), FAR);
    const before = await storeState(c.registry);
    const err = await c.svc
      .join(node('n1').request({ token: tok, clock: c.clock }), FAR)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'name_taken', status: 409 });
    expect((err as Error).message).toContain((await c.registry.getNode('n1'))!.key);
    expect(await refusedOnly(c.registry, before, ['name_taken'])).toEqual(before);
  });

  it('every refusal changes nothing: wrong cluster, bad CSR, CSR for another name, bad proof, out-of-scope token', async () => {
    c = await core();
    const tok = await c.token({ roles: ['gpu'] });
    const n = node('n1');
    const before = await storeState(c.registry);
    expect(await code(c.svc.join(n.request({ cluster: 'core' }), ON_LINK))).toBe('wrong_cluster');
    expect(await code(c.svc.join({ ...n.request(), csr: 'x'.repeat(200) }, ON_LINK))).toBe('invalid_csr');
    expect(await code(c.svc.join({ ...n.request(), name: 'n2' }, ON_LINK))).toBe('csr_mismatch');
    const bad = n.request({ token: { id: tok.id, secret: 'not-the-secret' }, clock: c.clock });
    expect(await code(c.svc.join(bad, ON_LINK))).toBe('bad_proof');
    expect(await code(c.svc.join(n.request({ token: tok, clock: c.clock }), ON_LINK))).toBe('token_scope');
    // Malformed requests (bad CSR, CSR for another name) are not judged: not on record.
    expect(
      await refusedOnly(c.registry, before, ['wrong_cluster', 'bad_proof', 'token_scope'], {
        badProofs: { [tok.id]: 1 },
      }),
    ).toEqual(before);
    // The log has the cause; the secret appears nowhere.
    expect(c.logs.text()).toContain('proof HMAC does not match');
    expect(c.logs.text()).not.toContain(tok.secret);
  });

  it('a decision that lost a compare-and-set race is decided again from what the store holds now', async () => {
    // Another registrar sharing the store gives the name to another key between our read and our write.
    const clock = (await core()).clock;
    const inner = await MemoryRegistry.create({ now: () => clock.now() });
    const rival = node('n1');
    let raced = false;
    const racing: Registry = Object.create(inner, {
      apply: {
        value: async (ch: Change) => {
          if (!raced && ch.nodes?.[0]?.next.name === 'n1') {
            raced = true;
            await inner.apply({
              nodes: [
                {
                  expectRev: 0,
                  next: {
                    name: 'n1',
                    rev: 0,
                    state: 'pending',
                    key: rival.fp,
                    spki: '',
                    role: 'worker',
                    cluster: '',
                    channel: 'https',
                    addresses: [FAR],
                    times: {},
                    lastSeen: '',
                  },
                },
              ],
              events: [{ type: 'pending', name: 'n1' }],
            });
          }
          return inner.apply(ch);
        },
      },
    });
    c = await core({ registry: racing, clock });
    const err = await c.svc.join(node('n1').request(), ON_LINK).catch((e: unknown) => e);
    expect(raced).toBe(true);
    expect(err).toMatchObject({ code: 'name_taken' });
    expect((await inner.getNode('n1'))!.key).toBe(rival.fp);
  });

  it('a store that keeps refusing ends in busy + Retry-After, not a loop', async () => {
    const inner = await MemoryRegistry.create();
    const refusing: Registry = Object.create(inner, {
      apply: {
        value: async (ch: Change) => {
          if (ch.nodes?.length) throw new StoreConflict('node', 'changed meanwhile');
          return inner.apply(ch);
        },
      },
    });
    c = await core({ registry: refusing });
    const err = await c.svc.join(node('n1').request(), ON_LINK).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'busy', retryAfter: 1 });
  });
});

describe('install mode', () => {
  it('--max 2 with 6 concurrent on-link nodes: exactly 2 admitted, the rest wait; the store switched it off with an event', async () => {
    c = await core();
    await c.svc.operator.installModeOn({ forMs: 15 * 60_000, max: 2, remote: false });
    const outs = await Promise.all(
      Array.from({ length: 6 }, (_, i) => c.svc.join(node(`n${i}`).request(), ON_LINK)),
    );
    expect(outs.filter((o) => o.status === 201)).toHaveLength(2);
    expect(outs.filter((o) => o.status === 202)).toHaveLength(4);
    const im = await c.registry.getInstallMode();
    expect(im).toMatchObject({ on: false, accepted: 2 });
    const offEvents = (await c.registry.listEvents(0, 100)).filter(
      (e) => e.type === 'install-mode' && e.detail?.on === false,
    );
    expect(offEvents).toHaveLength(1);
  });

  it('switches itself off at its deadline, by the clock', async () => {
    c = await core();
    await c.svc.operator.installModeOn({ forMs: 60_000, max: null, remote: false });
    await settle();
    c.clock.advance(59_999);
    await settle();
    expect((await c.registry.getInstallMode()).on).toBe(true);
    c.clock.advance(1);
    await settle();
    expect(await c.registry.getInstallMode()).toMatchObject({ on: false, offReason: 'deadline passed' });
    expect((await c.svc.join(node('late').request(), ON_LINK)).status).toBe(202);
  });

  it('an "on" stored past its deadline is written back as off at start', async () => {
    c = await core();
    await c.svc.operator.installModeOn({ forMs: 60_000, max: null, remote: false });
    c.svc.close();
    c.clock.advance(120_000); // the registrar was down meanwhile: no timer fired
    expect((await c.registry.getInstallMode()).on).toBe(true);
    const again = await core({ registry: c.registry, clock: c.clock });
    expect((await c.registry.getInstallMode()).on).toBe(false);
    again.svc.close();
  });

  it('turning it on admits the nodes already waiting that it would admit now, and their long polls answer at once', async () => {
    c = await core();
    const near = node('near');
    const far = node('far');
    expect((await c.svc.join(near.request(), ON_LINK)).status).toBe(202);
    expect((await c.svc.join(far.request(), FAR)).status).toBe(202);
    const polling = c.svc.poll('near', near.fp, 30_000, near.pollProof(c.clock));
    const farPoll = c.svc.poll('far', far.fp, 30_000, far.pollProof(c.clock));
    await settle();
    const on = await c.svc.operator.installModeOn({ forMs: 60_000, max: null, remote: false });
    expect(on.admitted).toEqual(['near']);
    // No clock movement: the approval event woke the poll.
    const out = await polling;
    expect(out.status).toBe(200);
    expect((await c.registry.getNode('near'))!).toMatchObject({
      state: 'issued',
      decision: { rule: 'install-mode' },
    });
    expect((await c.registry.getNode('far'))!.state).toBe('pending');
    c.clock.advance(30_000);
    expect((await farPoll).status).toBe(202);
  });

  it('turning it on respects --max and role for waiting nodes', async () => {
    c = await core();
    for (const n of ['a', 'b', 'c']) await c.svc.join(node(n).request(), ON_LINK);
    await c.svc.join(node('d').request({ role: 'gpu' }), ON_LINK);
    const on = await c.svc.operator.installModeOn({ forMs: 60_000, max: 2, role: 'worker', remote: false });
    expect(on.admitted).toEqual(['a', 'b']);
    expect(on.on).toBe(false);
    expect((await c.registry.counts()).pending).toBe(2);
  });

  it('a node that advertised another key than its CSR carries stays pending when install mode opens', async () => {
    c = await core();
    const n = node('n1');
    await c.svc.heard({ name: 'n1', role: 'worker', cluster: '', key: 'A'.repeat(43) }, [ON_LINK]);
    await c.svc.operator.installModeOn({ forMs: 60_000, max: null, remote: false });
    const out = await c.svc.join(n.request(), ON_LINK);
    expect(out).toMatchObject({ status: 202, reason: expect.stringContaining('advertised') });
    await c.svc.operator.installModeOff();
    const on = await c.svc.operator.installModeOn({ forMs: 60_000, max: null, remote: false });
    expect(on.admitted).toEqual([]);
    expect((await c.registry.getNode('n1'))!.state).toBe('pending');
  });
});

describe('approval and delivery (long poll on the injected clock)', () => {
  it('the operator approval wakes the waiting poll at once; without it the poll answers 202 when its wait ends', async () => {
    c = await core();
    const n = node('n1');
    expect((await c.svc.join(n.request(), FAR)).status).toBe(202);
    const first = c.svc.poll('n1', n.fp, 30_000, n.pollProof(c.clock));
    await settle();
    c.clock.advance(30_000);
    expect(await first).toMatchObject({ status: 202, state: 'pending' });

    const second = c.svc.poll('n1', n.fp, 30_000, n.pollProof(c.clock));
    await settle();
    expect(c.svc.delivery.parked).toBe(1);
    const approved = await c.svc.operator.approve('n1', 'alice');
    expect(approved.state).toBe('issued');
    const out = await second;
    expect(out).toMatchObject({ status: 200, bundle: { node: 'n1', certificate: approved.certificate } });
    expect(c.svc.delivery.parked).toBe(0);
    expect((await c.registry.getNode('n1'))!.decision).toMatchObject({
      rule: 'approval',
      detail: 'approved by alice',
    });
  });

  it('a poll with another key is not_found; a rejected node hears 410 rejected', async () => {
    c = await core();
    const n = node('n1');
    await c.svc.join(n.request(), FAR);
    expect(await code(c.svc.poll('n1', 'B'.repeat(43), 0, n.pollProof(c.clock)))).toBe('not_found');
    const p = c.svc.poll('n1', n.fp, 30_000, n.pollProof(c.clock));
    await settle();
    await c.svc.operator.reject('n1', 'bob');
    expect(await code(p)).toBe('rejected');
  });

  it('close() wakes every parked poll with a quick retry', async () => {
    c = await core();
    const n = node('n1');
    await c.svc.join(n.request(), FAR);
    const p = c.svc.poll('n1', n.fp, 60_000, n.pollProof(c.clock));
    await settle();
    c.svc.close();
    expect(await p).toMatchObject({ status: 202, retryAfter: 1 });
  });

  it('an acceptance a crash left unissued is issued at start', async () => {
    c = await core();
    const n = node('n1');
    await c.svc.join(n.request(), FAR);
    const rec = (await c.registry.getNode('n1'))!;
    await c.registry.apply({
      nodes: [{ expectRev: rec.rev, next: { ...rec, state: 'accepted' } }],
      events: [{ type: 'accepted', name: 'n1' }],
    });
    c.svc.close();
    const again = await core({ registry: c.registry, clock: c.clock });
    expect((await c.registry.getNode('n1'))!.state).toBe('issued');
    again.svc.close();
  });
});

describe('ack, leave, remove', () => {
  it('a signed ack makes the node active; a bad signature or stale time changes nothing', async () => {
    c = await core();
    const tok = await c.token();
    const n = node('n1');
    const out = await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    const serial = (await c.registry.getNode('n1'))!.serial!;
    expect(out.status).toBe(201);
    const before = await storeState(c.registry);
    const other = node('n1');
    expect(await code(c.svc.ack('n1', { ...other.signed('ack', serial, c.clock), key: n.fp }))).toBe(
      'bad_signature',
    );
    const stale = n.signed('ack', serial, c.clock);
    c.clock.advance(301_000);
    expect(await code(c.svc.ack('n1', stale))).toBe('bad_signature');
    expect(await code(c.svc.ack('n1', n.signed('leave', serial, c.clock)))).toBe('bad_signature');
    expect(await storeState(c.registry)).toEqual(before);
    await c.svc.ack('n1', n.signed('ack', serial, c.clock));
    expect((await c.registry.getNode('n1'))!.state).toBe('active');
  });

  it('leave and remove revoke the certificate; a removed (name, key) cannot join again', async () => {
    c = await core();
    const tok = await c.token();
    const a = node('a');
    const b = node('b');
    await c.svc.join(a.request({ token: tok, clock: c.clock }), FAR);
    await c.svc.join(b.request({ token: tok, clock: c.clock }), FAR);
    const sa = (await c.registry.getNode('a'))!.serial!;
    const sb = (await c.registry.getNode('b'))!.serial!;
    await c.svc.leave('a', a.signed('leave', sa, c.clock));
    await c.svc.operator.remove('b', 'carol');
    expect(await c.registry.isRevoked(sa)).toBe(true);
    expect(await c.registry.isRevoked(sb)).toBe(true);
    expect((await c.registry.listRevocations()).map((r) => r.name).sort()).toEqual(['a', 'b']);
    expect(await code(c.svc.join(a.request({ token: tok, clock: c.clock }), FAR))).toBe('removed');
    // The name is free for a new key; the old record is kept in its history.
    const a2 = node('a');
    expect((await c.svc.join(a2.request({ token: tok, clock: c.clock }), FAR)).status).toBe(201);
    expect((await c.registry.history('a')).map((h) => h.state)).toEqual(['removed']);
  });
});

describe('the front door (issue 8)', () => {
  it('bundle pickup needs the key: a poll with the public fingerprint but no valid signature gets nothing', async () => {
    c = await core();
    const tok = await c.token();
    const n = node('n1');
    await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    const thief = node('n1'); // knows the fingerprint (TXT, 409 answers), not the key
    const forged = { ts: Math.floor(c.clock.now() / 1000), sig: thief.pollProof(c.clock).sig };
    expect(await code(c.svc.poll('n1', n.fp, 0, forged))).toBe('bad_signature');
    const stale = n.pollProof(c.clock);
    c.clock.advance(301_000);
    expect(await code(c.svc.poll('n1', n.fp, 0, stale))).toBe('bad_signature');
    expect(await c.svc.poll('n1', n.fp, 0, n.pollProof(c.clock))).toMatchObject({
      status: 200,
      bundle: { node: 'n1' },
    });
  });

  it('a token join takes a name only squatted by a pending record of another key; the squat is archived with an event', async () => {
    c = await core();
    const squatter = node('db-1');
    expect((await c.svc.join(squatter.request(), FAR)).status).toBe(202);
    const tok = await c.token();
    const real = node('db-1');
    const out = await c.svc.join(real.request({ token: tok, clock: c.clock }), FAR);
    expect(out.status).toBe(201);
    expect((await c.registry.getNode('db-1'))!).toMatchObject({ state: 'issued', key: real.fp });
    expect((await c.registry.history('db-1')).map((h) => [h.state, h.key])).toEqual([
      ['pending', squatter.fp],
    ]);
    const conflict = (await c.registry.listEvents(0, 100)).find((e) => e.type === 'conflict');
    expect(conflict).toMatchObject({ name: 'db-1', detail: { archivedKey: squatter.fp, key: real.fp } });
    // The squatter's poll now finds nothing for its key.
    expect(await code(c.svc.poll('db-1', squatter.fp, 0, squatter.pollProof(c.clock)))).toBe('not_found');
  });

  it('install mode on the link takes a squatted name; install mode for a remote peer or no admission does not', async () => {
    c = await core();
    const squatter = node('web-1');
    await c.svc.operator.installModeOn({ forMs: 60_000, max: null, role: 'worker', remote: true });
    // The squat asks with a role install mode does not admit: it waits.
    expect((await c.svc.join(squatter.request({ role: 'gpu' }), FAR)).status).toBe(202);
    // Off-link (admitted only because of --remote): the pending claim stands.
    const remote = await c.svc.join(node('web-1').request(), '203.0.113.50').catch((e: unknown) => e);
    expect(remote).toMatchObject({ code: 'name_taken', details: { holder: { state: 'pending' } } });
    expect((remote as Error).message).toMatch(/only waits for approval/);
    const onLink = node('web-1');
    expect((await c.svc.join(onLink.request(), ON_LINK)).status).toBe(201);
    expect((await c.registry.getNode('web-1'))!.key).toBe(onLink.fp);
  });

  it('a squatter cannot take a name from an admitted node, with or without a token', async () => {
    c = await core();
    const tok = await c.token();
    const real = node('n1');
    await c.svc.join(real.request({ token: tok, clock: c.clock }), FAR);
    const before = await storeState(c.registry);
    expect(await code(c.svc.join(node('n1').request({ token: tok, clock: c.clock }), FAR))).toBe(
      'name_taken',
    );
    expect(await code(c.svc.join(node('n1').request(), ON_LINK))).toBe('name_taken');
    expect(await refusedOnly(c.registry, before, ['name_taken', 'name_taken'])).toEqual(before);
  });

  it('one source cannot fill the pending queue: a per-source cap (IPv6 by /64), others still get in line', async () => {
    c = await core();
    const cap = 100; // DEFAULT_MAX_PENDING_PER_SOURCE
    for (let i = 0; i < cap; i++)
      expect((await c.svc.join(node(`s${i}`).request(), '2001:db8:1:2::10')).status).toBe(202);
    const before = await storeState(c.registry);
    // Another address in the same /64 is the same source.
    const err = await c.svc.join(node('one-more').request(), '2001:db8:1:2:ffff::1').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'closed', retryAfter: 60 });
    expect(await storeState(c.registry)).toEqual(before);
    // Another source, and the ones already waiting, are unaffected.
    expect((await c.svc.join(node('elsewhere').request(), FAR)).status).toBe(202);
    // A rejected squat frees its place.
    await c.svc.operator.reject('s0', 'op');
    expect((await c.svc.join(node('one-more').request(), '2001:db8:1:2:ffff::1')).status).toBe(202);
  }, 60_000);

  it('a token carries the CA pin (<id>.<secret>.<ca>), so a node holding it trusts only this CA', async () => {
    c = await core();
    const { token, view } = await c.svc.operator.createToken({
      ttlMs: 60_000,
      maxUses: 1,
      roles: [],
      clusters: [],
    });
    const parsed = parseToken(token)!;
    expect(parsed).toEqual({ id: view.id, secret: expect.any(String), ca: (await testCa()).fingerprint });
    expect(JSON.stringify(view)).not.toContain(parsed.secret);
  });

  it('a spoofed advertisement for a taken name never replaces or touches the registered node', async () => {
    c = await core();
    const tok = await c.token();
    const real = node('n1');
    await c.svc.join(real.request({ token: tok, clock: c.clock }), FAR);
    const before = await storeState(c.registry);
    await c.svc.heard({ name: 'n1', role: 'worker', cluster: '', key: 'S'.repeat(43) }, [ON_LINK]);
    await c.svc.heard({ name: 'n1', role: 'admin', cluster: 'edge', key: real.fp }, ['198.18.0.99']);
    expect(await storeState(c.registry)).toEqual(before);
  });

  it('a token proof replayed outside its window, or inside it with another key, name or role, is refused and changes nothing', async () => {
    c = await core();
    const tok = await c.token({ uses: 10 });
    const n = node('n1');
    const captured = n.request({ token: tok, clock: c.clock });
    const before = await storeState(c.registry);
    // Inside the window, with the attacker's own key in the CSR: the HMAC covers the key.
    const mine = node('n1');
    expect(await code(c.svc.join({ ...captured, csr: mine.csr }, FAR))).toBe('bad_proof');
    // Another name or role with the captured proof.
    const other = node('n2');
    expect(await code(c.svc.join({ ...captured, name: 'n2', csr: other.csr }, FAR))).toBe('bad_proof');
    expect(await code(c.svc.join({ ...captured, role: 'admin' }, FAR))).toBe('bad_proof');
    // The genuine request, replayed after the 5-minute window.
    c.clock.advance(301_000);
    expect(await code(c.svc.join(captured, FAR))).toBe('bad_proof');
    // On record: n1's second refusal within the minute folds into the next one (repeats: 1); the
    // three proofs that do not verify with the secret count towards the token's lock, the genuine
    // proof replayed late (right HMAC, stale time) does not.
    expect(
      await refusedOnly(c.registry, before, ['bad_proof', 'bad_proof', 'bad_proof'], {
        badProofs: { [tok.id]: 3 },
      }),
    ).toEqual(before);
    const refused = (await c.registry.listEvents(0, 100))
      .filter((e) => e.type === 'refused')
      .map((e) => ({
        name: e.name,
        ...e.detail,
      }));
    expect(refused).toMatchObject([
      { name: 'n1', tokenId: tok.id, key: mine.fp, address: FAR, code: 'bad_proof' },
      { name: 'n2', tokenId: tok.id, key: other.fp },
      { name: 'n1', tokenId: tok.id, key: n.fp, repeats: 1 },
    ]);
  });
});

describe('expiry (issue 9: a fleet must not brick on day 90)', () => {
  const DAY = 86_400_000;

  it('an expired, unrevoked node re-enters admission with its key: a valid token or install mode issues a new certificate', async () => {
    c = await core();
    const tok = await c.token({ uses: 5 });
    const n = node('n1');
    const first = await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    expect(first.status).toBe(201);
    const old = (await c.registry.getNode('n1'))!;
    await c.svc.ack('n1', n.signed('ack', old.serial!, c.clock)); // acknowledged: garbage collection leaves it
    // Before expiry the same key gets the same certificate.
    c.clock.advance(89 * DAY);
    const before = await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    expect(before).toMatchObject({ status: 200, bundle: { certificate: old.certificate } });
    c.clock.advance(2 * DAY); // day 91: expired
    const tok2 = await c.token();
    const again = await c.svc.join(n.request({ token: tok2, clock: c.clock }), FAR);
    expect(again.status).toBe(201);
    const rec = (await c.registry.getNode('n1'))!;
    expect(rec.serial).not.toBe(old.serial);
    expect(Date.parse(rec.notAfter!)).toBeGreaterThan(c.clock.now());
    expect((await c.registry.listEvents(0, 100)).map((e) => e.type)).toContain('expired');
    // Install mode on the link does the same for a node without a token.
    const m = node('m1');
    await c.svc.join(m.request({ token: tok2, clock: c.clock }), FAR);
    await c.svc.ack('m1', m.signed('ack', (await c.registry.getNode('m1'))!.serial!, c.clock));
    c.clock.advance(91 * DAY);
    await c.svc.operator.installModeOn({ forMs: 60_000, max: null, remote: false });
    expect((await c.svc.join(m.request(), ON_LINK)).status).toBe(201);
  });

  it('an expired node whose token ran out waits for the operator instead of being refused; approval issues a new certificate', async () => {
    c = await core();
    const tok = await c.token();
    const n = node('n1');
    await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    await c.svc.ack('n1', n.signed('ack', (await c.registry.getNode('n1'))!.serial!, c.clock));
    c.clock.advance(91 * DAY); // the 1-hour token expired long ago, and so did the certificate
    const out = await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    expect(out).toMatchObject({ status: 202, reason: expect.stringContaining('expired') });
    const approved = await c.svc.operator.approve('n1', 'alice');
    expect(approved.state).toBe('issued');
    expect(Date.parse(approved.notAfter!)).toBeGreaterThan(c.clock.now());
  });

  it('a removed (revoked) node does not re-enter, expired or not', async () => {
    c = await core();
    const tok = await c.token();
    const n = node('n1');
    await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
    await c.svc.operator.remove('n1', 'op');
    c.clock.advance(91 * DAY);
    const tok2 = await c.token();
    expect(await code(c.svc.join(n.request({ token: tok2, clock: c.clock }), FAR))).toBe('removed');
  });
});
