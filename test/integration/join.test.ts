/**
 * The HTTP registration path end to end, in process: real level, real HTTPS on 127.0.0.1, real
 * certificates checked with openssl (issue 2 "Tests").
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { isMusterError } from '../../src/common/errors.js';
import { joinProofMac, parseToken } from '../../src/common/proof.js';
import { exitCodeFor, JOIN_EXIT } from '../../src/cli/exit-codes.js';
import { LevelRegistry } from '../../src/store/level.js';
import { api, csrFor, joinNode, opensslVerify, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar;

beforeEach(async () => {
  t = tempDir();
  reg = await startTestRegistrar(t.dir);
});
afterEach(async () => {
  await reg?.close();
  t.cleanup();
});

const createToken = async (r: TestRegistrar, body: Record<string, unknown> = {}): Promise<string> =>
  (await r.admin.request<{ token: string }>('POST', '/v1/admin/tokens', body)).token;

describe('join with a token', () => {
  it('issues a certificate that openssl verifies against the CA the node wrote, and a second run keeps it', async () => {
    const token = await createToken(reg);
    const nodeDir = path.join(t.dir, 'node');
    const first = await joinNode(reg, nodeDir, { token });
    expect(first.status).toBe('registered');
    expect(opensslVerify(first.caFile, first.certFile)).toMatchObject({ ok: true });
    const cert = readFileSync(first.certFile, 'utf8');

    const second = await joinNode(reg, nodeDir, { token });
    expect(second.status).toBe('already-registered');
    expect(second.serial).toBe(first.serial);
    expect(readFileSync(first.certFile, 'utf8')).toBe(cert);

    const { node } = await reg.admin.request<{ node: any }>('GET', '/v1/admin/nodes/node-1');
    expect(node.state).toBe('active'); // the node acknowledged
    expect(node.decision.rule).toBe('token');
    expect(node.decision.detail).toContain(parseToken(token)!.id);
    // The token secret never reaches a log.
    expect(reg.logs.text()).not.toContain(parseToken(token)!.secret);
    expect(first.logs.text()).not.toContain(parseToken(token)!.secret);
  });

  it('counts token uses and refuses a used-up token with 401, changing nothing', async () => {
    const token = await createToken(reg, { uses: 1 });
    await joinNode(reg, path.join(t.dir, 'a'), { name: 'a', token });
    const seq = await reg.service.registry.lastEventSeq();
    const err = await joinNode(reg, path.join(t.dir, 'b'), { name: 'b', token }).catch((e) => e);
    expect(isMusterError(err, 'bad_proof')).toBe(true);
    expect(exitCodeFor(err)).toBe(JOIN_EXIT.refused);
    // Nothing changed but the refusal on record (issue 10): one `refused` event, bad_proof.
    const after = await reg.service.registry.listEvents(seq, 10);
    expect(after.map((e) => [e.type, e.name, e.detail?.reason])).toEqual([['refused', 'b', 'bad_proof']]);
    expect((await reg.service.operator.counts()).pending).toBe(0);
  });

  it('refuses a token scoped to another role (403 token_scope)', async () => {
    const token = await createToken(reg, { roles: ['storage'] });
    const err = await joinNode(reg, path.join(t.dir, 'n'), { token, role: 'worker' }).catch((e) => e);
    expect(isMusterError(err, 'token_scope')).toBe(true);
  });
});

describe('install mode', () => {
  it('accepts on-link nodes without a token and switches itself off after --max', async () => {
    await reg.admin.request('POST', '/v1/admin/install-mode', { on: true, forMs: 600_000, max: 2 });
    for (const n of ['a', 'b']) {
      const r = await joinNode(reg, path.join(t.dir, n), { name: n });
      expect(opensslVerify(r.caFile, r.certFile).ok).toBe(true);
    }
    const status = await reg.admin.request<{ on: boolean; offReason?: string }>('GET', '/v1/admin/install-mode');
    expect(status.on).toBe(false);
    // The third node waits for approval instead.
    const { csr } = csrFor('c');
    const res = await api(reg, 'POST', '/v1/join', { name: 'c', role: 'worker', cluster: '', csr });
    expect(res.status).toBe(202);
    const { node } = await reg.admin.request<{ node: any }>('GET', '/v1/admin/nodes/a');
    expect(node.decision.rule).toBe('install-mode');
  });

  it('switches itself off at its deadline (fake clock), also across a restart', async () => {
    await reg.close();
    const clock = new ManualClock(Date.now());
    reg = await startTestRegistrar(t.dir, { clock });
    await reg.admin.request('POST', '/v1/admin/install-mode', { on: true, forMs: 15 * 60_000 });
    clock.advance(14 * 60_000);
    expect((await reg.admin.request<{ on: boolean }>('GET', '/v1/admin/install-mode')).on).toBe(true);
    const { csr } = csrFor('early');
    expect((await api(reg, 'POST', '/v1/join', { name: 'early', role: 'worker', cluster: '', csr })).status).toBe(201);

    clock.advance(60_000);
    expect((await reg.admin.request<{ on: boolean }>('GET', '/v1/admin/install-mode')).on).toBe(false);
    const late = csrFor('late');
    expect((await api(reg, 'POST', '/v1/join', { name: 'late', role: 'worker', cluster: '', csr: late.csr })).status).toBe(202);

    // Restart: install mode stays off; turned on again with a short deadline, a restart after the
    // deadline (clock moved while the registrar was down) finds it off.
    await reg.close();
    reg = await startTestRegistrar(t.dir, { clock });
    expect((await reg.admin.request<{ on: boolean }>('GET', '/v1/admin/install-mode')).on).toBe(false);
    await reg.admin.request('POST', '/v1/admin/install-mode', { on: true, forMs: 60_000 });
    await reg.close();
    clock.advance(61_000);
    reg = await startTestRegistrar(t.dir, { clock });
    const s = await reg.admin.request<{ on: boolean; offReason?: string }>('GET', '/v1/admin/install-mode');
    expect(s.on).toBe(false);
    const other = csrFor('later');
    expect((await api(reg, 'POST', '/v1/join', { name: 'later', role: 'worker', cluster: '', csr: other.csr })).status).toBe(202);
  });

  it('does not admit an off-link address unless --remote', async () => {
    await reg.close();
    reg = await startTestRegistrar(t.dir, { /* nothing is on-link */ });
    // Replace the on-link test by a registrar whose only link is elsewhere: 127.0.0.1 is local to
    // the host, so exercise the policy through the service with a foreign address instead.
    await reg.admin.request('POST', '/v1/admin/install-mode', { on: true, forMs: 60_000 });
    const { csr } = csrFor('far');
    const out = await reg.service.join({ name: 'far', role: 'worker', cluster: '', csr }, '198.51.100.7');
    expect(out.status).toBe(202);
    // Turning install mode on with --remote admits the node already waiting (issue 14: nodes that
    // are waiting need not ask again); its next request gets the certificate issued then.
    const on = await reg.admin.request<{ admitted: string[] }>('POST', '/v1/admin/install-mode', { on: true, forMs: 60_000, remote: true });
    expect(on.admitted).toEqual(['far']);
    const out2 = await reg.service.join({ name: 'far', role: 'worker', cluster: '', csr }, '198.51.100.7');
    expect(out2.status).toBe(200);
  });
});

describe('approval', () => {
  it('answers the waiting node by the approval itself: one POST and one long poll, no polling loop', async () => {
    const nodeDir = path.join(t.dir, 'node');
    const joining = joinNode(reg, nodeDir, { waitS: 30 });
    // Wait until the node is pending and its long poll is open.
    for (let i = 0; i < 200 && (await reg.service.operator.counts()).pending === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await reg.admin.request('POST', '/v1/admin/nodes/node-1/approve', { operator: 'alice' });
    const r = await joining;
    const latency = Date.now() - t0;
    expect(r.status).toBe('registered');
    expect(latency).toBeLessThan(5000); // answered by the event, not by the next 30 s poll
    expect(await reg.metrics.requestCount('POST', '/v1/join')).toBe(1);
    expect(await reg.metrics.requestCount('GET', '/v1/join/:name')).toBe(1);
    const { node } = await reg.admin.request<{ node: any }>('GET', '/v1/admin/nodes/node-1');
    expect(node.decision).toMatchObject({ rule: 'approval' });
    // The approver is the admin socket's peer (issue 10), not the body's claim.
    const me = os.userInfo();
    expect(node.decision.detail).toBe(`approved by ${me.username} (uid ${me.uid})`);
  });

  it('reject answers the waiting node with 410 and the node stops with the refused exit code', async () => {
    const joining = joinNode(reg, path.join(t.dir, 'node'), { waitS: 30 }).catch((e) => e);
    for (let i = 0; i < 200 && (await reg.service.operator.counts()).pending === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await reg.admin.request('POST', '/v1/admin/nodes/node-1/reject', {});
    const err = await joining;
    expect(isMusterError(err, 'rejected')).toBe(true);
    expect(exitCodeFor(err)).toBe(JOIN_EXIT.refused);
    const { csr } = csrFor('x');
    void csr;
  });
});

describe('exactly once', () => {
  it('the same (name, key) twice gets the same certificate; another key gets 409 until the node is removed', async () => {
    const token = await createToken(reg);
    const { id, secret } = parseToken(token)!;
    const a = csrFor('dup');
    const proofFor = (fp: string) => {
      const ts = Math.floor(Date.now() / 1000);
      return { id, ts, hmac: joinProofMac(secret, { name: 'dup', role: 'worker', cluster: '', key: fp, ts }) };
    };
    const r1 = await api(reg, 'POST', '/v1/join', { name: 'dup', role: 'worker', cluster: '', csr: a.csr, proof: proofFor(a.fp) });
    const r2 = await api(reg, 'POST', '/v1/join', { name: 'dup', role: 'worker', cluster: '', csr: a.csr, proof: proofFor(a.fp) });
    expect(r1.status).toBe(201);
    expect(r2.status).toBe(200);
    expect(r2.body.certificate).toBe(r1.body.certificate);

    const b = csrFor('dup');
    const r3 = await api(reg, 'POST', '/v1/join', { name: 'dup', role: 'worker', cluster: '', csr: b.csr, proof: proofFor(b.fp) });
    expect(r3.status).toBe(409);
    expect(r3.body.error).toBe('name_taken');
    expect(r3.body.message).toContain(a.fp);
    expect(r3.body.message).toContain('muster nodes remove dup');

    await reg.admin.request('POST', '/v1/admin/nodes/dup/remove', {});
    // The old key is now refused for good, the new one joins.
    const r4 = await api(reg, 'POST', '/v1/join', { name: 'dup', role: 'worker', cluster: '', csr: b.csr, proof: proofFor(b.fp) });
    expect(r4.status).toBe(201);
    expect(r4.body.certificate).not.toBe(r1.body.certificate);
    const r5 = await api(reg, 'POST', '/v1/join', { name: 'dup', role: 'worker', cluster: '', csr: a.csr, proof: proofFor(a.fp) });
    expect(r5.status).toBe(409);
    const shown = await reg.admin.request<{ node: any; history: any[] }>('GET', '/v1/admin/nodes/dup');
    expect(shown.node.key).toBe(b.fp);
    expect(shown.history.map((h) => h.key)).toEqual([a.fp]);
  });

  it('200 concurrent joins for 50 names (duplicates among them) issue exactly 50 certificates', async () => {
    const token = await createToken(reg);
    const { id, secret } = parseToken(token)!;
    const nodes = Array.from({ length: 50 }, (_, i) => ({ name: `n${i}`, ...csrFor(`n${i}`) }));
    const intruders = nodes.slice(0, 10).map((n) => ({ name: n.name, ...csrFor(n.name) })); // same name, other key
    const requests = Array.from({ length: 200 }, (_, i) => {
      // Each name is asked for 4 times; names n0..n9 once of those by another key.
      const n = i >= 150 && i % 50 < 10 ? intruders[i % 50]! : nodes[i % 50]!;
      const ts = Math.floor(Date.now() / 1000);
      const proof = { id, ts, hmac: joinProofMac(secret, { name: n.name, role: 'worker', cluster: '', key: n.fp, ts }) };
      return api(reg, 'POST', '/v1/join', { name: n.name, role: 'worker', cluster: '', csr: n.csr, proof });
    });
    const results = await Promise.all(requests);
    const byStatus = results.reduce<Record<number, number>>((m, r) => ((m[r.status] = (m[r.status] ?? 0) + 1), m), {});
    expect(byStatus[409]).toBeGreaterThanOrEqual(10);
    for (const s of Object.keys(byStatus).map(Number)) expect([200, 201, 409]).toContain(s);
    expect(byStatus[201]).toBe(50);
    // Every name has one certificate, for one key; every answer for that name carries that certificate.
    const certByName = new Map<string, Set<string>>();
    for (const r of results.filter((r) => r.status < 300)) {
      const s = certByName.get(r.body.node) ?? new Set();
      s.add(r.body.certificate);
      certByName.set(r.body.node, s);
    }
    expect(certByName.size).toBe(50);
    for (const s of certByName.values()) expect(s.size).toBe(1);
    expect((await reg.service.operator.counts()).issued).toBe(50);
    const events = await reg.service.operator.listEvents(0, 10_000);
    expect(events.filter((e) => e.type === 'issued')).toHaveLength(50);
    const serials = events.filter((e) => e.type === 'issued').map((e) => e.detail!.serial);
    expect(new Set(serials).size).toBe(50);
    // Token uses counted once per acceptance, in memory and on disk (signatures finish in any order;
    // the stored count must still be the number of acceptances that landed).
    const tokens = await reg.admin.request<{ tokens: { used: number }[] }>('GET', '/v1/admin/tokens');
    expect(tokens.tokens[0]!.used).toBe(50);
    await reg.close();
    const store = await LevelRegistry.open(path.join(t.dir, 'registrar', 'registry'));
    try {
      expect((await store.listTokens())[0]!.used).toBe(50);
      expect((await store.counts()).issued).toBe(50);
    } finally {
      await store.close();
    }
  });
});
