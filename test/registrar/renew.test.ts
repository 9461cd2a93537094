// Renewal (src/registrar/registration.ts renew(), DESIGN "Renewal", issue 9 item 1) on a ManualClock
// over the in-memory registry, and POST /v1/renew through fastify's inject().
import { X509Certificate } from 'node:crypto';
import { generateKeyPairSync } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { memoryLogger } from '../../src/common/log.js';
import { nodeSignedPayload, renewRef, signNode } from '../../src/common/proof.js';
import { buildCsr, keyFingerprint } from '../../src/common/x509.js';
import { buildApi } from '../../src/fallback/api.js';
import { core, FAR, node, storeState, testCa, type Core } from './harness.js';
import { code } from './harness.js';

let c: Core;
let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
  await c?.close();
});

/** A node joined with a token and acknowledged: active, with its serial. */
async function joined(name = 'n1') {
  const tok = await c.token();
  const n = node(name);
  const out = await c.svc.join(n.request({ token: tok, clock: c.clock }), FAR);
  expect(out.status).toBe(201);
  const serial = (await c.registry.getNode(name))!.serial!;
  await c.svc.ack(name, n.signed('ack', serial, c.clock));
  return { n, serial };
}

/** A rotation request: the old key signs (serial, new key), the new key signs its CSR. */
function rotation(n: ReturnType<typeof node>, serial: string) {
  const newKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const fp = keyFingerprint(newKey);
  const ts = Math.floor(c.clock.now() / 1000);
  return {
    newKey,
    fp,
    body: {
      key: n.fp,
      serial,
      ts,
      sig: signNode(n.key, nodeSignedPayload('renew', n.name, renewRef(serial, fp), ts)),
      newCsr: buildCsr(n.name, newKey),
    },
  };
}

describe('renew', () => {
  it('issues a new certificate for the same key in one change: new serial, later notAfter, a renewed event', async () => {
    c = await core();
    const { n, serial } = await joined();
    const before = (await c.registry.getNode('n1'))!;
    c.clock.advance(60 * 86_400_000); // two thirds of the 90-day default
    const bundle = await c.svc.renew('n1', n.signed('renew', serial, c.clock));
    const after = (await c.registry.getNode('n1'))!;
    expect(after.serial).not.toBe(serial);
    expect(after).toMatchObject({ state: 'active', key: n.fp, rev: before.rev + 1 });
    expect(Date.parse(after.notAfter!)).toBe(Date.parse(before.notAfter!) + 60 * 86_400_000);
    expect(after.lastSeen).toBe(new Date(c.clock.now()).toISOString());
    expect(bundle.certificate).toBe(after.certificate);
    const cert = new X509Certificate(bundle.certificate);
    expect(cert.verify(new X509Certificate((await testCa()).certPem).publicKey)).toBe(true);
    expect(cert.serialNumber).toBe(after.serial);
    expect((await c.registry.listSerials()).map((s) => s.serial)).toEqual([serial, after.serial]);
    const events = await c.registry.listEvents(0, 100);
    expect(events.at(-1)).toMatchObject({
      type: 'renewed',
      name: 'n1',
      detail: { previousSerial: serial, serial: after.serial, notAfter: after.notAfter },
    });
    // The old serial no longer renews: the node signs with its current certificate's serial.
    expect(await code(c.svc.renew('n1', n.signed('renew', serial, c.clock)))).toBe('bad_signature');
    await c.svc.renew('n1', n.signed('renew', after.serial!, c.clock));
  });

  it('a bad signature, a stale time, an old serial or another kind is 401 and changes nothing', async () => {
    c = await core();
    const { n, serial } = await joined();
    await c.svc.renew('n1', n.signed('renew', serial, c.clock));
    const current = (await c.registry.getNode('n1'))!.serial!;
    const before = await storeState(c.registry);
    const thief = node('n1');
    expect(await code(c.svc.renew('n1', { ...thief.signed('renew', current, c.clock), key: n.fp }))).toBe(
      'bad_signature',
    );
    expect(await code(c.svc.renew('n1', n.signed('renew', serial, c.clock)))).toBe('bad_signature');
    expect(await code(c.svc.renew('n1', n.signed('leave', current, c.clock)))).toBe('bad_signature');
    const stale = n.signed('renew', current, c.clock);
    c.clock.advance(301_000);
    expect(await code(c.svc.renew('n1', stale))).toBe('bad_signature');
    expect(await code(c.svc.renew('n1', thief.signed('renew', current, c.clock)))).toBe('not_found');
    expect(await storeState(c.registry)).toEqual(before);
  });

  it('a removed node gets 410 removed and nothing is issued; an expired one must join again', async () => {
    c = await core();
    const { n, serial } = await joined('a');
    const b = await joined('b');
    await c.svc.operator.remove('a', 'carol');
    const before = await storeState(c.registry);
    expect(await code(c.svc.renew('a', n.signed('renew', serial, c.clock)))).toBe('removed');
    c.clock.advance(91 * 86_400_000);
    const expired = await storeState(c.registry);
    expect(await code(c.svc.renew('b', b.n.signed('renew', b.serial, c.clock)))).toBe('invalid_state');
    expect(await storeState(c.registry)).toEqual(expired);
    expect(JSON.stringify(expired)).toBe(JSON.stringify(before));
  });

  it('--rotate-key: both keys prove themselves, the record takes the new key, the old key can no longer renew', async () => {
    c = await core();
    const { n, serial } = await joined();
    const r = rotation(n, serial);
    const bundle = await c.svc.renew('n1', r.body);
    const after = (await c.registry.getNode('n1'))!;
    expect(after.key).toBe(r.fp);
    expect(keyFingerprint(new X509Certificate(bundle.certificate).publicKey)).toBe(r.fp);
    expect((await c.registry.listEvents(0, 100)).at(-1)).toMatchObject({
      type: 'renewed',
      detail: { previousKey: n.fp, key: r.fp },
    });
    // The old key is no longer the node's.
    expect(await code(c.svc.renew('n1', n.signed('renew', after.serial!, c.clock)))).toBe('not_found');
    // The new key renews.
    const ts = Math.floor(c.clock.now() / 1000);
    const sig = signNode(r.newKey, nodeSignedPayload('renew', 'n1', after.serial!, ts));
    await c.svc.renew('n1', { key: r.fp, serial: after.serial!, ts, sig });
  });

  it('a rotation whose new key the old key did not sign, or whose CSR names another node, changes nothing', async () => {
    c = await core();
    const { n, serial } = await joined();
    const before = await storeState(c.registry);
    const r = rotation(n, serial);
    const other = rotation(n, serial);
    // The old key signed another new key: a CSR swapped in by someone else is refused.
    expect(await code(c.svc.renew('n1', { ...r.body, newCsr: other.body.newCsr }))).toBe('bad_signature');
    // The old signature without the new key in it does not cover a rotation.
    expect(
      await code(c.svc.renew('n1', { ...n.signed('renew', serial, c.clock), newCsr: r.body.newCsr })),
    ).toBe('bad_signature');
    expect(await code(c.svc.renew('n1', { ...r.body, newCsr: buildCsr('n2', r.newKey) }))).toBe(
      'csr_mismatch',
    );
    expect(await storeState(c.registry)).toEqual(before);
  });
});

describe('a removed node at its next contact', () => {
  it('its renewal and its long poll are refused with 410 and change nothing, lastSeen included', async () => {
    c = await core();
    const { n, serial } = await joined();
    await c.svc.operator.remove('n1', 'carol');
    c.clock.advance(3_600_000); // lastSeen would be due for an update
    const before = await storeState(c.registry);
    expect(await code(c.svc.renew('n1', n.signed('renew', serial, c.clock)))).toBe('removed');
    expect(await code(c.svc.poll('n1', n.fp, 0, n.pollProof(c.clock)))).toBe('removed');
    expect(await storeState(c.registry)).toEqual(before);
  });
});

describe('POST /v1/renew', () => {
  it('200 with the bundle and current config; 401 for a bad signature; 410 once removed; 400 for extra fields', async () => {
    c = await core();
    app = await buildApi({ service: c.svc, log: memoryLogger('api').log, now: () => c.clock.now() });
    const { n, serial } = await joined();
    const post = (payload: Record<string, unknown>) =>
      app!.inject({ method: 'POST', url: '/v1/renew', payload, remoteAddress: FAR });
    const forged = { name: 'n1', ...node('n1').signed('renew', serial, c.clock), key: n.fp };
    expect((await post(forged)).statusCode).toBe(401);
    expect((await post({ name: 'n1', ...n.signed('renew', serial, c.clock), extra: 1 })).statusCode).toBe(
      400,
    );
    const ok = await post({ name: 'n1', ...n.signed('renew', serial, c.clock) });
    expect(ok.statusCode).toBe(200);
    const rec = (await c.registry.getNode('n1'))!;
    expect(ok.json()).toMatchObject({ node: 'n1', certificate: rec.certificate, config: {} });
    await c.svc.operator.remove('n1', 'carol');
    const gone = await post({ name: 'n1', ...n.signed('renew', rec.serial!, c.clock) });
    expect(gone.statusCode).toBe(410);
    expect(gone.json()).toMatchObject({ error: 'removed' });
  });
});
