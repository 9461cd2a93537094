/**
 * Errors of the advertiser, with stable codes (CONVENTIONS 3). To be folded into the common error
 * registry (src/common) once it exists; the codes are part of that contract.
 */
export type MdnsErrorCode =
  /** Another responder on the link owns our service instance name or host name (RFC 6762 §8.1, §9). */
  | 'MUSTER_ERR_MDNS_NAME_CONFLICT'
  /** The mDNS socket failed: EADDRINUSE / EACCES on UDP 5353, or a send failed. */
  | 'MUSTER_ERR_MDNS_SOCKET'
  /** The Mdns instance was closed. */
  | 'MUSTER_ERR_MDNS_CLOSED'
  /** A caller's handler threw. */
  | 'MUSTER_ERR_MDNS_HANDLER';

export class MdnsError extends Error {
  constructor(
    readonly code: MdnsErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'MdnsError';
  }
}
