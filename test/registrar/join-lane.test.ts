// The join's fast lane (src/fallback/join-lane.ts) over real TLS sockets on 127.0.0.1: a well-formed
// POST /v1/join is answered without fastify, with what fastify's route would have answered; anything
// the lane would have to refuse before the join runs is handed back to fastify, whose answer the
// client gets byte for byte; the flood guard, the failure limit and the metrics see the lane's answers.
import https from 'node:https';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { memoryLogger } from '../../src/common/log.js';
import { buildApi } from '../../src/fallback/api.js';
import { issueServerIdentity } from '../../src/registrar/ca.js';
import { core, node, refusedOnly, storeState, testCa, type Core } from './harness.js';

let c: Core;
let app: FastifyInstance;
let port: number;
/** Requests fastify answered (the lane's own answers never reach its hooks). */
let throughFastify: string[];
const seen: { route: string; status: number }[] = [];

async function setup(opts: { rateLimit?: number } = {}): Promise<void> {
  c = await core();
  seen.length = 0;
  throughFastify = [];
  const id = issueServerIdentity(await testCa(), 'r-test', ['127.0.0.1'], new Date());
  app = await buildApi({
    service: c.svc,
    log: memoryLogger('api').log,
    https: { key: id.keyPem, cert: id.certPem },
    onResponse: (r) => seen.push({ route: r.route, status: r.status }),
    now: () => c.clock.now(),
    ...opts,
  });
  app.addHook('onResponse', async (req) => {
    throughFastify.push(`${req.method} ${req.url}`);
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
}

afterEach(async () => {
  await app?.close();
  await c?.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request on a fresh TLS connection, the bytes as given. */
function send(
  body: string | Buffer,
  headers: Record<string, string> = { 'content-type': 'application/json' },
  path = '/v1/join',
): Promise<Answer> {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent: false,
        ca: c.svc.caPem(),
        servername: '',
        headers: headers['transfer-encoding']
          ? headers
          : { 'content-length': String(bytes.length), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
      },
    );
    req.on('error', reject);
    req.end(bytes);
  });
}

/** The same bytes through fastify's route (inject never passes the server's request listener). */
async function viaFastify(
  body: string,
  headers: Record<string, string> = { 'content-type': 'application/json' },
) {
  const r = await app.inject({
    method: 'POST',
    url: '/v1/join',
    payload: body,
    headers,
    remoteAddress: '127.0.0.1',
  });
  return { status: r.statusCode, headers: r.headers, body: r.body };
}

describe('the join fast lane', () => {
  it('answers a well-formed join itself, with the status, headers and bundle fastify gives', async () => {
    await setup();
    const tok = await c.token();
    const a = node('lane-a');
    const b = node('lane-b');
    // a through the lane, then again through fastify; b the other way round.
    const aLane = await send(JSON.stringify(a.request({ token: tok, clock: c.clock })));
    const aAgain = await viaFastify(JSON.stringify(a.request({ token: tok, clock: c.clock })));
    const bFastify = await viaFastify(JSON.stringify(b.request({ token: tok, clock: c.clock })));
    const bLane = await send(JSON.stringify(b.request({ token: tok, clock: c.clock })));
    expect([aLane.status, aAgain.status, bFastify.status, bLane.status]).toEqual([201, 200, 201, 200]);
    expect(throughFastify).toEqual(['POST /v1/join', 'POST /v1/join']); // the two inject() calls only
    expect(JSON.parse(aLane.body)).toEqual(JSON.parse(aAgain.body));
    expect(JSON.parse(bLane.body)).toEqual(JSON.parse(bFastify.body));
    expect(JSON.parse(aLane.body)).toMatchObject({ v: 1, node: 'lane-a', mac: expect.any(String) });
    for (const h of ['content-type', 'content-length'])
      expect([h, aLane.headers[h]]).toEqual([
        h,
        h === 'content-length' ? String(aLane.body.length) : aAgain.headers[h],
      ]);
    // A node waiting for approval: 202 with Retry-After, as through fastify.
    const p = node('lane-p');
    const pending = await send(JSON.stringify(p.request()));
    const pendingAgain = await viaFastify(JSON.stringify(p.request()));
    expect(pending.status).toBe(202);
    expect(pending.headers['retry-after']).toBe(pendingAgain.headers['retry-after']);
    expect(JSON.parse(pending.body)).toEqual(JSON.parse(pendingAgain.body));
    // The metrics saw the lane's answers under the route's name.
    expect(seen.map((s) => `${s.route} ${s.status}`)).toEqual([
      '/v1/join 201',
      '/v1/join 200',
      '/v1/join 201',
      '/v1/join 200',
      '/v1/join 202',
      '/v1/join 202',
    ]);
  });

  it('hands every body it would refuse back to fastify: the same answer as fastify alone, and nothing changes', async () => {
    await setup();
    const tok = await c.token();
    const good = node('good').request({ token: tok, clock: c.clock });
    const text = JSON.stringify(good);
    const bad: [string, string][] = [
      ['not JSON', text.slice(0, -3)],
      ['JSON that is not an object', '[1,2,3]'],
      ['a missing field', JSON.stringify({ ...good, csr: undefined })],
      ['a field of the wrong type', JSON.stringify({ ...good, role: 7 })],
      ['an unknown field', JSON.stringify({ ...good, admin: true })],
      ['a bad name', JSON.stringify({ ...good, name: 'Bad Name!' })],
      ['__proto__ (prototype poisoning)', text.replace('{', '{"__proto__":{"admin":true},')],
      ['constructor.prototype', text.replace('{', '{"constructor":{"prototype":{"admin":true}},')],
      ['a \\u-escaped __proto__', text.replace('{', '{"\\u005f_proto__":{"admin":true},')],
    ];
    const before = await storeState(c.registry);
    for (const [what, body] of bad) {
      const lane = await send(body);
      const alone = await viaFastify(body);
      expect(lane.status, what).toBeGreaterThanOrEqual(400);
      expect([what, lane.status, lane.body]).toEqual([what, alone.status, alone.body]);
      expect(lane.headers['content-type'], what).toBe(alone.headers['content-type']);
    }
    // Each went through fastify twice (handed back, and inject), and fastify counted each as refused.
    expect(throughFastify).toHaveLength(2 * bad.length);
    expect(seen.filter((s) => s.status >= 400)).toHaveLength(2 * bad.length);
    expect(await storeState(c.registry)).toEqual(before);
  });

  it("answers the join's own refusals like fastify's error handler, and they change nothing but the record of the refusal", async () => {
    await setup();
    const tok = await c.token();
    const wrong = { id: tok.id, secret: 'x'.repeat(43) };
    const before = await storeState(c.registry);
    const lane = await send(JSON.stringify(node('g1').request({ token: wrong, clock: c.clock })));
    expect(lane.status).toBe(401);
    expect(throughFastify).toEqual([]);
    const alone = await viaFastify(JSON.stringify(node('g2').request({ token: wrong, clock: c.clock })));
    expect(JSON.parse(lane.body)).toEqual(JSON.parse(alone.body));
    expect(JSON.parse(lane.body)).toMatchObject({ error: expect.any(String), message: expect.any(String) });
    expect(lane.body).not.toContain('x'.repeat(43));
    const reason = JSON.parse(lane.body).error as string;
    expect(await refusedOnly(c.registry, before, [reason, reason], { badProofs: { [tok.id]: 2 } })).toEqual(
      before,
    );
  });

  it('the failure limit counts the refusals the lane answers, and the flood guard refuses what it then takes', async () => {
    await setup({ rateLimit: 3 });
    const tok = await c.token();
    for (let i = 0; i < 3; i++) {
      const r = await send(
        JSON.stringify(
          node(`g${i}`).request({
            token: { id: tok.id, secret: `guess-${i}`.padEnd(43, 'x') },
            clock: c.clock,
          }),
        ),
      );
      expect(r.status).toBe(401);
    }
    expect(throughFastify).toEqual([]);
    const before = await storeState(c.registry);
    // A right proof from the same source, now cut off: refused by fastify's guard (the lane hands it on).
    const cut = await send(JSON.stringify(node('real').request({ token: tok, clock: c.clock })));
    expect(cut.status).toBe(429);
    expect(JSON.parse(cut.body)).toMatchObject({ error: 'rate_limited' });
    expect(Number(cut.headers['retry-after'])).toBeGreaterThan(0);
    expect(throughFastify).toEqual(['POST /v1/join']);
    expect(await storeState(c.registry)).toEqual(before);
    c.clock.advance(60_000);
    expect((await send(JSON.stringify(node('real').request({ token: tok, clock: c.clock })))).status).toBe(
      201,
    );
  });

  it('leaves to fastify what it does not take: another media type or charset, a chunked body, a query string, an empty body', async () => {
    await setup();
    const tok = await c.token();
    const body = (n: string) => JSON.stringify(node(n).request({ token: tok, clock: c.clock }));
    const latin1 = await send(body('t1'), { 'content-type': 'application/json; charset=latin1' });
    const chunked = await send(body('t2'), {
      'content-type': 'application/json',
      'transfer-encoding': 'chunked',
    });
    const query = await send(body('t3'), { 'content-type': 'application/json' }, '/v1/join?x=1');
    const form = await send(body('t4'), { 'content-type': 'application/x-www-form-urlencoded' });
    const empty = await send('', { 'content-type': 'application/json' });
    expect(throughFastify).toEqual([
      'POST /v1/join',
      'POST /v1/join',
      'POST /v1/join?x=1',
      'POST /v1/join',
      'POST /v1/join',
    ]);
    expect(chunked.status).toBe(201);
    expect(query.status).toBe(201);
    expect(form.status).toBe(415);
    expect(JSON.parse(form.body)).toMatchObject({ error: 'unsupported_media_type' });
    expect(empty.status).toBe(400);
    expect(latin1.status).toBe(
      (await viaFastify(body('t5'), { 'content-type': 'application/json; charset=latin1' })).status,
    );
  });
});
