/** Address helpers shared by the HTTPS endpoint and the registrar's locality test. */
import { isIP } from 'node:net';

/** `::ffff:198.18.0.5` (an IPv4 peer on a dual-stack socket) is `198.18.0.5`. */
export function normaliseAddress(addr: string): string {
  return addr.startsWith('::ffff:') && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr;
}
