/**
 * The one HTTPS JSON client helper (src/fallback/client.ts `httpsJson`, issue 7 item 6): bounded
 * answers, malformed JSON and certificate failures as MusterErrors, an abort that rejects with the
 * caller's reason, and the API's `{error, message}` turned into a MusterError a registrar cannot abuse.
 * A real HTTPS server on 127.0.0.1:0 with a certificate made by openssl.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { isMusterError, MusterError } from '../../src/common/errors.js';
import { apiError, httpsJson, retryAfterMs, type HttpResult } from '../../src/fallback/client.js';
import { tempDir } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let server: https.Server;
let base: string;
let certPem: string;
let otherPem: string;

function selfSigned(dir: string, name: string): { key: string; cert: string } {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.crt`);
  const r = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert,
  ]); // prettier-ignore
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
}

beforeAll(async () => {
  t = tempDir();
  const id = selfSigned(t.dir, 'server');
  certPem = id.cert;
  otherPem = selfSigned(t.dir, 'other').cert;
  server = https.createServer({ key: id.key, cert: id.cert }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://x');
    if (url.pathname === '/echo') {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ method: req.method, type: req.headers['content-type'] ?? null, body }));
      });
    } else if (url.pathname === '/big') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ pad: 'x'.repeat(2 * 1024 * 1024) }));
    } else if (url.pathname === '/malformed') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"half":');
    } else if (url.pathname === '/pem') {
      res.writeHead(200, { 'content-type': 'application/x-pem-file' });
      res.end(certPem);
    } else if (url.pathname === '/empty') {
      res.writeHead(204);
      res.end();
    } else if (url.pathname === '/hang') {
      // Never answers.
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not_found', message: 'no such thing' }));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  t.cleanup();
});

const rejection = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => new Error('resolved'),
    (e: unknown) => e,
  );

describe('httpsJson', () => {
  it('sends JSON, parses a JSON answer, keeps other answers as text and an empty one as undefined', async () => {
    const r = await httpsJson(`${base}/echo`, { method: 'POST', body: { a: 1 }, ca: certPem });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ method: 'POST', type: 'application/json', body: '{"a":1}' });
    const raw = await httpsJson(`${base}/echo`, { method: 'POST', rawBody: '{', insecure: true });
    expect(raw.body).toMatchObject({ body: '{' });
    expect((await httpsJson(`${base}/pem`, { ca: certPem })).body).toBe(certPem);
    expect((await httpsJson(`${base}/empty`, { ca: certPem })).body).toBeUndefined();
    const notFound = await httpsJson(`${base}/nothing`, { ca: certPem });
    expect(notFound.status).toBe(404); // an HTTP error status is an answer, not a failure
  });

  it('refuses a server whose certificate does not chain to the given CA (MUSTER_ERR_TLS)', async () => {
    const err = await rejection(httpsJson(`${base}/echo`, { ca: otherPem }));
    expect(isMusterError(err, 'MUSTER_ERR_TLS')).toBe(true);
    // Without any trust given, the system CAs are used: a self-signed registrar is refused too.
    expect(isMusterError(await rejection(httpsJson(`${base}/echo`)), 'MUSTER_ERR_TLS')).toBe(true);
  });

  it('bounds the answer, and reports malformed JSON and an unreachable server as MUSTER_ERR_UNREACHABLE', async () => {
    const big = await rejection(httpsJson(`${base}/big`, { ca: certPem }));
    expect(isMusterError(big, 'MUSTER_ERR_UNREACHABLE')).toBe(true);
    expect((big as Error).message).toMatch(/larger than 1048576 bytes/);
    expect((await httpsJson(`${base}/big`, { ca: certPem, maxBytes: 4 * 1024 * 1024 })).status).toBe(200);
    const bad = await rejection(httpsJson(`${base}/malformed`, { ca: certPem }));
    expect(isMusterError(bad, 'MUSTER_ERR_UNREACHABLE')).toBe(true);
    expect((bad as Error).message).toMatch(/malformed JSON/);
    const closed = await rejection(httpsJson('https://127.0.0.1:1/', { insecure: true }));
    expect(isMusterError(closed, 'MUSTER_ERR_UNREACHABLE')).toBe(true);
  });

  it('a connection reset during the TLS handshake is the network (MUSTER_ERR_UNREACHABLE), not a trust failure', async () => {
    // A registrar restarting, or anything on the path, can drop a connection before TLS is set up;
    // Node then says "socket disconnected before secure TLS connection was established". Taken for a
    // TLS mismatch, that ended `muster join` with exit 5, which its unit never retries.
    const dropper = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => dropper.listen(0, '127.0.0.1', r));
    try {
      const url = `https://127.0.0.1:${(dropper.address() as AddressInfo).port}/`;
      const err = await rejection(httpsJson(url, { ca: certPem }));
      expect((err as Error).message).toMatch(/disconnected|reset|hang up/i);
      expect(isMusterError(err, 'MUSTER_ERR_UNREACHABLE'), String(err)).toBe(true);
    } finally {
      await new Promise((r) => dropper.close(r));
    }
  });

  it("rejects with the caller's own reason when its signal aborts, and fails an idle request after timeoutMs", async () => {
    const ctl = new AbortController();
    const why = new MusterError('MUSTER_ERR_TIMEOUT', 'not registered after 2 s');
    const pending = rejection(httpsJson(`${base}/hang`, { ca: certPem, signal: ctl.signal }));
    setImmediate(() => ctl.abort(why));
    expect(await pending).toBe(why);
    const idle = await rejection(httpsJson(`${base}/hang`, { ca: certPem, timeoutMs: 200 }));
    expect(isMusterError(idle, 'MUSTER_ERR_UNREACHABLE')).toBe(true);
    expect((idle as Error).message).toMatch(/no answer within/);
  });
});

describe('API errors', () => {
  const res = (status: number, body: unknown, headers: HttpResult['headers'] = {}): HttpResult => ({
    status,
    headers,
    body,
  });

  it('keeps an API code and its message; a local or unknown code becomes internal', () => {
    const taken = apiError(res(409, { error: 'name_taken', message: 'held by key X' }));
    expect([taken.code, taken.message]).toEqual(['name_taken', 'held by key X']);
    // A registrar must not be able to make a node report a local error (and exit with its code).
    expect(apiError(res(400, { error: 'MUSTER_ERR_TIMEOUT', message: 'x' })).code).toBe('internal');
    expect(apiError(res(400, { error: 'no_such_code', message: 'x' })).code).toBe('internal');
    expect(apiError(res(502, '<html>bad gateway</html>')).message).toBe('HTTP 502');
    // A caller may narrow the codes it acts on.
    expect(apiError(res(409, { error: 'invalid_state' }), ['name_taken']).code).toBe('internal');
  });

  it('reads Retry-After in seconds, capped at an hour', () => {
    expect(retryAfterMs(res(503, {}, { 'retry-after': '7' }))).toBe(7000);
    expect(retryAfterMs(res(503, {}, { 'retry-after': '999999' }))).toBe(3_600_000);
    expect(retryAfterMs(res(503, {}, {}))).toBeUndefined();
    expect(retryAfterMs(res(503, {}, { 'retry-after': 'soon' }))).toBeUndefined();
    expect(retryAfterMs(res(503, {}, { 'retry-after': '' }))).toBeUndefined();
  });
});
