// The HTTPS routes (src/fallback/api.ts, DESIGN "HTTPS API") over the real registrar core, through
// fastify's inject() (CONVENTIONS: fastify "Testing"): status codes, error shape, strict schemas,
// and that a refused request changes nothing in the store.
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/fallback/api.js';
import { memoryLogger } from '../../src/common/log.js';
import { core, node, refusedOnly, settle, storeState, type Core } from './harness.js';

let c: Core;
let app: FastifyInstance;
const seen: { route: string; status: number }[] = [];

async function setup(
  opts: {
    maxInFlightJoins?: number;
    rateLimit?: number;
    maxPolls?: { total: number; perSource: number };
  } = {},
): Promise<void> {
  c = await core();
  seen.length = 0;
  app = await buildApi({
    service: c.svc,
    log: memoryLogger('api').log,
    onResponse: (r) => seen.push({ route: r.route, status: r.status }),
    now: () => c.clock.now(),
    ...opts,
  });
}

afterEach(async () => {
  await app?.close();
  await c?.close();
});

const post = (url: string, payload: unknown, remoteAddress = '203.0.113.9') =>
  app.inject({ method: 'POST', url, payload: payload as Record<string, unknown>, remoteAddress });

describe('HTTPS routes', () => {
  it('GET /v1/info and /v1/ca say who the registrar is', async () => {
    await setup();
    const info = await app.inject({ method: 'GET', url: '/v1/info' });
    expect(info.statusCode).toBe(200);
    expect(info.json()).toMatchObject({ v: 1, id: 'r-test', cluster: 'edge', role: 'main', mode: 'closed' });
    await c.token();
    expect((await app.inject({ method: 'GET', url: '/v1/info' })).json().mode).toBe('token');
    const ca = await app.inject({ method: 'GET', url: '/v1/ca' });
    expect(ca.headers['content-type']).toContain('application/x-pem-file');
    expect(ca.body).toContain('BEGIN CERTIFICATE');
  });

  it('POST /v1/join: 201 with a token, 200 the same bundle again, 202 pending with Retry-After otherwise', async () => {
    await setup();
    const tok = await c.token();
    const a = node('a');
    const first = await post('/v1/join', a.request({ token: tok, clock: c.clock }));
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ v: 1, node: 'a', cluster: 'edge', mac: expect.any(String) });
    const again = await post('/v1/join', a.request({ token: tok, clock: c.clock }));
    expect(again.statusCode).toBe(200);
    expect(again.json().certificate).toBe(first.json().certificate);
    const b = node('b');
    const pending = await post('/v1/join', b.request());
    expect(pending.statusCode).toBe(202);
    expect(pending.headers['retry-after']).toBe('5');
    expect(pending.json()).toMatchObject({ state: 'pending', message: expect.stringContaining('approval') });
    expect(seen.filter((s) => s.route === '/v1/join').map((s) => s.status)).toEqual([201, 200, 202]);
  });

  it('the peer address decides locality: install mode admits an on-link peer, not a far one', async () => {
    await setup();
    await c.svc.operator.installModeOn({ forMs: 60_000, max: null, remote: false });
    expect((await post('/v1/join', node('near').request(), '198.18.0.44')).statusCode).toBe(201);
    expect((await post('/v1/join', node('far').request(), '203.0.113.9')).statusCode).toBe(202);
    // IPv4 peers on a dual-stack socket arrive as ::ffff:a.b.c.d.
    expect((await post('/v1/join', node('mapped').request(), '::ffff:198.18.0.45')).statusCode).toBe(201);
  });

  it('refusals answer {error, message} with the registry status and change nothing', async () => {
    await setup();
    const tok = await c.token({ roles: ['gpu'] });
    const a = node('a');
    await post('/v1/join', node('held').request());
    const before = await storeState(c.registry);
    const cases: [unknown, number, string][] = [
      [{ ...a.request(), extra: 1 }, 400, 'bad_request'],
      [{ ...a.request(), name: 'Bad_Name' }, 400, 'bad_request'],
      [{ ...a.request(), role: 7 }, 400, 'bad_request'],
      [{ ...a.request(), csr: 'x'.repeat(200) }, 400, 'invalid_csr'],
      [a.request({ cluster: 'core' }), 403, 'wrong_cluster'],
      [a.request({ token: { id: tok.id, secret: 'wrong' }, clock: c.clock }), 401, 'bad_proof'],
      [a.request({ token: tok, clock: c.clock }), 403, 'token_scope'],
      [node('held').request(), 409, 'name_taken'],
    ];
    for (const [body, status, code] of cases) {
      const r = await post('/v1/join', body);
      expect(r.statusCode, code).toBe(status);
      expect(r.json(), code).toMatchObject({ error: code, message: expect.any(String) });
    }
    const text = await app.inject({
      method: 'POST',
      url: '/v1/join',
      payload: 'name=a',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(text.statusCode).toBe(415);
    const big = await post('/v1/join', { ...a.request(), csr: 'x'.repeat(20_000) });
    expect(big.statusCode).toBe(413);
    // The judged refusals are on record; malformed requests (400, 413, 415) are not.
    expect(
      await refusedOnly(c.registry, before, ['wrong_cluster', 'bad_proof', 'token_scope', 'name_taken'], {
        badProofs: { [tok.id]: 1 },
      }),
    ).toEqual(before);
  });

  it('GET /v1/join/:name: long poll answers 202 when its wait ends on the clock, the bundle once approved', async () => {
    await setup();
    const a = node('a');
    await post('/v1/join', a.request());
    const bad = await app.inject({ method: 'GET', url: `/v1/join/a?${a.pollQuery(c.clock, 61)}` });
    expect(bad.statusCode).toBe(400);
    const waiting = app.inject({ method: 'GET', url: `/v1/join/a?${a.pollQuery(c.clock, 30)}` });
    await settle();
    c.clock.advance(30_000);
    expect((await waiting).statusCode).toBe(202);
    const parked = app.inject({ method: 'GET', url: `/v1/join/a?${a.pollQuery(c.clock, 30)}` });
    await settle();
    await c.svc.operator.approve('a', 'alice');
    const done = await parked;
    expect(done.statusCode).toBe(200);
    expect(done.json().node).toBe('a');
    expect((await app.inject({ method: 'GET', url: `/v1/join/zz?${a.pollQuery(c.clock)}` })).statusCode).toBe(
      404,
    );
    // Without the proof of key possession the poll is a bad request, with a forged one 401.
    expect((await app.inject({ method: 'GET', url: `/v1/join/a?key=${a.fp}` })).statusCode).toBe(400);
    const forged = node('a')
      .pollQuery(c.clock)
      .replace(/^key=[^&]+/, `key=${a.fp}`);
    expect((await app.inject({ method: 'GET', url: `/v1/join/a?${forged}` })).statusCode).toBe(401);
  });

  it('ack and leave are signed by the node key: 204, and 401 for a bad signature', async () => {
    await setup();
    const tok = await c.token();
    const a = node('a');
    await post('/v1/join', a.request({ token: tok, clock: c.clock }));
    const serial = (await c.registry.getNode('a'))!.serial!;
    const forged = { ...node('a').signed('ack', serial, c.clock), key: a.fp };
    expect((await post('/v1/join/a/ack', forged)).statusCode).toBe(401);
    expect((await post('/v1/join/a/ack', a.signed('ack', serial, c.clock))).statusCode).toBe(204);
    expect((await c.registry.getNode('a'))!.state).toBe('active');
    expect((await post('/v1/leave', { name: 'a', ...a.signed('leave', serial, c.clock) })).statusCode).toBe(
      204,
    );
    expect(await c.registry.isRevoked(serial)).toBe(true);
  });

  it('sheds load with 503 + Retry-After beyond the joins in flight, and writes nothing', async () => {
    await setup({ maxInFlightJoins: 0 });
    const before = await storeState(c.registry);
    const r = await post('/v1/join', node('a').request());
    expect(r.statusCode).toBe(503);
    expect(r.headers['retry-after']).toBe('2');
    expect(r.json().error).toBe('busy');
    expect(await storeState(c.registry)).toEqual(before);
  });

  it('an unknown endpoint is 404 in the same error shape', async () => {
    await setup();
    const r = await app.inject({ method: 'GET', url: '/v1/nope?x=1' });
    expect(r.statusCode).toBe(404);
    expect(r.json()).toEqual({ error: 'not_found', message: 'no endpoint GET /v1/nope' });
  });

  it('rate-limits failures, not herds: token guessing is cut off per source, a herd of good joins from one address is not', async () => {
    await setup({ rateLimit: 10 });
    const tok = await c.token();
    // 150 good joins from one NAT address: all admitted (the old 600/min limit was on every request).
    for (let i = 0; i < 150; i++) {
      expect(
        (await post('/v1/join', node(`ok${i}`).request({ token: tok, clock: c.clock }), '198.51.100.1'))
          .statusCode,
      ).toBe(201);
    }
    // A guesser: 10 bad proofs, then even a right one is refused with 429 until the window turns
    // (fewer than --max-failures, 20: the token itself does not lock; test/registrar/lockout.test.ts).
    const guess = (i: number) =>
      node(`g${i}`).request({ token: { id: tok.id, secret: `guess-${i}`.padEnd(43, 'x') }, clock: c.clock });
    for (let i = 0; i < 10; i++)
      expect((await post('/v1/join', guess(i), '203.0.113.66')).statusCode).toBe(401);
    const before = await storeState(c.registry);
    const cut = await post(
      '/v1/join',
      node('g-real').request({ token: tok, clock: c.clock }),
      '203.0.113.66',
    );
    expect(cut.statusCode).toBe(429);
    expect(cut.json().error).toBe('rate_limited');
    expect(Number(cut.headers['retry-after'])).toBeGreaterThan(0);
    expect(await storeState(c.registry)).toEqual(before);
    // The same /64 is the same source for IPv6; another source is not affected.
    expect(
      (await post('/v1/join', node('other').request({ token: tok, clock: c.clock }), '203.0.113.67'))
        .statusCode,
    ).toBe(201);
    c.clock.advance(60_000);
    expect(
      (await post('/v1/join', node('g-real').request({ token: tok, clock: c.clock }), '203.0.113.66'))
        .statusCode,
    ).toBe(201);
  }, 60_000);

  it('a flood of good requests from one source is cut at 6,000 a minute (the flood guard); other sources and the next minute are not', async () => {
    await setup();
    const get = (remoteAddress: string) => app.inject({ method: 'GET', url: '/v1/ca', remoteAddress });
    for (let i = 0; i < 6000; i++) {
      const r = await get('198.51.100.7');
      if (r.statusCode !== 200) throw new Error(`request ${i + 1}: ${r.statusCode} ${r.body}`);
      // No per-answer rate headers: the guard says something only when it refuses.
      if (i === 0) expect(Object.keys(r.headers).filter((h) => h.startsWith('x-ratelimit'))).toEqual([]);
    }
    const cut = await get('198.51.100.7');
    expect(cut.statusCode).toBe(429);
    expect(cut.json()).toEqual({ error: 'rate_limited', message: expect.stringMatching(/^too many requests from this address: retry in \d+ s$/) });
    expect(Number(cut.headers['retry-after'])).toBeGreaterThan(0);
    expect((await get('198.51.100.8')).statusCode).toBe(200);
    c.clock.advance(60_000);
    expect((await get('198.51.100.7')).statusCode).toBe(200);
  }, 60_000);

  it('an IPv6 guesser cannot rotate through its /64 to dodge the limit', async () => {
    await setup({ rateLimit: 5 });
    const tok = await c.token();
    for (let i = 0; i < 5; i++) {
      const bad = node(`g${i}`).request({ token: { id: tok.id, secret: 'x'.repeat(43) }, clock: c.clock });
      expect((await post('/v1/join', bad, `2001:db8:7:7::${i + 1}`)).statusCode).toBe(401);
    }
    expect((await post('/v1/join', node('g9').request(), '2001:db8:7:7:abcd::9')).statusCode).toBe(429);
    expect((await post('/v1/join', node('g9').request(), '2001:db8:7:8::9')).statusCode).toBe(202);
  });

  it('long polls are bounded per source: over the bound a poll answers at once instead of parking', async () => {
    await setup({ maxPolls: { total: 100, perSource: 1 } });
    const a = node('a');
    const b = node('b');
    await post('/v1/join', a.request(), '203.0.113.5');
    await post('/v1/join', b.request(), '203.0.113.5');
    const first = app.inject({
      method: 'GET',
      url: `/v1/join/a?${a.pollQuery(c.clock, 30)}`,
      remoteAddress: '203.0.113.5',
    });
    await settle();
    expect(c.svc.delivery.parked).toBe(1);
    const second = await app.inject({
      method: 'GET',
      url: `/v1/join/b?${b.pollQuery(c.clock, 30)}`,
      remoteAddress: '203.0.113.5',
    });
    expect(second.statusCode).toBe(202);
    expect(c.svc.delivery.parked).toBe(1);
    c.clock.advance(30_000);
    expect((await first).statusCode).toBe(202);
  });
});
