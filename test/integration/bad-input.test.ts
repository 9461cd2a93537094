/**
 * Bad input, end to end (developers' guide: "Bad input gets a clear error (stable code + message for a
 * person), changes nothing, and the process keeps serving. Secrets never appear in logs or error
 * messages."; DESIGN "HTTPS API": "a rejected request changes nothing in the store").
 *
 * One in-process registrar (real level, real HTTPS on 127.0.0.1:0). Every case takes a snapshot of
 * what the store shows (counts, last event, nodes, tokens and their use counts, install mode, every
 * stored value), sends one bad request, checks the status and the `{error, message}` answer with its
 * stable code, and checks the snapshot again. At the end a valid join still succeeds and no secret or
 * proof HMAC reached the log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import path from 'node:path';
import { MusterError, type ErrorCode } from '../../src/common/errors.js';
import { joinProofMac, nodeSignedPayload, parseToken, signNode } from '../../src/common/proof.js';
import { buildCsr, fromPem, toPem } from '../../src/common/x509.js';
import { expectError, rawRequest, secrets, snapshot, type RawReply } from '../helpers/bad-input.js';
import { refusalReason } from '../../src/registrar/refusals.js';
import {
  api,
  csrFor,
  joinNode,
  startTestRegistrar,
  tempDir,
  type TestRegistrar,
} from '../helpers/registrar.js';

type Reply = {
  status: number;
  body: any;
  headers: Record<string, string | string[] | undefined>;
  text?: string;
};

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar;

/** Proof HMACs sent on the wire: they must not reach the log either. */
const hmacs: string[] = [];

interface Token {
  token: string;
  id: string;
  secret: string;
}

async function createToken(r: TestRegistrar, body: Record<string, unknown> = {}): Promise<Token> {
  const { token } = await r.admin.request<{ token: string }>('POST', '/v1/admin/tokens', body);
  const p = parseToken(token)!;
  secrets.push(p.secret);
  return { token, ...p };
}

const nowS = (): number => Math.floor(Date.now() / 1000);

function proof(
  tok: { id: string; secret: string },
  f: { name: string; role: string; cluster: string; key: string },
  ts = nowS(),
): { id: string; ts: number; hmac: string } {
  const hmac = joinProofMac(tok.secret, { ...f, ts });
  hmacs.push(hmac);
  return { id: tok.id, ts, hmac };
}

/** Sends one bad request and checks the answer and that the store shows exactly what it showed before. */
async function rejected(send: () => Promise<Reply>, status: number, code: ErrorCode): Promise<Reply> {
  const before = await snapshot(reg, { ignoreBadProofs: true });
  const tokensBefore = await reg.service.registry.listTokens();
  const res = await send();
  expectError(res, status, code);
  // A judged refusal is on record (issue 10): at most one `refused` event (repeats from one source
  // within a minute fold into the next one), with the reason of the code answered, and a proof that
  // does not verify with an existing token counts one bad proof against it. Nothing else changes.
  const reason = refusalReason(code);
  const gained = await reg.service.registry.listEvents(before.lastEventSeq, 10);
  expect(gained.length).toBeLessThanOrEqual(reason ? 1 : 0);
  for (const e of gained) expect(e).toMatchObject({ type: 'refused', detail: { reason, code } });
  for (const t of await reg.service.registry.listTokens()) {
    const was = tokensBefore.find((b) => b.id === t.id)?.badProofs ?? 0;
    expect((t.badProofs ?? 0) - was, `bad proofs of ${t.id}`).toBeLessThanOrEqual(
      code === 'bad_proof' ? 1 : 0,
    );
  }
  expect(await snapshot(reg, { eventsUpTo: before.lastEventSeq, ignoreBadProofs: true })).toEqual(before);
  return res;
}

/** The same through the admin socket (AdminClient throws a MusterError with the server's code). */
async function adminRejected(
  method: string,
  urlPath: string,
  body: unknown,
  status: number,
  code: ErrorCode,
): Promise<MusterError> {
  const before = await snapshot(reg);
  const err = await reg.admin.request(method, urlPath, body).then(
    (v) => {
      throw new Error(`expected ${status} ${code}, got success: ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MusterError);
  const ae = err as MusterError;
  expect({ status: ae.status, code: ae.code }, ae.message).toEqual({ status, code });
  expect(ae.message.trim().length).toBeGreaterThan(0);
  for (const s of secrets) expect(ae.message).not.toContain(s);
  expect(await snapshot(reg)).toEqual(before);
  return ae;
}

// State set up once: an issued node ("held", via a token), a pending one ("waiting"), tokens.
let good: Token;
let revoked: Token;
let scoped: Token;
const held = { name: 'held', ...csrFor('held') };
let heldSerial: string;
const waiting = { name: 'waiting', ...csrFor('waiting') };

beforeAll(async () => {
  t = tempDir();
  // These tests send a hundred refused requests from 127.0.0.1 on purpose: the failure rate limit
  // (tested on its own below) must not answer them first.
  reg = await startTestRegistrar(t.dir, { rateLimit: 1_000_000 });
  good = await createToken(reg);
  revoked = await createToken(reg);
  await reg.admin.request('DELETE', `/v1/admin/tokens/${revoked.id}`);
  scoped = await createToken(reg, { roles: ['storage'] });

  const f = { name: 'held', role: 'worker', cluster: '', key: held.fp };
  const r = await api(reg, 'POST', '/v1/join', {
    name: 'held',
    role: 'worker',
    cluster: '',
    csr: held.csr,
    proof: proof(good, f),
  });
  expect(r.status).toBe(201);
  const shown = await reg.admin.request<{ node: { state: string; serial: string } }>(
    'GET',
    '/v1/admin/nodes/held',
  );
  expect(shown.node.state).toBe('issued');
  heldSerial = shown.node.serial;

  const w = await api(reg, 'POST', '/v1/join', {
    name: 'waiting',
    role: 'worker',
    cluster: '',
    csr: waiting.csr,
  });
  expect(w.status).toBe(202);
});

afterAll(async () => {
  await reg?.close();
  t?.cleanup();
});

// ---- helpers for bodies ----

const fresh = csrFor('fresh');
const joinBody = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  name: 'fresh',
  role: 'worker',
  cluster: '',
  csr: fresh.csr,
  ...over,
});

function tamperedCsr(name: string): string {
  const der = Buffer.from(fromPem(csrFor(name).csr, 'CERTIFICATE REQUEST'));
  // The last byte belongs to the signature (the BIT STRING ends the CertificationRequest).
  der[der.length - 1] = der[der.length - 1]! ^ 0x01;
  return toPem(der, 'CERTIFICATE REQUEST');
}

function rsa1024Csr(name: string): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  return buildCsr(name, privateKey);
}

const postJson = (body: unknown) => () => api(reg, 'POST', '/v1/join', body);
const postRaw =
  (body: string, headers: Record<string, string> = { 'content-type': 'application/json' }, chunked = false) =>
  () =>
    rawRequest(reg, 'POST', '/v1/join', { body, headers, chunked });

describe('POST /v1/join: malformed requests', () => {
  const cases: [string, () => Promise<Reply>, number, ErrorCode][] = [
    ['not JSON ("{")', postRaw('{'), 400, 'bad_request'],
    ['truncated JSON', postRaw('{"name": "fresh", "role'), 400, 'bad_request'],
    ['an empty body with content-type JSON', postRaw(''), 400, 'bad_request'],
    ['JSON null', postRaw('null'), 400, 'bad_request'],
    ['a JSON array', postJson([joinBody()]), 400, 'bad_request'],
    ['a JSON string', postJson('fresh'), 400, 'bad_request'],
    ['an empty object', postJson({}), 400, 'bad_request'],
    [
      'a __proto__ key',
      postRaw(JSON.stringify(joinBody()).replace(/^\{/, '{"__proto__":{"admin":true},')),
      400,
      'bad_request',
    ],
    ['missing csr', postJson({ name: 'fresh', role: 'worker', cluster: '' }), 400, 'bad_request'],
    ['missing name', postJson({ role: 'worker', cluster: '', csr: fresh.csr }), 400, 'bad_request'],
    ['an extra unknown field', postJson(joinBody({ admin: true })), 400, 'bad_request'],
    [
      'an extra field in the proof',
      postJson(joinBody({ proof: { id: 'abcdef', ts: nowS(), hmac: 'AAAA', extra: 1 } })),
      400,
      'bad_request',
    ],
    ['name with uppercase', postJson(joinBody({ name: 'Fresh' })), 400, 'bad_request'],
    ['name of 64 characters', postJson(joinBody({ name: 'a'.repeat(64) })), 400, 'bad_request'],
    ['name with a leading "-"', postJson(joinBody({ name: '-fresh' })), 400, 'bad_request'],
    ['name with a trailing "-"', postJson(joinBody({ name: 'fresh-' })), 400, 'bad_request'],
    ['empty name', postJson(joinBody({ name: '' })), 400, 'bad_request'],
    ['name with a dot', postJson(joinBody({ name: 'fresh.example' })), 400, 'bad_request'],
    ['name as an object', postJson(joinBody({ name: { $gt: '' } })), 400, 'bad_request'],
    ['role invalid', postJson(joinBody({ role: 'Worker!' })), 400, 'bad_request'],
    ['role empty', postJson(joinBody({ role: '' })), 400, 'bad_request'],
    ['cluster invalid', postJson(joinBody({ cluster: 'Prod_1' })), 400, 'bad_request'],
    ['cluster missing', postJson({ name: 'fresh', role: 'worker', csr: fresh.csr }), 400, 'bad_request'],
    [
      'csr too short ("garbage", under the schema minimum)',
      postJson(joinBody({ csr: 'garbage' })),
      400,
      'bad_request',
    ],
    ['csr too long (over 8192)', postJson(joinBody({ csr: 'A'.repeat(8193) })), 400, 'bad_request'],
    ['csr as a number', postJson(joinBody({ csr: 12345 })), 400, 'bad_request'],
    [
      'proof ts negative',
      postJson(joinBody({ proof: { id: 'abcdef', ts: -1, hmac: 'AAAA' } })),
      400,
      'bad_request',
    ],
    [
      'proof ts not an integer',
      postJson(joinBody({ proof: { id: 'abcdef', ts: 1.5, hmac: 'AAAA' } })),
      400,
      'bad_request',
    ],
    [
      'proof id malformed',
      postJson(joinBody({ proof: { id: 'ABC', ts: nowS(), hmac: 'AAAA' } })),
      400,
      'bad_request',
    ],
    [
      'proof hmac not base64url',
      postJson(joinBody({ proof: { id: 'abcdef', ts: nowS(), hmac: 'a+b/c=' } })),
      400,
      'bad_request',
    ],
    [
      'proof hmac over 64 characters',
      postJson(joinBody({ proof: { id: 'abcdef', ts: nowS(), hmac: 'A'.repeat(65) } })),
      400,
      'bad_request',
    ],
    ['proof as a string', postJson(joinBody({ proof: 'abcdef.secret' })), 400, 'bad_request'],
  ];
  it.each(
    cases.map(([what, send, status, code]) => [`${what} → ${status} ${code}`, send, status, code] as const),
  )('%s', async (_what, send, status, code) => {
    await rejected(send, status, code);
  });
});

describe('POST /v1/join: well-formed but refused', () => {
  it('cluster of another registrar → 403 wrong_cluster', async () => {
    const res = await rejected(postJson(joinBody({ cluster: 'prod' })), 403, 'wrong_cluster');
    expect(res.body.message).toContain('test');
  });

  it('csr that is garbage text of an allowed length → 400 invalid_csr', async () => {
    await rejected(
      postJson(joinBody({ csr: 'this is not a certificate request; '.repeat(5) })),
      400,
      'invalid_csr',
    );
  });

  it('csr PEM armour around garbage → 400 invalid_csr', async () => {
    const pem = toPem(randomBytes(200), 'CERTIFICATE REQUEST');
    await rejected(postJson(joinBody({ csr: pem })), 400, 'invalid_csr');
  });

  it('csr with a tampered signature → 400 invalid_csr', async () => {
    const res = await rejected(postJson(joinBody({ csr: tamperedCsr('fresh') })), 400, 'invalid_csr');
    expect(res.body.message).toMatch(/signature/);
  });

  it('csr naming another node → 400 csr_mismatch', async () => {
    const res = await rejected(postJson(joinBody({ csr: csrFor('other').csr })), 400, 'csr_mismatch');
    expect(res.body.message).toContain('other');
  });

  it('csr with an RSA-1024 key → 400 invalid_csr', async () => {
    const res = await rejected(postJson(joinBody({ csr: rsa1024Csr('fresh') })), 400, 'invalid_csr');
    expect(res.body.message).toMatch(/2048/);
  });

  it('proof with an unknown token id → 401 bad_proof', async () => {
    const f = { name: 'fresh', role: 'worker', cluster: '', key: fresh.fp };
    await rejected(
      postJson(joinBody({ proof: proof({ id: 'zzzzzz99', secret: good.secret }, f) })),
      401,
      'bad_proof',
    );
  });

  it('proof with a wrong HMAC → 401 bad_proof', async () => {
    const f = { name: 'fresh', role: 'worker', cluster: '', key: fresh.fp };
    const wrong = proof({ id: good.id, secret: randomBytes(32).toString('base64url') }, f);
    await rejected(postJson(joinBody({ proof: wrong })), 401, 'bad_proof');
  });

  it('proof made for other fields (role) → 401 bad_proof', async () => {
    const p = proof(good, { name: 'fresh', role: 'storage', cluster: '', key: fresh.fp });
    await rejected(postJson(joinBody({ proof: p })), 401, 'bad_proof');
  });

  it('proof with a ts 10 minutes old (HMAC right for it) → 401 bad_proof', async () => {
    const p = proof(good, { name: 'fresh', role: 'worker', cluster: '', key: fresh.fp }, nowS() - 600);
    await rejected(postJson(joinBody({ proof: p })), 401, 'bad_proof');
  });

  it('proof with a ts 10 minutes ahead → 401 bad_proof', async () => {
    const p = proof(good, { name: 'fresh', role: 'worker', cluster: '', key: fresh.fp }, nowS() + 600);
    await rejected(postJson(joinBody({ proof: p })), 401, 'bad_proof');
  });

  it('proof with a revoked token → 401 bad_proof', async () => {
    const p = proof(revoked, { name: 'fresh', role: 'worker', cluster: '', key: fresh.fp });
    await rejected(postJson(joinBody({ proof: p })), 401, 'bad_proof');
  });

  it("proof for a role the token's scope excludes → 403 token_scope", async () => {
    const p = proof(scoped, { name: 'fresh', role: 'worker', cluster: '', key: fresh.fp });
    const res = await rejected(postJson(joinBody({ proof: p })), 403, 'token_scope');
    expect(res.body.message).toContain('worker');
  });

  it('a bad proof for a name held by another key still changes nothing (409 name_taken)', async () => {
    const other = csrFor('held');
    const p = proof(good, { name: 'held', role: 'worker', cluster: '', key: other.fp });
    const res = await rejected(
      postJson({ name: 'held', role: 'worker', cluster: '', csr: other.csr, proof: p }),
      409,
      'name_taken',
    );
    expect(res.body.message).toContain(held.fp);
  });
});

describe('POST /v1/join: transport-level bad input', () => {
  it('an oversize body (> 16 KiB) → 413 payload_too_large', async () => {
    await rejected(postRaw(JSON.stringify(joinBody({ csr: 'A'.repeat(20_000) }))), 413, 'payload_too_large');
  });

  it('an oversize body without content-length (chunked) → 413 payload_too_large', async () => {
    await rejected(
      postRaw(
        JSON.stringify(joinBody({ csr: 'A'.repeat(40_000) })),
        { 'content-type': 'application/json' },
        true,
      ),
      413,
      'payload_too_large',
    );
  });

  it('content-type text/plain (fastify parses it as a string; the schema refuses it) → 400 bad_request', async () => {
    await rejected(postRaw(JSON.stringify(joinBody()), { 'content-type': 'text/plain' }), 400, 'bad_request');
  });

  it('content-type application/xml → 415 unsupported_media_type', async () => {
    await rejected(
      postRaw('<join name="fresh"/>', { 'content-type': 'application/xml' }),
      415,
      'unsupported_media_type',
    );
  });

  it('no content-type with a body → 415 unsupported_media_type', async () => {
    await rejected(postRaw(JSON.stringify(joinBody()), {}), 415, 'unsupported_media_type');
  });
});

describe('GET /v1/join/:name', () => {
  const get = (p: string) => () => api(reg, 'GET', p);
  it.each([
    ['a name with uppercase', () => `/v1/join/Held?key=${held.fp}`],
    ['a name of 64 characters', () => `/v1/join/${'a'.repeat(64)}?key=${held.fp}`],
    ['a name with a leading "-"', () => `/v1/join/-held?key=${held.fp}`],
    ['a missing key', () => '/v1/join/held'],
    ['a malformed key (too short)', () => '/v1/join/held?key=abc'],
    ['a malformed key (bad characters)', () => `/v1/join/held?key=${'+'.repeat(43)}`],
    ['a wait over 60 s', () => `/v1/join/held?key=${held.fp}&wait=61`],
    ['a negative wait', () => `/v1/join/held?key=${held.fp}&wait=-1`],
    ['an unknown query parameter', () => `/v1/join/held?key=${held.fp}&admin=1`],
  ])('%s → 400 bad_request', async (_what, p) => {
    await rejected(get(p()), 400, 'bad_request');
  });

  /** A poll query with a proof of key possession (DESIGN "HTTPS API": the poll is signed). */
  const pollQuery = (name: string, c: { key: KeyObject; fp: string }): string => {
    const ts = nowS();
    return `key=${c.fp}&ts=${ts}&sig=${signNode(c.key, nodeSignedPayload('poll', name, c.fp, ts))}`;
  };

  it('an unknown name → 404 not_found, and no record is created', async () => {
    const ghost = csrFor('ghost');
    await rejected(get(`/v1/join/ghost?${pollQuery('ghost', ghost)}`), 404, 'not_found');
    await rejected(get(`/v1/join/ghost?${pollQuery('ghost', ghost)}&wait=1`), 404, 'not_found');
    await expect(reg.admin.request('GET', '/v1/admin/nodes/ghost')).rejects.toMatchObject({
      code: 'not_found',
      status: 404,
    });
  });

  it('a known name with another key → 404 not_found (the holder is not revealed)', async () => {
    const res = await rejected(get(`/v1/join/held?${pollQuery('held', csrFor('held'))}`), 404, 'not_found');
    expect(JSON.stringify(res.body)).not.toContain(held.fp);
  });
});

describe('POST /v1/join/:name/ack and /v1/leave', () => {
  const signed = (
    kind: 'ack' | 'leave',
    over: { key?: KeyObject; serial?: string; ts?: number; name?: string; fp?: string } = {},
  ) => {
    const ts = over.ts ?? nowS();
    const serial = over.serial ?? heldSerial;
    return {
      key: over.fp ?? held.fp,
      serial,
      ts,
      sig: signNode(over.key ?? held.key, nodeSignedPayload(kind, over.name ?? 'held', serial, ts)),
    };
  };
  const ack = (name: string, body: unknown) => () => api(reg, 'POST', `/v1/join/${name}/ack`, body);
  const leave = (body: unknown) => () => api(reg, 'POST', '/v1/leave', body);

  it('ack signed by another key → 401 bad_signature', async () => {
    await rejected(ack('held', signed('ack', { key: csrFor('x').key })), 401, 'bad_signature');
  });

  it('ack with a garbage signature → 401 bad_signature', async () => {
    await rejected(ack('held', { ...signed('ack'), sig: 'AAAA' }), 401, 'bad_signature');
  });

  it('ack with a leave signature (wrong kind) → 401 bad_signature', async () => {
    const s = signed('leave');
    await rejected(ack('held', s), 401, 'bad_signature');
  });

  it('ack with a stale ts (10 minutes old, correctly signed) → 401 bad_signature', async () => {
    await rejected(ack('held', signed('ack', { ts: nowS() - 600 })), 401, 'bad_signature');
  });

  it('ack for another serial → 401 bad_signature', async () => {
    await rejected(ack('held', signed('ack', { serial: 'ABCDEF' })), 401, 'bad_signature');
  });

  it('ack for an unknown node → 404 not_found', async () => {
    const ghost = csrFor('ghost');
    await rejected(
      ack('ghost', signed('ack', { key: ghost.key, fp: ghost.fp, name: 'ghost' })),
      404,
      'not_found',
    );
  });

  it('ack with the key of another node → 404 not_found', async () => {
    await rejected(ack('held', signed('ack', { key: waiting.key, fp: waiting.fp })), 404, 'not_found');
  });

  it('ack for a pending node (no certificate yet) → 401 bad_signature', async () => {
    await rejected(
      ack('waiting', signed('ack', { key: waiting.key, fp: waiting.fp, name: 'waiting' })),
      401,
      'bad_signature',
    );
  });

  it.each([
    ['an empty body', () => ({})],
    ['a missing sig', () => ({ key: held.fp, serial: heldSerial, ts: nowS() })],
    ['a lowercase serial', () => ({ ...signed('ack'), serial: heldSerial.toLowerCase() + 'x' })],
    ['an extra field', () => ({ ...signed('ack'), name: 'held' })],
    ['a ts as text', () => ({ ...signed('ack'), ts: 'now' })],
  ])('ack with %s → 400 bad_request', async (_what, body) => {
    await rejected(ack('held', body()), 400, 'bad_request');
  });

  it('ack with a bad name in the path → 400 bad_request', async () => {
    await rejected(ack('Held', signed('ack')), 400, 'bad_request');
  });

  it.each([
    ['an empty body', () => ({})],
    ['no name', () => signed('leave')],
    ['a bad name', () => ({ name: 'Held', ...signed('leave') })],
    ['a sig that is not base64url', () => ({ name: 'held', ...signed('leave'), sig: '!!' })],
    ['a key fingerprint of the wrong length', () => ({ name: 'held', ...signed('leave'), key: 'abc' })],
    ['a JSON array', () => [{ name: 'held', ...signed('leave') }]],
  ])('leave with %s → 400 bad_request', async (_what, body) => {
    await rejected(leave(body()), 400, 'bad_request');
  });

  it('leave with a bad signature → 401 bad_signature (the node is not removed)', async () => {
    await rejected(
      leave({ name: 'held', ...signed('leave', { key: csrFor('x').key }) }),
      401,
      'bad_signature',
    );
  });

  it('leave with an ack signature → 401 bad_signature', async () => {
    await rejected(leave({ name: 'held', ...signed('ack') }), 401, 'bad_signature');
  });

  it('leave of an unknown node → 404 not_found', async () => {
    const ghost = csrFor('ghost');
    await rejected(
      leave({ name: 'ghost', ...signed('leave', { key: ghost.key, fp: ghost.fp, name: 'ghost' }) }),
      404,
      'not_found',
    );
  });
});

describe('unknown routes', () => {
  it.each([
    ['GET', '/v1/nope'],
    ['GET', '/v2/info'],
    ['POST', '/v1/joins'],
    ['DELETE', '/v1/join'],
    ['PUT', '/v1/join/held'],
    ['GET', '/v1/admin/tokens'], // the admin API is on the socket only
  ])('%s %s → 404 not_found', async (method, p) => {
    const res = await rejected(() => rawRequest(reg, method, p), 404, 'not_found');
    expect(res.body.message).toContain(p);
  });
});

describe('admin API bad input', () => {
  it.each([
    ['install-mode on with forMs 0', { on: true, forMs: 0 }],
    ['install-mode on with a negative forMs', { on: true, forMs: -60_000 }],
    ['install-mode on without forMs', { on: true }],
    ['install-mode on with forMs as text', { on: true, forMs: '15m' }],
    ['install-mode on with max 0', { on: true, forMs: 60_000, max: 0 }],
    ['install-mode on with a role with uppercase', { on: true, forMs: 60_000, role: 'Worker' }],
    ['install-mode on with an unknown field', { on: true, forMs: 60_000, everyone: true }],
    ['install-mode without on', { forMs: 60_000 }],
  ])('%s → 400 bad_request', async (_what, body) => {
    await adminRejected('POST', '/v1/admin/install-mode', body, 400, 'bad_request');
  });

  it.each([
    ['uses negative', { uses: -1 }],
    ['ttlMs 500 (under a second)', { ttlMs: 500 }],
    ['a role with uppercase', { roles: ['Worker'] }],
    ['a cluster with a leading "-"', { clusters: ['-prod'] }],
    ['roles as a string of two', { roles: 'a,b' }],
    ['a description over 200 characters', { description: 'x'.repeat(201) }],
    ['an unknown field', { secret: 'mine' }],
  ])('tokens create with %s → 400 bad_request', async (_what, body) => {
    await adminRejected('POST', '/v1/admin/tokens', body, 400, 'bad_request');
  });

  // Type coercion is off: 0, false and "" are not taken for null ("no limit").
  it.each([0, false, ''])('tokens create with uses %j → 400 bad_request, no token', async (v) => {
    await adminRejected('POST', '/v1/admin/tokens', { uses: v }, 400, 'bad_request');
  });
  it.each([0, false, ''])('tokens create with ttlMs %j → 400 bad_request, no token', async (v) => {
    await adminRejected('POST', '/v1/admin/tokens', { ttlMs: v }, 400, 'bad_request');
  });
  it.each([
    ['a boolean name', { name: false }],
    ['an array name', { name: ['fresh'] }],
    ['a null cluster', { cluster: null }],
  ])('join with %s → 400 bad_request (no coercion)', async (_w, over) => {
    await rejected(
      postRaw(JSON.stringify({ ...joinBody(), ...over }), { 'content-type': 'application/json' }),
      400,
      'bad_request',
    );
  });
  it('install mode {"on": 0} → 400, install mode unchanged', async () => {
    await adminRejected('POST', '/v1/admin/install-mode', { on: 0 }, 400, 'bad_request');
  });

  it('approve of an unknown node → 404 not_found', async () => {
    await adminRejected('POST', '/v1/admin/nodes/ghost/approve', {}, 404, 'not_found');
  });

  it('approve of a node that is not pending (issued) → 409 invalid_state', async () => {
    const e = await adminRejected(
      'POST',
      '/v1/admin/nodes/held/approve',
      { operator: 'alice' },
      409,
      'invalid_state',
    );
    expect(e.message).toContain('issued');
  });

  it('reject of an issued node → 409 invalid_state', async () => {
    await adminRejected('POST', '/v1/admin/nodes/held/reject', {}, 409, 'invalid_state');
  });

  it('approve with a bad name → 400 bad_request', async () => {
    await adminRejected('POST', '/v1/admin/nodes/Waiting/approve', {}, 400, 'bad_request');
  });

  it('approve with an unknown body field → 400 bad_request (the pending node stays pending)', async () => {
    await adminRejected(
      'POST',
      '/v1/admin/nodes/waiting/approve',
      { operator: 'alice', force: true },
      400,
      'bad_request',
    );
    expect((await reg.service.operator.counts()).pending).toBe(1);
  });

  it('revoke of an unknown token → 404 token_not_found', async () => {
    await adminRejected('DELETE', '/v1/admin/tokens/abcdef0123', undefined, 404, 'token_not_found');
  });

  it('revoke with a malformed token id → 400 bad_request', async () => {
    await adminRejected('DELETE', '/v1/admin/tokens/NOT-AN-ID', undefined, 400, 'bad_request');
  });

  it('nodes list with limit 0 or an unknown state → 400 bad_request', async () => {
    await adminRejected('GET', '/v1/admin/nodes?limit=0', undefined, 400, 'bad_request');
    await adminRejected('GET', '/v1/admin/nodes?state=bogus', undefined, 400, 'bad_request');
  });
});

describe('after all that', () => {
  it('the registrar keeps serving: a valid token join succeeds, the pending node can be approved', async () => {
    const tok = await createToken(reg);
    const before = await snapshot(reg);
    const r = await joinNode(reg, path.join(t.dir, 'node-ok'), { name: 'node-ok', token: tok.token });
    expect(r.status).toBe('registered');
    const { node } = await reg.admin.request<{ node: { state: string; decision: { rule: string } } }>(
      'GET',
      '/v1/admin/nodes/node-ok',
    );
    expect(node).toMatchObject({ state: 'active', decision: { rule: 'token' } });
    // The snapshot does see an accepted join (so "unchanged" above means something).
    const after = await snapshot(reg);
    expect(after.lastEventSeq).toBeGreaterThan(before.lastEventSeq);
    expect(after.counts.active).toBe(before.counts.active! + 1);
    expect(after.tokens).not.toEqual(before.tokens); // the use is counted
    expect(after.store).not.toEqual(before.store);
    const approved = await reg.admin.request<{ state: string }>('POST', '/v1/admin/nodes/waiting/approve', {
      operator: 'alice',
    });
    expect(approved.state).toBe('issued');
    expect(r.logs.text()).not.toContain(tok.secret);
  });

  it('no token secret and no proof HMAC reached the registrar log', () => {
    expect(secrets.length).toBeGreaterThanOrEqual(4);
    expect(hmacs.length).toBeGreaterThanOrEqual(8);
    const text = reg.logs.text();
    expect(text.length).toBeGreaterThan(0);
    for (const s of secrets) expect(text.includes(s), 'a token secret is in the log').toBe(false);
    for (const h of hmacs) expect(text.includes(h), 'a proof HMAC is in the log').toBe(false);
  });
});

describe('rate limit', () => {
  it('refusals, not requests, are limited: after 5 refused requests from 127.0.0.1 the next one gets 429 rate_limited with retry-after, and changes nothing', async () => {
    const rt = tempDir();
    const limited = await startTestRegistrar(rt.dir, { rateLimit: 5 });
    try {
      // Successful requests never count (a herd behind one NAT address is not an attack).
      for (let i = 0; i < 20; i++) expect((await api(limited, 'GET', '/v1/info')).status).toBe(200);
      for (let i = 0; i < 5; i++) expectError(await api(limited, 'GET', '/v1/nope'), 404, 'not_found');
      const before = await snapshot(limited);
      // A join that would otherwise be stored as pending.
      const c = csrFor('late');
      const res: RawReply | Reply = await api(limited, 'POST', '/v1/join', {
        name: 'late',
        role: 'worker',
        cluster: '',
        csr: c.csr,
      });
      expectError(res, 429, 'rate_limited');
      const retryAfter = Number(res.headers['retry-after']);
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(await snapshot(limited)).toEqual(before);
      expect((await limited.service.operator.counts()).pending).toBe(0);
      // Still limited, still the same shape.
      expectError(await api(limited, 'GET', '/v1/info'), 429, 'rate_limited');
    } finally {
      await limited.close();
      rt.cleanup();
    }
  });
});
