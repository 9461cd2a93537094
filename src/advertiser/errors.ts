/**
 * Errors of the advertiser. Their codes live in the one error registry (src/common/errors.ts,
 * CONVENTIONS 3) and are documented in docs/errors.md; MdnsError narrows MusterError to them so that
 * callers can tell an mDNS failure apart without string matching.
 */
import { MusterError, type ErrorCode } from '../common/errors.js';

export type MdnsErrorCode = Extract<
  ErrorCode,
  | 'MUSTER_ERR_MDNS_NAME_CONFLICT'
  | 'MUSTER_ERR_MDNS_SOCKET'
  | 'MUSTER_ERR_MDNS_CLOSED'
  | 'MUSTER_ERR_MDNS_HANDLER'
>;

export class MdnsError extends MusterError {
  declare readonly code: MdnsErrorCode;

  constructor(code: MdnsErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'MdnsError';
  }
}
