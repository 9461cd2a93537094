// Lockout (issue 10, item 2; DESIGN "Admission policy": Lockout): install mode switches itself off
// after N refused attempts while open, a join token locks after N bad proofs. On the exactly-once
// core with a ManualClock; the restart cases on a real level store, reopened.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Mdns, Publication } from '../../src/advertiser/index.js';
import { ManualClock } from '../../src/common/clock.js';
import { startRegistrarDiscovery } from '../../src/registrar/discovery.js';
import { DEFAULT_MAX_FAILURES } from '../../src/registrar/refusals.js';
import { LevelRegistry } from '../../src/store/level.js';
import { code, core, FAR, node, ON_LINK, settle, type Core } from './harness.js';

let c: Core | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await c?.close();
  c = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const openWindow = (c: Core, forMs = 15 * 60_000) =>
  c.svc.operator.installModeOn({ forMs, max: null, remote: false });

/** One refused join each, of a different kind in turn (none of them malformed). */
async function refuseOnce(c: Core, i: number): Promise<string> {
  const n = node(`x${i}`);
  switch (i % 3) {
    case 0: // a cluster this registrar does not serve
      return code(c.svc.join(n.request({ cluster: 'core' }), ON_LINK));
    case 1: // a proof for a token id that does not exist
      return code(c.svc.join(n.request({ token: { id: 'feedfacecafe', secret: 's' }, clock: c.clock }), FAR));
    default: // a name held by another key
      return code(c.svc.join(node('held').request(), ON_LINK));
  }
}

describe('install mode locks after N refused attempts', () => {
  it(`stays open through ${DEFAULT_MAX_FAILURES - 1} refusals and closes at exactly the ${DEFAULT_MAX_FAILURES}th, with its event`, async () => {
    c = await core();
    const tok = await c.token();
    await c.svc.join(node('held').request({ token: tok, clock: c.clock }), FAR);
    await openWindow(c);
    for (let i = 0; i < DEFAULT_MAX_FAILURES - 1; i++)
      expect(await refuseOnce(c, i)).toMatch(/^(wrong_cluster|bad_proof|name_taken)$/);
    expect(await c.registry.getInstallMode()).toMatchObject({ on: true, failures: DEFAULT_MAX_FAILURES - 1 });
    // Still open: an on-link node is admitted by it (an acceptance is not a failure).
    expect((await c.svc.join(node('ok-1').request(), ON_LINK)).status).toBe(201);
    const seq = await c.registry.lastEventSeq();

    expect(await refuseOnce(c, DEFAULT_MAX_FAILURES - 1)).not.toBe('ok');
    const im = await c.svc.operator.installModeStatus();
    expect(im).toMatchObject({
      on: false,
      failures: DEFAULT_MAX_FAILURES,
      offReason: `locked: ${DEFAULT_MAX_FAILURES} refused attempts`,
    });
    expect(im.description).toBe(`off (locked: ${DEFAULT_MAX_FAILURES} refused attempts)`);
    const events = await c.registry.listEvents(seq, 10);
    expect(events.map((e) => e.type)).toEqual(['refused', 'install-mode']);
    expect(events[1]!.detail).toEqual({
      on: false,
      reason: `locked: ${DEFAULT_MAX_FAILURES} refused attempts`,
      failures: DEFAULT_MAX_FAILURES,
    });
    expect(c.logs.text()).toMatch(/install mode switched itself off/);
    // Closed: the next on-link node waits for the operator; more refusals count for nothing.
    expect(await c.svc.join(node('late').request(), ON_LINK)).toMatchObject({ status: 202 });
    await refuseOnce(c, 100);
    expect((await c.registry.getInstallMode()).failures).toBe(DEFAULT_MAX_FAILURES);
    expect(await c.svc.mode()).toBe('token');
    // A new window starts from zero (and admits the on-link node that waited meanwhile).
    expect((await openWindow(c)).admitted).toEqual(['late']);
    expect(await c.registry.getInstallMode()).toMatchObject({ on: true, accepted: 1 });
    expect((await c.registry.getInstallMode()).failures ?? 0).toBe(0);
  });

  it('counts exactly under concurrency: of 12 refusals at once with --max-failures 5, the 5th closes it, once', async () => {
    c = await core({ maxFailures: 5 });
    await openWindow(c);
    const outs = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        code(c!.svc.join(node(`w${i}`).request({ cluster: 'core' }), ON_LINK)),
      ),
    );
    expect(outs.every((o) => o === 'wrong_cluster')).toBe(true);
    expect(await c.registry.getInstallMode()).toMatchObject({ on: false, failures: 5 });
    const offs = (await c.registry.listEvents(0, 100)).filter(
      (e) => e.type === 'install-mode' && !e.detail?.on,
    );
    expect(offs).toHaveLength(1);
  });

  it('off the link while open: counted once per pending record (asking again while it waits does not count)', async () => {
    c = await core({ maxFailures: 3 });
    await openWindow(c);
    const far = node('far-1');
    expect(await c.svc.join(far.request(), FAR)).toMatchObject({ status: 202 });
    expect(await c.svc.join(far.request(), FAR)).toMatchObject({ status: 202 });
    expect(await c.svc.join(far.request(), FAR)).toMatchObject({ status: 202 });
    expect((await c.registry.getInstallMode()).failures).toBe(1);
    const refused = (await c.registry.listEvents(0, 100)).filter((e) => e.type === 'refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({
      name: 'far-1',
      detail: { reason: 'off_link', code: 'pending', address: FAR, key: far.fp, channel: 'https' },
    });
    // Outside the window's role: out_of_scope, the second; the third closes it.
    await c.svc.operator.installModeOff();
    await c.svc.operator.installModeOn({ forMs: 60_000, max: null, remote: false, role: 'db' });
    expect(await c.svc.join(node('web-1').request({ role: 'web' }), ON_LINK)).toMatchObject({ status: 202 });
    expect(await c.svc.join(node('web-2').request({ role: 'web' }), ON_LINK)).toMatchObject({ status: 202 });
    expect((await c.registry.getInstallMode()).failures).toBe(2);
    expect(await c.svc.join(node('web-3').request({ role: 'web' }), ON_LINK)).toMatchObject({ status: 202 });
    expect(await c.registry.getInstallMode()).toMatchObject({
      on: false,
      offReason: 'locked: 3 refused attempts',
    });
  });

  it('what is not a judged refusal counts for nothing: malformed requests, waiting with install mode off', async () => {
    c = await core({ maxFailures: 2 });
    const n = node('m1');
    expect(await code(c.svc.join({ ...n.request(), csr: 'x'.repeat(200) }, ON_LINK))).toBe('invalid_csr');
    expect(await code(c.svc.join({ ...n.request(), name: 'm2' }, ON_LINK))).toBe('csr_mismatch');
    expect(await c.svc.join(node('far-0').request(), FAR)).toMatchObject({ status: 202 });
    await openWindow(c);
    expect(await code(c.svc.join({ ...n.request(), csr: 'x'.repeat(200) }, ON_LINK))).toBe('invalid_csr');
    expect(await code(c.svc.join({ ...n.request(), name: 'BAD' }, ON_LINK))).toBe('invalid_name');
    expect(await c.registry.getInstallMode()).toMatchObject({ on: true });
    expect((await c.registry.getInstallMode()).failures ?? 0).toBe(0);
    expect((await c.registry.listEvents(0, 100)).filter((e) => e.type === 'refused')).toEqual([]);
  });

  it('the advertisement follows: mode=open while the window is open, no longer once it locked', async () => {
    c = await core({ maxFailures: 2 });
    const txts: Record<string, string>[] = [];
    const publication = {
      updateTxt: (t: Record<string, string>) => void txts.push(t),
    } as unknown as Publication;
    const fake: Mdns = {
      ready: async () => undefined,
      publish: (spec) => {
        txts.push({ ...spec.txt });
        return publication;
      },
      browse: () => ({ stop: () => undefined, list: () => [] }),
      close: async () => undefined,
    };
    const d = await startRegistrarDiscovery({
      service: c.svc,
      log: c.logs.log,
      registrarId: 'r-test',
      cluster: 'edge',
      caFingerprint: 'A'.repeat(43),
      port: 8443,
      mdns: fake,
    });
    try {
      expect(txts.at(-1)!.mode).toBe('closed');
      await openWindow(c);
      await settle();
      expect(txts.at(-1)!.mode).toBe('open');
      await refuseOnce(c, 0);
      await settle();
      expect(txts.at(-1)!.mode).toBe('open');
      await refuseOnce(c, 3);
      await settle();
      expect(txts.at(-1)!.mode).toBe('closed');
      expect(txts.map((t) => t.mode)).toEqual(['closed', 'open', 'closed']);
    } finally {
      await d.close();
    }
  });
});

describe('a join token locks after N bad proofs', () => {
  it('locks at exactly the Nth proof that does not verify; the node hears bad_proof, the record says locked; unlock admits again', async () => {
    c = await core({ maxFailures: 3 });
    const tok = await c.token();
    const wrong = { id: tok.id, secret: 'not-the-secret' };
    expect(await code(c.svc.join(node('g1').request({ token: wrong, clock: c.clock }), FAR))).toBe(
      'bad_proof',
    );
    expect(await code(c.svc.join(node('g2').request({ token: wrong, clock: c.clock }), FAR))).toBe(
      'bad_proof',
    );
    // Not locked yet: the holder of the secret joins (a use does not reset the count).
    expect((await c.svc.join(node('real-1').request({ token: tok, clock: c.clock }), FAR)).status).toBe(201);
    expect(await c.registry.getToken(tok.id)).toMatchObject({ badProofs: 2, used: 1 });
    expect((await c.registry.getToken(tok.id))!.locked).toBeUndefined();
    // A late but genuine proof (right HMAC, stale time: a clock off on the node) is no guess.
    const late = node('late-1').request({ token: tok, clock: c.clock });
    c.clock.advance(301_000);
    expect(await code(c.svc.join(late, FAR))).toBe('bad_proof');
    expect((await c.registry.getToken(tok.id))!.badProofs).toBe(2);

    const seq = await c.registry.lastEventSeq();
    expect(await code(c.svc.join(node('g3').request({ token: wrong, clock: c.clock }), FAR))).toBe(
      'bad_proof',
    );
    const t = await c.registry.getToken(tok.id);
    expect(t).toMatchObject({ badProofs: 3, locked: true, lockedAt: new Date(c.clock.now()).toISOString() });
    const events = await c.registry.listEvents(seq, 10);
    expect(events.map((e) => e.type)).toEqual(['refused', 'token']);
    expect(events[1]!.detail).toEqual({ action: 'locked', id: tok.id, badProofs: 3 });
    expect((await c.svc.operator.listTokens()).find((v) => v.id === tok.id)).toMatchObject({
      state: 'locked',
    });
    expect(await c.svc.mode()).toBe('closed');

    // Locked: even the right proof is refused, with the same answer as any bad proof.
    const real = node('real-2');
    const err = await c.svc.join(real.request({ token: tok, clock: c.clock }), FAR).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'bad_proof', message: expect.not.stringMatching(/locked/) });
    const last = (await c.registry.listEvents(0, 100)).at(-1)!;
    expect(last).toMatchObject({
      type: 'refused',
      name: 'real-2',
      detail: { reason: 'locked', code: 'bad_proof', tokenId: tok.id },
    });
    expect(c.logs.text()).toMatch(/is locked \(too many bad proofs\)/);
    // More bad proofs count for nothing once locked.
    await code(c.svc.join(node('g4').request({ token: wrong, clock: c.clock }), FAR));
    expect((await c.registry.getToken(tok.id))!.badProofs).toBe(3);

    await c.svc.operator.unlockToken(tok.id, 'alice');
    expect(await c.registry.getToken(tok.id)).toMatchObject({ badProofs: 0 });
    expect((await c.registry.getToken(tok.id))!.locked).toBeUndefined();
    expect((await c.registry.listEvents(0, 100)).at(-1)).toMatchObject({
      type: 'token',
      detail: { action: 'unlocked', id: tok.id, by: 'alice', badProofs: 3 },
    });
    expect((await c.svc.join(real.request({ token: tok, clock: c.clock }), FAR)).status).toBe(201);
    expect(await code(c.svc.operator.unlockToken('nope', 'alice'))).toBe('token_not_found');
  });

  it('an unknown token id creates no record, however often it is tried', async () => {
    c = await core({ maxFailures: 2 });
    for (let i = 0; i < 5; i++) {
      const req = node(`u${i}`).request({ token: { id: 'deadbeef00', secret: 'x' }, clock: c.clock });
      expect(await code(c.svc.join(req, FAR))).toBe('bad_proof');
    }
    expect(await c.registry.listTokens()).toEqual([]);
    expect(await c.registry.getToken('deadbeef00')).toBeUndefined();
  });
});

describe('lockout across a restart (level store, reopened)', () => {
  it('the window keeps its count: 19 refusals, a restart, and the 20th closes it; a token its bad proofs', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-lockout-'));
    dirs.push(dir);
    const clock = new ManualClock(Date.UTC(2026, 10, 30, 3));
    const open = () => LevelRegistry.open(path.join(dir, 'registry'), { now: () => clock.now() });
    c = await core({ registry: await open(), clock });
    const tok = await c.token();
    await openWindow(c);
    const wrong = { id: tok.id, secret: 'nope' };
    for (let i = 0; i < DEFAULT_MAX_FAILURES - 2; i++)
      expect(await code(c.svc.join(node(`r${i}`).request({ cluster: 'core' }), ON_LINK))).toBe(
        'wrong_cluster',
      );
    expect(await code(c.svc.join(node('g0').request({ token: wrong, clock }), FAR))).toBe('bad_proof');
    expect(await c.registry.getInstallMode()).toMatchObject({ on: true, failures: DEFAULT_MAX_FAILURES - 1 });
    await c.close();

    c = await core({ registry: await open(), clock });
    expect(await c.registry.getInstallMode()).toMatchObject({ on: true, failures: DEFAULT_MAX_FAILURES - 1 });
    expect(await c.registry.getToken(tok.id)).toMatchObject({ badProofs: 1 });
    expect(await code(c.svc.join(node('last').request({ cluster: 'core' }), ON_LINK))).toBe('wrong_cluster');
    expect(await c.svc.operator.installModeStatus()).toMatchObject({
      on: false,
      offReason: `locked: ${DEFAULT_MAX_FAILURES} refused attempts`,
    });
    for (let i = 1; i < DEFAULT_MAX_FAILURES - 1; i++)
      await code(c.svc.join(node(`g${i}`).request({ token: wrong, clock }), FAR));
    expect(await c.registry.getToken(tok.id)).toMatchObject({ badProofs: DEFAULT_MAX_FAILURES - 1 });
    await c.close();

    c = await core({ registry: await open(), clock });
    expect((await c.registry.getInstallMode()).on).toBe(false);
    await code(c.svc.join(node('g-last').request({ token: wrong, clock }), FAR));
    expect(await c.registry.getToken(tok.id)).toMatchObject({
      badProofs: DEFAULT_MAX_FAILURES,
      locked: true,
    });
    await c.close();
    c = await core({ registry: await open(), clock });
    expect(await code(c.svc.join(node('real').request({ token: tok, clock }), FAR))).toBe('bad_proof');
    expect((await c.registry.listEvents(0, 1000)).at(-1)).toMatchObject({
      type: 'refused',
      detail: { reason: 'locked' },
    });
  });
});
