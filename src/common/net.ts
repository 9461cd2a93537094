/** Address helpers shared by the HTTPS endpoint and the registrar's locality test. */
import { isIP } from 'node:net';

/** `::ffff:198.18.0.5` (an IPv4 peer on a dual-stack socket) is `198.18.0.5`. */
export function normaliseAddress(addr: string): string {
  return addr.startsWith('::ffff:') && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr;
}

/**
 * The unit one client is counted by (rate limits, per-source caps): an IPv4 address, or the /64 an
 * IPv6 address is in (one host usually owns a whole /64: counting /128s lets it take 2^64 turns).
 */
export function sourceKey(address: string): string {
  const a = normaliseAddress(address);
  if (isIP(a) !== 6) return a;
  const [head = ''] = a.split('%');
  // Expand '::' to get the first four groups.
  const [left = '', right] = head.split('::');
  const l = left ? left.split(':') : [];
  const r = right !== undefined && right !== '' ? right.split(':') : [];
  const groups =
    right === undefined ? l : [...l, ...Array<string>(Math.max(0, 8 - l.length - r.length)).fill('0'), ...r];
  return (
    groups
      .slice(0, 4)
      .map((g) => (parseInt(g, 16) || 0).toString(16))
      .join(':') + '::/64'
  );
}
