/**
 * Names and durations (DESIGN "Node names"). Node names, roles and clusters are DNS labels:
 * [a-z0-9-], 1-63 characters, no leading or trailing '-'.
 */
import os from 'node:os';
import { MusterError } from './errors.js';

export const LABEL_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
const LABEL = new RegExp(LABEL_PATTERN);

export function isLabel(s: string): boolean {
  return LABEL.test(s);
}

export function assertLabel(what: string, s: string): string {
  if (!isLabel(s)) {
    throw new MusterError(
      'invalid_name',
      `${what} ${JSON.stringify(s.slice(0, 80))} is not a DNS label: use a-z, 0-9 and '-', 1 to 63 characters, no '-' at either end`,
    );
  }
  return s;
}

/** The default node name: the short host name, lower-cased (DESIGN "Node names"). */
export function defaultNodeName(): string {
  return os.hostname().split('.')[0]!.toLowerCase();
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Parses "90s", "15m", "1h30m", "7d" (or a bare number of seconds) into milliseconds. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new MusterError('MUSTER_ERR_USAGE', `invalid duration ${input}`);
    return input * 1000;
  }
  const s = input.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (pos !== s.length || s.length === 0) {
    throw new MusterError(
      'MUSTER_ERR_USAGE',
      `invalid duration ${JSON.stringify(input)}: use a number with a unit, e.g. 90s, 15m, 1h30m, 7d`,
    );
  }
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [u, n] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= n) {
      parts.push(`${Math.floor(rest / n)}${u}`);
      rest %= n;
    }
  }
  return parts.join('') || '0s';
}

/** The DNS name in the registrar's server certificate that nodes check (not the address). */
export function registrarDnsName(registrarId: string): string {
  // Node names are single DNS labels, so no node certificate can carry this dotted name.
  return `${registrarId}.registrar.muster`;
}
