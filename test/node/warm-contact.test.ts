/**
 * The first contact made while discovery still listens (src/node/warm-contact.ts): opened for the first
 * registrar heard only, used only for the target the decision puts first under the same pin, closed
 * in every other case, its failure left to the join that uses it. Fake connections (no socket); the
 * real registrar's view (one first contact, none when the LAN is ambiguous) is in
 * early-discovery.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { WarmContact, type ContactTarget } from '../../src/node/warm-contact.js';

interface FakeClient {
  target: ContactTarget;
  closed: boolean;
  close(): void;
}

function fakeConnect(fail = false) {
  const opened: FakeClient[] = [];
  const connect = async (target: ContactTarget): Promise<FakeClient> => {
    if (fail) throw new Error(`connect ${target.url} failed`);
    const c: FakeClient = { target, closed: false, close: () => (c.closed = true) };
    opened.push(c);
    return c;
  };
  return { opened, connect };
}

const A = { url: 'https://198.18.0.10:8443', advertisedCa: 'caA' };
const B = { url: 'https://198.18.0.11:8443', advertisedCa: 'caB' };
const run = new AbortController().signal;
const tick = () => new Promise((r) => setImmediate(r));

describe('WarmContact', () => {
  it('contacts the first registrar heard only, and hands that contact to the join of that target', async () => {
    const f = fakeConnect();
    const w = new WarmContact(f.connect);
    w.heard(A, undefined, run);
    w.heard(B, undefined, run);
    await tick();
    expect(f.opened.map((c) => c.target)).toEqual([A]);
    w.keepFor(A, undefined);
    const c = await w.take(A, undefined);
    expect(c?.target).toEqual(A);
    expect(c?.closed).toBe(false);
    expect(w.take(A, undefined)).toBeUndefined(); // handed over once
  });

  it('closed when the decision puts another registrar first', async () => {
    const f = fakeConnect();
    const w = new WarmContact(f.connect);
    w.heard(A, undefined, run);
    w.keepFor(B, undefined);
    await tick();
    expect(f.opened[0]?.closed).toBe(true);
    expect(w.take(B, undefined)).toBeUndefined();
  });

  it('closed when the same address advertises another CA, or the pin changed (a choice at the terminal)', async () => {
    const f = fakeConnect();
    const w = new WarmContact(f.connect);
    w.heard(A, undefined, run);
    expect(w.take({ url: A.url, advertisedCa: 'other' }, undefined)).toBeUndefined();
    w.heard(A, undefined, run);
    expect(w.take(A, 'caA')).toBeUndefined();
    await tick();
    expect(f.opened.map((c) => c.closed)).toEqual([true, true]);
  });

  it('closed when discovery ends without a decision (drop), e.g. an ambiguous LAN', async () => {
    const f = fakeConnect();
    const w = new WarmContact(f.connect);
    w.heard(A, undefined, run);
    w.drop();
    await tick();
    expect(f.opened[0]?.closed).toBe(true);
    w.keepFor(A, undefined);
    expect(w.take(A, undefined)).toBeUndefined();
  });

  it('a failed contact fails the join that uses it, with its own error', async () => {
    const w = new WarmContact(fakeConnect(true).connect);
    w.heard(A, undefined, run);
    await expect(w.take(A, undefined)).rejects.toThrow(`connect ${A.url} failed`);
  });

  it('nothing is opened once the run is stopping', () => {
    const f = fakeConnect();
    const w = new WarmContact(f.connect);
    const stop = new AbortController();
    stop.abort();
    w.heard(A, undefined, stop.signal);
    expect(f.opened).toEqual([]);
    expect(w.take(A, undefined)).toBeUndefined();
  });
});
