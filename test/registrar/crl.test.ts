// Revocation that bites (issue 9, item 2): the registrar's CRL (src/registrar/crl.ts,
// src/common/crl.ts) over the registrar core on a ManualClock, checked by openssl as a relying party
// would: `openssl crl` parses it, `openssl verify -crl_check` refuses a removed node's certificate.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { memoryLogger } from '../../src/common/log.js';
import { fromPem, toPem } from '../../src/common/x509.js';
import { buildApi } from '../../src/fallback/api.js';
import { CRL_RESIGN_BEFORE_MS, CRL_VALIDITY_MS } from '../../src/registrar/crl.js';
import { core, FAR, node, settle, testCa, type Core } from './harness.js';

let dir: string;
let caFile: string;
let c: Core | undefined;
let app: FastifyInstance | undefined;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'muster-crl-'));
  caFile = path.join(dir, 'ca.crt');
  writeFileSync(caFile, (await testCa()).certPem);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await app?.close();
  app = undefined;
  await c?.close();
  c = undefined;
});

function openssl(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

let n = 0;
function file(content: string | Buffer, ext: string): string {
  const f = path.join(dir, `f${++n}.${ext}`);
  writeFileSync(f, content);
  return f;
}

/** A core whose clock starts now: openssl checks the (real) CA's validity at the clock's time. */
async function start(): Promise<Core> {
  c = await core({ clock: new ManualClock(Date.now()) });
  await settle();
  return c;
}

/** Joins a node with a token; returns its certificate PEM and serial. */
async function joined(
  k: Core,
  name: string,
): Promise<{ pem: string; serial: string; n: ReturnType<typeof node> }> {
  const tok = await k.token({ uses: 1 });
  const nd = node(name);
  const out = await k.svc.join(nd.request({ token: tok, clock: k.clock }), FAR);
  if (out.status === 202) throw new Error('not issued');
  const rec = (await k.registry.getNode(name))!;
  return { pem: out.bundle.certificate, serial: rec.serial!, n: nd };
}

const crlText = (der: Buffer) =>
  openssl('crl', '-inform', 'DER', '-in', file(der, 'der'), '-noout', '-text', '-CAfile', caFile);
const crlNumber = (text: string): number => Number(/X509v3 CRL Number:\s*\n\s*(\d+)/.exec(text)?.[1]);

/** `openssl verify -crl_check` of a certificate against the CA and a CRL, at the core's time. */
function verify(k: Core, certPem: string, crlDer: Buffer): { status: number | null; out: string } {
  const at = String(Math.floor(k.clock.now() / 1000) + 60);
  return openssl(
    'verify',
    '-crl_check',
    '-attime',
    at,
    '-CAfile',
    caFile,
    '-CRLfile',
    file(toPem(crlDer, 'X509 CRL'), 'pem'),
    file(certPem, 'crt'),
  );
}

describe('the CRL', () => {
  it('openssl parses it: the CA as issuer, a CRL number, a 7-day nextUpdate, the signature verifies', async () => {
    const k = await start();
    const r = crlText(await k.svc.crl());
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('verify OK');
    expect(r.out).toMatch(/Issuer: CN ?= ?muster CA test, O ?= ?muster/);
    expect(crlNumber(r.out)).toBeGreaterThan(0);
    expect(r.out).toContain('No Revoked Certificates');
    const last = Date.parse(/Last Update: (.+)\n/.exec(r.out)![1]!);
    const next = Date.parse(/Next Update: (.+)\n/.exec(r.out)![1]!);
    expect(last).toBe(Math.floor(k.clock.now() / 1000) * 1000);
    expect(next - last).toBe(CRL_VALIDITY_MS);
  });

  it('verify -crl_check accepts a live node; after remove and leave it refuses them ("certificate revoked"), not the others', async () => {
    const k = await start();
    const a = await joined(k, 'a');
    const b = await joined(k, 'b');
    const l = await joined(k, 'l');
    const before = await k.svc.crl();
    for (const x of [a, b, l]) {
      const r = verify(k, x.pem, before);
      expect(r.status, r.out).toBe(0);
    }

    await k.svc.operator.remove('a', 'test');
    await k.svc.leave('l', l.n.signed('leave', l.serial, k.clock));
    await settle();
    const after = await k.svc.crl();
    expect(after.equals(before)).toBe(false);
    for (const x of [a, l]) {
      const r = verify(k, x.pem, after);
      expect(r.status).not.toBe(0);
      expect(r.out).toContain('certificate revoked');
    }
    expect(verify(k, b.pem, after).status).toBe(0);

    const text = crlText(after).out;
    expect(crlNumber(text)).toBeGreaterThan(crlNumber(crlText(before).out));
    expect(text).toContain(`Serial Number: ${a.serial}`);
    expect(text).toContain(`Serial Number: ${l.serial}`);
    expect(text).not.toContain(`Serial Number: ${b.serial}`);
    expect((await k.registry.listRevocations()).map((r) => r.serial).sort()).toEqual(
      [a.serial, l.serial].sort(),
    );
  });

  it('is cached between removals, and re-signed before its nextUpdate on the clock', async () => {
    const k = await start();
    const first = await k.svc.crl();
    expect(await k.svc.crl()).toBe(first); // served from the cache: not signed per request
    k.clock.advance(CRL_VALIDITY_MS - CRL_RESIGN_BEFORE_MS - 1);
    await settle();
    expect(await k.svc.crl()).toBe(first);
    k.clock.advance(1);
    await settle();
    const second = await k.svc.crl();
    expect(second).not.toBe(first);
    const t1 = crlText(first).out;
    const t2 = crlText(second).out;
    expect(crlNumber(t2)).toBeGreaterThan(crlNumber(t1));
    const last = Date.parse(/Last Update: (.+)\n/.exec(t2)![1]!);
    expect(last).toBe(Math.floor(k.clock.now() / 1000) * 1000);
    // And again a validity later: the timer re-arms after every signing.
    k.clock.advance(CRL_VALIDITY_MS - CRL_RESIGN_BEFORE_MS);
    await settle();
    expect(crlNumber(crlText(await k.svc.crl()).out)).toBeGreaterThan(crlNumber(t2));
  });

  it('leaves no timer behind when the registrar closes: the CRL is not signed again', async () => {
    const k = await start();
    const first = await k.svc.crl();
    await k.close();
    c = undefined;
    k.clock.advance(2 * CRL_VALIDITY_MS);
    await settle();
    expect(await k.svc.crl()).toBe(first);
  });

  it('issued certificates carry the distribution point <registrar url>/v1/crl', async () => {
    const k = await start();
    const a = await joined(k, 'a');
    const text = openssl('x509', '-in', file(a.pem, 'crt'), '-noout', '-text').out;
    expect(text).toMatch(
      /X509v3 CRL Distribution Points:\s*\n\s*Full Name:\s*\n\s*URI:https:\/\/198\.18\.0\.1:8443\/v1\/crl/,
    );
    const r = openssl('verify', '-x509_strict', '-CAfile', caFile, file(a.pem, 'crt'));
    expect(r.status, r.out).toBe(0);
  });
});

describe('GET /v1/crl', () => {
  async function api(): Promise<{ k: Core; app: FastifyInstance }> {
    const k = await start();
    app = await buildApi({ service: k.svc, log: memoryLogger('api').log, now: () => k.clock.now() });
    return { k, app };
  }

  it('answers DER as application/pkix-crl by default', async () => {
    const { k, app } = await api();
    const res = await app.inject({ method: 'GET', url: '/v1/crl' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/pkix-crl');
    expect(res.rawPayload.equals(await k.svc.crl())).toBe(true);
    expect(crlText(res.rawPayload).out).toContain('verify OK');
  });

  it('answers PEM for Accept: application/x-pem-file and for ?format=pem', async () => {
    const { k, app } = await api();
    const der = await k.svc.crl();
    for (const req of [
      { url: '/v1/crl', headers: { accept: 'application/x-pem-file' } },
      { url: '/v1/crl?format=pem', headers: {} },
    ]) {
      const res = await app.inject({ method: 'GET', ...req });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/x-pem-file/);
      expect(res.body).toMatch(/^-----BEGIN X509 CRL-----\n/);
      expect(fromPem(res.body, 'X509 CRL').equals(der)).toBe(true);
      const r = openssl('crl', '-in', file(res.body, 'pem'), '-noout', '-CAfile', caFile);
      expect(r.out).toContain('verify OK');
    }
    const der2 = await app.inject({
      method: 'GET',
      url: '/v1/crl?format=der',
      headers: { accept: 'application/x-pem-file' },
    });
    expect(der2.headers['content-type']).toBe('application/pkix-crl');
  });

  it('serves the re-signed CRL after a removal', async () => {
    const { k, app } = await api();
    const a = await joined(k, 'a');
    await k.svc.operator.remove('a', 'test');
    await settle();
    const res = await app.inject({ method: 'GET', url: '/v1/crl' });
    expect(crlText(res.rawPayload).out).toContain(`Serial Number: ${a.serial}`);
  });

  it('refuses an unknown format with 400 and an error code', async () => {
    const { app } = await api();
    const res = await app.inject({ method: 'GET', url: '/v1/crl?format=xml' });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toBeTypeOf('string');
  });
});
