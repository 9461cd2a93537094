/**
 * The admission queue in front of POST /v1/join (src/fallback/join-gate.ts): a herd waits in FIFO
 * order instead of being refused; the queue is bounded in length and in waiting time, and a refusal's
 * Retry-After follows the drain rate, spread so that the refused nodes do not come back together.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { GateFull, JoinGate } from '../../src/fallback/join-gate.js';

/** A join that runs until `finish()` is called; `started` says whether the gate let it run. */
function job(): { started: boolean; finish: () => void; fn: () => Promise<string> } {
  let finish!: () => void;
  const j = {
    started: false,
    finish: () => finish(),
    fn: () => {
      j.started = true;
      return new Promise<string>((r) => (finish = () => r('done')));
    },
  };
  return j;
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('JoinGate', () => {
  it('runs `slots` joins at once and starts the waiting ones in arrival order as slots free', async () => {
    const clock = new ManualClock();
    const gate = new JoinGate({ slots: 2, maxQueued: 10, maxWaitMs: 10_000, clock });
    const jobs = Array.from({ length: 5 }, job);
    const results = jobs.map((j) => gate.run(j.fn));
    await flush();
    expect(jobs.map((j) => j.started)).toEqual([true, true, false, false, false]);
    expect(gate.stats).toMatchObject({ running: 2, queued: 3 });
    jobs[1]!.finish();
    await flush();
    expect(jobs.map((j) => j.started)).toEqual([true, true, true, false, false]);
    jobs[0]!.finish();
    jobs[2]!.finish();
    await flush();
    expect(jobs.map((j) => j.started)).toEqual([true, true, true, true, true]);
    jobs[3]!.finish();
    jobs[4]!.finish();
    expect(await Promise.all(results)).toEqual(['done', 'done', 'done', 'done', 'done']);
    expect(gate.stats).toMatchObject({ running: 0, queued: 0 });
  });

  it('refuses beyond the queue without running the join, with Retry-After spread at the drain rate', async () => {
    const clock = new ManualClock();
    const gate = new JoinGate({ slots: 1, maxQueued: 2, maxWaitMs: 60_000, clock, initialRate: 2 });
    const jobs = Array.from({ length: 3 }, job);
    const admitted = jobs.map((j) => gate.run(j.fn));
    await flush();
    // One running, two waiting: the queue is full. At 2 joins/s the queue drains in 1 s; refused
    // joins are given the next free instants after it, half a second apart.
    const refused: GateFull[] = [];
    for (let i = 0; i < 4; i++) {
      const extra = job();
      const err = await gate.run(extra.fn).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GateFull);
      expect(extra.started).toBe(false);
      refused.push(err as GateFull);
    }
    expect(refused.map((e) => e.why)).toEqual(['queue full', 'queue full', 'queue full', 'queue full']);
    expect(refused.map((e) => e.retryAfterS)).toEqual([2, 2, 3, 3]);
    for (const j of jobs) {
      await flush();
      j.finish();
    }
    await Promise.all(admitted);
  });

  it('measures the drain rate from finished joins and refuses a wait it could not serve in time', async () => {
    const clock = new ManualClock();
    const gate = new JoinGate({ slots: 1, maxQueued: 100, maxWaitMs: 2000, clock, initialRate: 1000 });
    // 10 joins, one every 500 ms: 2 joins/s.
    for (let i = 0; i < 10; i++) {
      const j = job();
      const p = gate.run(j.fn);
      clock.advance(500);
      j.finish();
      await p;
    }
    expect(gate.rate()).toBeCloseTo(2, 5);
    const running = job();
    const first = gate.run(running.fn);
    const waiting = Array.from({ length: 4 }, job);
    const queued = waiting.map((j) => gate.run(j.fn).catch((e: unknown) => e));
    await flush();
    // At 2/s the 4th waiting join is 2 s away: still admitted; the 5th (2.5 s) is refused at once.
    expect(gate.stats.queued).toBe(4);
    const late = job();
    await expect(gate.run(late.fn)).rejects.toMatchObject({ why: 'queue full' });
    running.finish();
    await first;
    for (const j of waiting) {
      await flush();
      j.finish();
    }
    expect(await Promise.all(queued)).toEqual(['done', 'done', 'done', 'done']);
    expect(late.started).toBe(false);
  });

  it('answers a join that waited maxWaitMs with a refusal and never runs it', async () => {
    const clock = new ManualClock();
    const gate = new JoinGate({ slots: 1, maxQueued: 10, maxWaitMs: 10_000, clock });
    const a = job();
    const b = job();
    const pa = gate.run(a.fn);
    const pb = gate.run(b.fn).catch((e: unknown) => e);
    await flush();
    clock.advance(10_000);
    const err = await pb;
    expect(err).toMatchObject({ why: 'waited too long' });
    expect((err as GateFull).retryAfterS).toBeGreaterThanOrEqual(1);
    a.finish();
    await pa;
    expect(b.started).toBe(false);
    expect(gate.stats).toMatchObject({ running: 0, queued: 0 });
  });

  it('drops a waiting join whose client went away: it never runs and the next one gets the slot', async () => {
    const clock = new ManualClock();
    const gate = new JoinGate({ slots: 1, maxQueued: 10, maxWaitMs: 10_000, clock });
    const [a, b, c] = [job(), job(), job()];
    const gone = new AbortController();
    const pa = gate.run(a.fn);
    const pb = gate.run(b.fn, gone.signal).catch((e: unknown) => e);
    const pc = gate.run(c.fn);
    await flush();
    gone.abort();
    expect(await pb).toMatchObject({ why: 'client gone' });
    a.finish();
    await flush();
    expect(b.started).toBe(false);
    expect(c.started).toBe(true);
    c.finish();
    await Promise.all([pa, pc]);
  });

  it('with no slots refuses every join with the fixed hint', async () => {
    const gate = new JoinGate({ slots: 0, maxQueued: 10, maxWaitMs: 10_000, clock: new ManualClock() });
    const a = job();
    await expect(gate.run(a.fn)).rejects.toMatchObject({ retryAfterS: 2, why: 'no slots' });
    expect(a.started).toBe(false);
  });
});
