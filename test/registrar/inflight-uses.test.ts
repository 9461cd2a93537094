// A token's last uses while acceptances are in flight (DESIGN "Join tokens", "Exactly once";
// src/registrar/admission/reservations.ts): a decision counts the uses held by acceptances still being
// signed or committed, and the store's count. Between the moment an acceptance's change is in the
// store and the moment its hold is given back, both count that one use: a token sized exactly for
// its herd looked used up to the last nodes, which got a final 401 bad_proof (seen in
// test/faults/etcd-registrars "SIGKILLed mid-herd", where a read rides along the commit that uses the
// token). These tests hold an acceptance in exactly that window, on the in-memory registry.
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryRegistry } from '../../src/store/memory.js';
import type { Change, MusterEvent } from '../../src/store/registry.js';
import { core, FAR, ON_LINK, code, node, settle, type Core } from './harness.js';

/**
 * A registry whose apply() of a change that uses a token (or an install-mode slot) lands at once but
 * resolves only when the test opens the gate: the change is visible to every read, and the
 * acceptance that made it still holds its use.
 */
class LandedNotAnswered extends MemoryRegistry {
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  /** Changes that landed and wait behind the gate. */
  waiting = 0;
  holdAnswers(): void {
    this.gate = new Promise((r) => (this.open = r));
  }
  answer(): void {
    this.open?.();
    this.gate = undefined;
  }
  override async apply(change: Change): Promise<MusterEvent[]> {
    const events = await super.apply(change);
    if (this.gate && (change.useToken !== undefined || change.useInstallMode)) {
      this.waiting++;
      await this.gate;
      this.waiting--;
    }
    return events;
  }
}

/** Lets the event loop run until `cond` holds (certificates are signed off the loop). */
async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error('the condition never held');
}

let c: Core;
afterEach(async () => c?.close());

describe('a use that landed but whose acceptance has not finished is counted once', () => {
  it('a token sized exactly for its nodes admits the last one while the one before is still finishing', async () => {
    const registry = new LandedNotAnswered();
    c = await core({ registry });
    const tok = await c.token({ uses: 2 });
    registry.holdAnswers();
    const first = c.svc.join(node('a').request({ token: tok, clock: c.clock }), FAR);
    await until(() => registry.waiting === 1);
    expect((await registry.getToken(tok.id))!.used).toBe(1);

    // The second node asks now: one use of two is spent, the first node's hold is not given back yet.
    let second: string | undefined;
    const b = node('b');
    const p = code(c.svc.join(b.request({ token: tok, clock: c.clock }), FAR)).then((s) => (second = s));
    await settle();
    // No answer while the use in flight is undecided (it may still be given back): never a refusal.
    expect(second).toBeUndefined();
    expect((await c.registry.listEvents(0, 100)).filter((e) => e.type === 'refused')).toEqual([]);

    registry.answer();
    expect((await first).status).toBe(201);
    await p;
    expect(second).toBe('ok');
    expect((await c.registry.getNode('b'))?.state).toBe('issued');
    expect((await c.registry.getToken(tok.id))!.used).toBe(2);
    expect((await c.registry.listEvents(0, 100)).filter((e) => e.type === 'refused')).toEqual([]);
  });

  it('when that use was the last, the next node is refused once it has landed (bad_proof, nothing written)', async () => {
    const registry = new LandedNotAnswered();
    c = await core({ registry });
    const tok = await c.token({ uses: 1 });
    registry.holdAnswers();
    const first = c.svc.join(node('a').request({ token: tok, clock: c.clock }), FAR);
    await until(() => registry.waiting === 1);
    const p = code(c.svc.join(node('b').request({ token: tok, clock: c.clock }), FAR));
    await settle();
    registry.answer();
    expect((await first).status).toBe(201);
    expect(await p).toBe('bad_proof');
    expect(await c.registry.getNode('b')).toBeUndefined();
    expect((await c.registry.getToken(tok.id))!.used).toBe(1);
    expect((await c.registry.listSerials()).map((s) => s.name)).toEqual(['a']);
  });

  it('install mode limited to N nodes admits the N-th on the link while the one before is still finishing', async () => {
    const registry = new LandedNotAnswered();
    c = await core({ registry });
    await c.svc.operator.installModeOn({ forMs: 15 * 60_000, max: 2, remote: false });
    registry.holdAnswers();
    const first = c.svc.join(node('a').request(), ON_LINK);
    await until(() => registry.waiting === 1);
    expect((await registry.getInstallMode()).accepted).toBe(1);
    // Before the fix it went pending (the window looked full): waiting for the operator, for good.
    let second: number | string | undefined;
    const p = c.svc.join(node('b').request(), ON_LINK).then(
      (o) => (second = o.status),
      (err: unknown) => (second = String(err)),
    );
    await settle();
    expect(second).toBeUndefined();
    registry.answer();
    expect((await first).status).toBe(201);
    await p;
    expect(second).toBe(201);
    // Admitted by install mode, not left waiting for the operator.
    expect(await c.registry.getNode('b')).toMatchObject({
      state: 'issued',
      decision: { rule: 'install-mode' },
    });
    expect((await c.registry.getInstallMode()).accepted).toBe(2);
  });
});
