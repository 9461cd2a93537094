// RFC 6762 §5.2 continuous querying: the back-off schedule on a ManualClock, no sleeps.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { REQUERY_DEFAULT_MAX_MS, RequerySchedule } from '../../src/advertiser/requery.js';

function run(opts: { random?: number; max?: number; forMs: number; atOnce?: boolean }): number[] {
  const clock = new ManualClock();
  const t0 = clock.now();
  const at: number[] = [];
  const s = new RequerySchedule(
    { clock, random: () => opts.random ?? 0 },
    () => at.push(clock.now() - t0),
    opts.max,
  );
  s.start(opts.atOnce);
  clock.advance(opts.forMs);
  s.stop();
  return at;
}

const gaps = (at: number[]): number[] => at.slice(1).map((t, i) => t - at[i]!);

describe('RequerySchedule (RFC 6762 §5.2)', () => {
  it('queries first after 20-120 ms, then 1 s, 2 s, 4 s ... after the one before', () => {
    expect(run({ random: 0, forMs: 20 })).toEqual([20]);
    expect(run({ random: 0.5, forMs: 70 + 15_000 })).toEqual([70, 1070, 3070, 7070, 15_070]);
    expect(run({ random: 0.999, forMs: 1000 })[0]).toBeCloseTo(119.9);
  });

  it('atOnce: the first query now (a caller waiting on the answer), the series 1 s, 2 s, 4 s ... after it', () => {
    expect(run({ atOnce: true, random: 0.999, forMs: 0 })).toEqual([0]);
    expect(run({ atOnce: true, random: 0.5, forMs: 15_000 })).toEqual([0, 1000, 3000, 7000, 15_000]);
  });

  it('caps the interval', () => {
    expect(gaps(run({ max: 8000, forMs: 60_000 }))).toEqual([
      1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000, 8000,
    ]);
  });

  it('caps at one minute by default', () => {
    expect(REQUERY_DEFAULT_MAX_MS).toBe(60_000);
    const g = gaps(run({ forMs: 10 * 60_000 }));
    expect(g.slice(0, 7)).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000]);
    expect(new Set(g.slice(6))).toEqual(new Set([60_000]));
  });

  it('never queries more often than once a second, whatever the cap', () => {
    expect(gaps(run({ max: 100, forMs: 5020 }))).toEqual([1000, 1000, 1000, 1000, 1000]);
  });

  it('stop() cancels the next query, and start() after stop() does nothing', () => {
    const clock = new ManualClock();
    let n = 0;
    const s = new RequerySchedule({ clock, random: () => 0 }, () => n++);
    s.start();
    clock.advance(1020);
    expect(n).toBe(2);
    s.stop();
    s.start();
    clock.advance(3_600_000);
    expect(n).toBe(2);
  });

  it('restart() starts the schedule over (the link came up: what was asked before went nowhere)', () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const at: number[] = [];
    const s = new RequerySchedule({ clock, random: () => 0 }, () => at.push(clock.now() - t0));
    s.start();
    clock.advance(40_000); // 20, 1020, 3020, 7020, 15020, 31020; the next would be at 63020
    s.restart();
    clock.advance(3100);
    expect(at).toEqual([20, 1020, 3020, 7020, 15_020, 31_020, 40_020, 41_020, 43_020]);
    s.stop();
    s.restart();
    clock.advance(60_000);
    expect(at).toHaveLength(9);
  });
});
