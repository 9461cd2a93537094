// Certificate lifetimes per registrar and per role, and the short-lived (24 h) mode (issue 9, item 1;
// DESIGN "Renewal"), on a ManualClock: a 24 h node renews at two thirds of its lifetime and stays live.
import { X509Certificate } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { roleLifetimes } from '../../src/common/config.js';
import { core, FAR, node, type Core } from './harness.js';

let c: Core;
afterEach(async () => c?.close());

const H = 3_600_000;

describe('--role-lifetime', () => {
  it('parses ROLE=DUR pairs and an object; refuses a bad role, a bad duration or a missing =', () => {
    expect(roleLifetimes('gpu=24h, worker=30d')).toEqual({ gpu: 24 * H, worker: 30 * 24 * H });
    expect(roleLifetimes({ gpu: '6h' })).toEqual({ gpu: 6 * H });
    expect(() => roleLifetimes('GPU=24h')).toThrow(/DNS label/);
    expect(() => roleLifetimes('gpu=soon')).toThrow(/role gpu: must be a duration/);
    expect(() => roleLifetimes('gpu=0s')).toThrow(/role gpu/);
    expect(() => roleLifetimes('gpu')).toThrow(/ROLE=DURATION/);
    expect(() => roleLifetimes(['gpu=1h'])).toThrow(/ROLE=DURATION/);
  });

  it('a role with its own lifetime gets it; other roles the registrar lifetime; a 24 h node renews through two days', async () => {
    c = await core({ certLifetimeMs: 30 * 24 * H, roleLifetimesMs: { gpu: 24 * H } });
    const tok = await c.token();
    const g = node('g1');
    const w = node('w1');
    await c.svc.join(g.request({ role: 'gpu', token: tok, clock: c.clock }), FAR);
    await c.svc.join(w.request({ token: tok, clock: c.clock }), FAR);
    const start = c.clock.now();
    const gpu = (await c.registry.getNode('g1'))!;
    expect(Date.parse(gpu.notAfter!) - start).toBe(24 * H);
    expect(Date.parse((await c.registry.getNode('w1'))!.notAfter!) - start).toBe(30 * 24 * H);
    const cert = new X509Certificate(gpu.certificate!);
    expect(Date.parse(cert.validTo) - start).toBe(24 * H);

    // Short-lived mode: renewing every 16 h (two thirds of 24 h) keeps the node live for two days.
    let serial = gpu.serial!;
    for (let i = 0; i < 3; i++) {
      c.clock.advance(16 * H);
      const b = await c.svc.renew('g1', g.signed('renew', serial, c.clock));
      const rec = (await c.registry.getNode('g1'))!;
      expect(rec.serial).not.toBe(serial);
      expect(Date.parse(rec.notAfter!)).toBe(c.clock.now() + 24 * H);
      expect(b.certificate).toBe(rec.certificate);
      serial = rec.serial!;
    }
  });
});
