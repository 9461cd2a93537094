// Names and durations (src/common/names.ts, DESIGN "Node names").
import { describe, expect, it } from 'vitest';
import { isMusterError, MusterError } from '../../src/common/errors.js';
import { assertLabel, formatDuration, isLabel, parseDuration, registrarDnsName } from '../../src/common/names.js';

describe('isLabel / assertLabel', () => {
  const valid = ['a', '0', 'a-b', 'node-01', 'a--b', '9lives', 'x'.repeat(63), `a${'-'.repeat(61)}b`];
  const invalid = ['', '-a', 'a-', '-', 'x'.repeat(64), 'Node', 'A', 'a.b', 'a_b', 'a b', ' a', 'a\n', 'ä', 'nöde', 'a\u200bb', 'a/b', 'a:b'];

  for (const s of valid) {
    it(`accepts ${JSON.stringify(s.length > 20 ? `${s.slice(0, 8)}…(${s.length})` : s)}`, () => {
      expect(isLabel(s)).toBe(true);
      expect(assertLabel('node name', s)).toBe(s);
    });
  }

  for (const s of invalid) {
    it(`refuses ${JSON.stringify(s.length > 20 ? `${s.slice(0, 8)}…(${s.length})` : s)}`, () => {
      expect(isLabel(s)).toBe(false);
      expect(() => assertLabel('node name', s)).toThrow(MusterError);
    });
  }

  it('assertLabel says what was wrong, with code invalid_name (400)', () => {
    try {
      assertLabel('role', 'Bad_Role');
      expect.unreachable();
    } catch (err) {
      expect(isMusterError(err, 'invalid_name')).toBe(true);
      const e = err as MusterError;
      expect(e.status).toBe(400);
      expect(e.message).toContain('role "Bad_Role"');
      expect(e.message).toMatch(/1 to 63/);
    }
  });

  it('assertLabel bounds how much of a long input it echoes', () => {
    try {
      assertLabel('node name', 'Z'.repeat(10_000));
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message.length).toBeLessThan(300);
    }
  });
});

describe('parseDuration', () => {
  const ok: [string | number, number][] = [
    ['90s', 90_000],
    ['15m', 900_000],
    ['1h30m', 5_400_000],
    ['7d', 604_800_000],
    ['2w', 1_209_600_000],
    ['250ms', 250],
    ['1m30s', 90_000],
    ['1s500ms', 1_500],
    ['30', 30_000],
    ['0', 0],
    ['0s', 0],
    ['1.5h', 5_400_000],
    [' 15m ', 900_000],
    [30, 30_000],
    [0, 0],
  ];
  for (const [input, ms] of ok) {
    it(`${JSON.stringify(input)} -> ${ms} ms`, () => {
      expect(parseDuration(input)).toBe(ms);
    });
  }

  // Whitespace inside a duration is not part of the documented syntax ("90s, 15m, 1h30m, 7d"):
  // only surrounding whitespace is trimmed.
  for (const bad of ['', ' ', '15x', 'm', 'ms', '1h 30m', '1 h', 'h1', '-5', '-5s', '15M', '1.h', 'abc', '15m!', '1e3']) {
    it(`refuses ${JSON.stringify(bad)} with MUSTER_ERR_USAGE`, () => {
      expect(() => parseDuration(bad)).toThrow(MusterError);
      try {
        parseDuration(bad);
      } catch (err) {
        expect(isMusterError(err, 'MUSTER_ERR_USAGE')).toBe(true);
        expect((err as Error).message).toContain(JSON.stringify(bad));
      }
    });
  }

  it('refuses negative and non-finite numbers', () => {
    expect(() => parseDuration(-1)).toThrow(MusterError);
    expect(() => parseDuration(Number.NaN)).toThrow(MusterError);
    expect(() => parseDuration(Number.POSITIVE_INFINITY)).toThrow(MusterError);
  });
});

describe('formatDuration', () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [-5, '0s'],
    [400, '0s'],
    [1_000, '1s'],
    [90_000, '1m30s'],
    [900_000, '15m'],
    [3_600_000, '1h'],
    [5_400_000, '1h30m'],
    [86_400_000, '1d'],
    [604_800_000, '7d'],
    [90_061_000, '1d1h1m1s'],
  ];
  for (const [ms, s] of cases) {
    it(`${ms} ms -> ${s}`, () => {
      expect(formatDuration(ms)).toBe(s);
    });
  }

  it('round-trips through parseDuration for whole seconds', () => {
    for (const ms of [1_000, 59_000, 61_000, 3_599_000, 3_601_000, 86_399_000, 1_000_000_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });
});

describe('registrarDnsName', () => {
  it('is a dotted name, so no node label can equal it', () => {
    expect(registrarDnsName('reg-1')).toBe('reg-1.registrar.muster');
    expect(isLabel(registrarDnsName('reg-1'))).toBe(false);
  });
});
