// Refusals on record (issue 10, item 3): every judged refusal of a join is a `refused` event with its
// reason, listed by `events --type refused` (the admin API's ?type=), never carrying a secret, and
// coalesced so that a hostile LAN cannot turn refusals into unbounded writes.
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { memoryLogger } from '../../src/common/log.js';
import { buildAdminApi } from '../../src/registrar/admin-api.js';
import { REFUSAL_COALESCE_MS, refusalReason } from '../../src/registrar/refusals.js';
import type { MusterEvent } from '../../src/store/types.js';
import { code, core, FAR, node, ON_LINK, type Core } from './harness.js';

let c: Core | undefined;
let admin: FastifyInstance | undefined;
afterEach(async () => {
  await admin?.close();
  admin = undefined;
  await c?.close();
  c = undefined;
});

const refused = async (c: Core): Promise<MusterEvent[]> =>
  (await c.registry.listEvents(0, 10_000)).filter((e) => e.type === 'refused');

describe('every refusal is on record with its reason', () => {
  it('bad proof (with the token id), token scope, name taken, wrong cluster, banned, rejected, removed, off-link', async () => {
    c = await core();
    const tok = await c.token({ roles: ['gpu'] });
    const open = await c.token();
    const held = node('held');
    await c.svc.join(held.request({ token: open, clock: c.clock }), FAR);
    const n = node('n1');
    const wrong = { id: tok.id, secret: 'not-the-secret' };

    expect(await code(c.svc.join(n.request({ token: wrong, clock: c.clock }), FAR))).toBe('bad_proof');
    expect(await code(c.svc.join(n.request({ token: tok, clock: c.clock }), FAR))).toBe('token_scope');
    const other = node('held');
    expect(await code(c.svc.join(other.request(), FAR))).toBe('name_taken');
    expect(await code(c.svc.join(n.request({ cluster: 'core' }), FAR))).toBe('wrong_cluster');
    await c.svc.operator.ban({ kind: 'name', value: 'bad-1' }, 'alice', 'stolen');
    expect(await code(c.svc.join(node('bad-1').request(), FAR))).toBe('banned');
    expect((await c.svc.join(node('rj-1').request(), FAR)).status).toBe(202);
    const rj = node('rj-2');
    expect((await c.svc.join(rj.request(), FAR)).status).toBe(202);
    await c.svc.operator.reject('rj-2', 'alice');
    expect(await code(c.svc.join(rj.request(), FAR))).toBe('rejected');
    await c.svc.operator.remove('held', 'alice');
    expect(await code(c.svc.join(held.request({ token: open, clock: c.clock }), FAR))).toBe('removed');
    await c.svc.operator.installModeOn({ forMs: 60_000, max: null, remote: false });
    const far = node('far-1');
    expect((await c.svc.join(far.request(), FAR)).status).toBe(202);

    const got = (await refused(c)).map((e) => ({ name: e.name, ...e.detail }));
    expect(got).toEqual([
      {
        name: 'n1',
        reason: 'bad_proof',
        code: 'bad_proof',
        message: `proof HMAC does not match token ${tok.id}`,
        address: FAR,
        channel: 'https',
        key: n.fp,
        tokenId: tok.id,
      },
      {
        name: 'n1',
        reason: 'token_scope',
        code: 'token_scope',
        message: expect.stringContaining('does not allow role worker'),
        address: FAR,
        channel: 'https',
        key: n.fp,
        tokenId: tok.id,
      },
      expect.objectContaining({
        name: 'held',
        reason: 'name_taken',
        key: other.fp,
        message: expect.stringContaining(held.fp),
      }),
      expect.objectContaining({ name: 'n1', reason: 'wrong_cluster', code: 'wrong_cluster' }),
      expect.objectContaining({
        name: 'bad-1',
        reason: 'banned',
        message: expect.stringContaining('stolen'),
      }),
      expect.objectContaining({ name: 'rj-2', reason: 'rejected', key: rj.fp }),
      expect.objectContaining({ name: 'held', reason: 'removed', key: held.fp, tokenId: open.id }),
      expect.objectContaining({ name: 'far-1', reason: 'off_link', code: 'pending', key: far.fp }),
    ]);
    // Never a secret: no token secret, no proof, no CSR.
    const text = JSON.stringify(await refused(c));
    for (const s of [tok.secret, open.secret, 'not-the-secret', n.csr.slice(40, 80)])
      expect(text).not.toContain(s);
    expect(text).not.toMatch(/"(hmac|proof|csr|secret)"/);
  });

  it('the policy hook and tier rules refuse as "policy"; malformed and shed requests are not refusals on record', () => {
    expect(refusalReason('policy_denied')).toBe('policy');
    expect(refusalReason('forbidden_role')).toBe('policy');
    for (const code of [
      'bad_request',
      'invalid_name',
      'invalid_csr',
      'csr_mismatch',
      'closed',
      'busy',
      'rate_limited',
    ])
      expect(refusalReason(code), code).toBeUndefined();
  });

  it('coalesces: one event per source, reason and name a minute; the ones folded in are counted into the next', async () => {
    c = await core();
    const n = node('n1');
    for (let i = 0; i < 3; i++)
      expect(await code(c.svc.join(n.request({ cluster: 'core' }), FAR))).toBe('wrong_cluster');
    // Another source, another name or another reason is another event.
    await code(c.svc.join(n.request({ cluster: 'core' }), '203.0.113.77'));
    await code(c.svc.join(node('n2').request({ cluster: 'core' }), FAR));
    expect((await refused(c)).map((e) => [e.name, e.detail?.address, e.detail?.repeats])).toEqual([
      ['n1', FAR, undefined],
      ['n1', '203.0.113.77', undefined],
      ['n2', FAR, undefined],
    ]);
    c.clock.advance(REFUSAL_COALESCE_MS);
    await code(c.svc.join(n.request({ cluster: 'core' }), FAR));
    expect((await refused(c)).at(-1)).toMatchObject({ name: 'n1', detail: { address: FAR, repeats: 2 } });
    // An IPv6 /64 is one source.
    await code(c.svc.join(n.request({ cluster: 'core' }), '2001:db8:1:2::1'));
    await code(c.svc.join(n.request({ cluster: 'core' }), '2001:db8:1:2::ffff'));
    expect((await refused(c)).filter((e) => String(e.detail?.address).startsWith('2001:'))).toHaveLength(1);
  });
});

describe('events --type refused (admin API)', () => {
  it('lists only the types asked for, a page at a time, and refuses an unknown type', async () => {
    c = await core();
    admin = await buildAdminApi(c.svc, memoryLogger('admin').log);
    await c.token();
    for (let i = 0; i < 3; i++) await code(c.svc.join(node(`w${i}`).request({ cluster: 'core' }), ON_LINK));
    await c.svc.join(node('p1').request(), FAR);
    const get = async (q: string) => {
      const r = await admin!.inject({ method: 'GET', url: `/v1/admin/events?${q}` });
      return {
        status: r.statusCode,
        body: r.json() as { events: MusterEvent[]; next?: number; error?: string },
      };
    };
    const all = await get('type=refused');
    expect(all.status).toBe(200);
    expect(all.body.events.map((e) => [e.type, e.name])).toEqual([
      ['refused', 'w0'],
      ['refused', 'w1'],
      ['refused', 'w2'],
    ]);
    expect(all.body.next).toBeUndefined();
    const two = await get('type=refused,token');
    expect(two.body.events.map((e) => e.type)).toEqual(['token', 'refused', 'refused', 'refused']);
    const page = await get('type=refused&limit=2');
    expect(page.body.events.map((e) => e.name)).toEqual(['w0', 'w1']);
    const rest = await get(`type=refused&limit=2&after=${page.body.next}`);
    expect(rest.body.events.map((e) => e.name)).toEqual(['w2']);
    const bad = await get('type=refusd');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('bad_request');
  });
});
