/**
 * What the CLI prints: one documented `--json` shape per kind (docs/cli-json.md) and plain-text tables.
 * Lists are `{"items": [...], "next": "..."}` (next only when there is more), single things are the
 * object itself, every time is ISO 8601. The admin API's wire format stays as it is; the CLI reshapes.
 */
import type { WireInstallMode, WireToken } from '../admin/client.js';

export const out = (s: string): void => void process.stdout.write(s);

export function printJson(v: unknown): void {
  out(JSON.stringify(v, null, 2) + '\n');
}

/** A list page: `next` is the value for `--after` that continues it. */
export function printList(items: unknown[], next?: string | number): void {
  printJson({ items, ...(next !== undefined ? { next: String(next) } : {}) });
}

export const iso = (ms: number | undefined | null): string | undefined | null =>
  ms === undefined ? undefined : ms === null ? null : new Date(ms).toISOString();

export interface InstallModeJson extends Omit<WireInstallMode, 'since' | 'until'> {
  since?: string;
  until?: string;
}

export function installModeJson(s: WireInstallMode): InstallModeJson {
  const { since, until, ...rest } = s;
  return {
    ...rest,
    ...(since !== undefined ? { since: iso(since)! } : {}),
    ...(until !== undefined ? { until: iso(until)! } : {}),
  };
}

export interface TokenJson extends Omit<WireToken, 'expiresAt'> {
  /** null: never expires. */
  expiresAt: string | null;
}

export function tokenJson<T extends WireToken>(t: T): Omit<T, 'expiresAt'> & { expiresAt: string | null } {
  return { ...t, expiresAt: iso(t.expiresAt) ?? null };
}

/** Plain-text tables for terminals. */
export function table(headers: string[], rows: (string | number | undefined)[][]): string {
  const cells = rows.map((r) => r.map((c) => (c === undefined || c === '' ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(headers), ...cells.map(line)].join('\n') + '\n';
}

export function ago(isoTime: string | undefined, now = Date.now()): string {
  if (!isoTime) return '-';
  const s = Math.round((now - Date.parse(isoTime)) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
