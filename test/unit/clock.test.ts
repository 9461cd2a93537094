// ManualClock (src/common/clock.ts): the fake clock policy tests run on (CONVENTIONS 2).
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';

describe('ManualClock', () => {
  it('starts at the given time (default 2026-01-01) and moves only on advance', () => {
    expect(new ManualClock().now()).toBe(Date.UTC(2026, 0, 1));
    const c = new ManualClock(1000);
    expect(c.now()).toBe(1000);
    c.advance(250);
    expect(c.now()).toBe(1250);
    c.advance(0);
    expect(c.now()).toBe(1250);
  });

  it('fires due timers in deadline order, each seeing its own time', () => {
    const c = new ManualClock(0);
    const fired: [string, number][] = [];
    c.setTimeout(() => fired.push(['c', c.now()]), 300);
    c.setTimeout(() => fired.push(['a', c.now()]), 100);
    c.setTimeout(() => fired.push(['b', c.now()]), 200);
    c.setTimeout(() => fired.push(['late', c.now()]), 1000);
    c.advance(500);
    expect(fired).toEqual([
      ['a', 100],
      ['b', 200],
      ['c', 300],
    ]);
    expect(c.now()).toBe(500);
    c.advance(499);
    expect(fired).toHaveLength(3);
    c.advance(1);
    expect(fired.at(-1)).toEqual(['late', 1000]);
  });

  it('fires timers with the same deadline in the order they were set', () => {
    const c = new ManualClock(0);
    const fired: number[] = [];
    for (let i = 0; i < 5; i++) c.setTimeout(() => fired.push(i), 50);
    c.advance(50);
    expect(fired).toEqual([0, 1, 2, 3, 4]);
  });

  it('fires each timer once', () => {
    const c = new ManualClock(0);
    let n = 0;
    c.setTimeout(() => n++, 10);
    c.advance(100);
    c.advance(100);
    expect(n).toBe(1);
  });

  it('treats a negative delay as zero', () => {
    const c = new ManualClock(0);
    let at = -1;
    c.setTimeout(() => (at = c.now()), -50);
    c.advance(0);
    expect(at).toBe(0);
  });

  it('clearTimeout cancels a timer, and is harmless twice or after it fired', () => {
    const c = new ManualClock(0);
    const fired: string[] = [];
    const a = c.setTimeout(() => fired.push('a'), 100);
    const b = c.setTimeout(() => fired.push('b'), 100);
    c.clearTimeout(a);
    c.clearTimeout(a);
    c.advance(200);
    expect(fired).toEqual(['b']);
    c.clearTimeout(b);
    c.advance(200);
    expect(fired).toEqual(['b']);
  });

  it('a timer cleared by an earlier timer in the same advance does not fire', () => {
    const c = new ManualClock(0);
    const fired: string[] = [];
    const late = c.setTimeout(() => fired.push('late'), 200);
    c.setTimeout(() => {
      fired.push('early');
      c.clearTimeout(late);
    }, 100);
    c.advance(1000);
    expect(fired).toEqual(['early']);
  });

  it('a timer set from inside a firing timer fires within the same advance when due', () => {
    const c = new ManualClock(0);
    const fired: [string, number][] = [];
    c.setTimeout(() => {
      fired.push(['outer', c.now()]);
      c.setTimeout(() => fired.push(['inner', c.now()]), 50);
      c.setTimeout(() => fired.push(['too-late', c.now()]), 500);
    }, 100);
    c.setTimeout(() => fired.push(['other', c.now()]), 175);
    c.advance(300);
    expect(fired).toEqual([
      ['outer', 100],
      ['inner', 150],
      ['other', 175],
    ]);
    expect(c.now()).toBe(300);
    c.advance(300);
    expect(fired.at(-1)).toEqual(['too-late', 600]);
  });

  it('a re-arming timer (an interval) fires once per period', () => {
    const c = new ManualClock(0);
    const at: number[] = [];
    const tick = (): void => {
      at.push(c.now());
      c.setTimeout(tick, 100);
    };
    c.setTimeout(tick, 100);
    c.advance(450);
    expect(at).toEqual([100, 200, 300, 400]);
  });
});
