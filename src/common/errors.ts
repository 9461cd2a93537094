/**
 * The one error registry (CONVENTIONS 3). Every error muster reports to a client or an operator has a
 * stable code, an HTTP status (for the API) and a message for a person. docs/errors.md documents each
 * code; test/errors.test.ts ties the two together.
 *
 * API codes are short snake_case (they are part of the wire format, DESIGN "HTTPS API"); errors that
 * only a local command reports use MUSTER_ERR_*.
 */
export const ErrorCodes = {
  // HTTPS and admin API
  bad_request: { status: 400, summary: 'The request does not match the schema.' },
  invalid_name: { status: 400, summary: 'A node, role or cluster name is not a DNS label.' },
  invalid_csr: { status: 400, summary: 'The CSR cannot be parsed, its signature is wrong, or its key is not allowed.' },
  csr_mismatch: { status: 400, summary: 'The CSR names another node, or its key differs from the advertised one.' },
  bad_proof: { status: 401, summary: 'The join token proof is not valid (unknown, revoked, expired, used up, or stale).' },
  bad_signature: { status: 401, summary: 'A node-signed request (ack, leave) does not verify with the node key.' },
  closed: { status: 403, summary: 'The registrar accepts no new join requests now.' },
  wrong_cluster: { status: 403, summary: 'The node asked for a cluster this registrar does not serve.' },
  token_scope: { status: 403, summary: 'The join token does not allow this role or cluster.' },
  banned: { status: 403, summary: 'The operator banned this node name or key.' },
  policy_denied: { status: 403, summary: "The registrar's policy hook (--policy-exec) refused this node." },
  forbidden_role: { status: 403, summary: 'Role cluster (a tier registrar) cannot join a tier registrar, only the main.' },
  tier_removed: { status: 403, summary: 'This tier registrar was removed from its parent; it issues no more certificates.' },
  session_required: { status: 401, summary: 'The admin web page needs a session: log in through a fresh `muster admin url` link.' },
  csrf_refused: { status: 403, summary: "A change on the admin web page came without the session's CSRF token or from another site; nothing was changed." },
  not_found: { status: 404, summary: 'No such node (or not with this key).' },
  token_not_found: { status: 404, summary: 'No such join token.' },
  web_page_off: { status: 404, summary: 'The admin web page is off: the registrar runs without --admin-listen.' },
  host_refused: { status: 421, summary: "The admin web page answers only under its own address (Host 127.0.0.1:PORT), never under another name (DNS rebinding)." },
  name_taken: { status: 409, summary: 'The name is held by another key.' },
  invalid_state: { status: 409, summary: 'The node is not in a state that allows this operation.' },
  group_conflict: { status: 409, summary: 'The node is in another group; moving it takes --force.' },
  rejected: { status: 410, summary: 'The operator rejected this node.' },
  removed: { status: 410, summary: 'The operator removed this node; its certificate is revoked.' },
  payload_too_large: { status: 413, summary: 'The request body is larger than the registrar accepts.' },
  unsupported_media_type: { status: 415, summary: 'The request body is not JSON (Content-Type must be application/json).' },
  rate_limited: { status: 429, summary: 'Too many requests from this client; retry after the given delay.' },
  busy: { status: 503, summary: 'The registrar is shedding load; retry after the given delay.' },
  store_unavailable: { status: 503, summary: 'The shared registry (etcd) cannot be reached; retry after the given delay.' },
  internal: { status: 500, summary: 'An unexpected error in the registrar; details are in its log.' },

  // Local errors (CLI, node agent)
  MUSTER_ERR_USAGE: { status: 0, summary: 'A command-line argument or setting is invalid.' },
  MUSTER_ERR_CONFIG: { status: 0, summary: 'A configuration value is invalid (names the key and its source).' },
  MUSTER_ERR_STATE_DIR: { status: 0, summary: 'The state directory cannot be created, read or written.' },
  MUSTER_ERR_UNREACHABLE: { status: 0, summary: 'The registrar cannot be reached.' },
  MUSTER_ERR_TLS: { status: 0, summary: "The registrar's TLS certificate does not chain to the expected CA." },
  MUSTER_ERR_CA_PIN: { status: 0, summary: "The registrar's CA does not match the pinned fingerprint or the local CA." },
  MUSTER_ERR_AMBIGUOUS: { status: 0, summary: 'Several registrars with different CAs or clusters answer on the LAN and nothing pins one.' },
  MUSTER_ERR_NOT_CHOSEN: { status: 0, summary: 'Several registrars answer on the LAN and none was chosen at the prompt of `muster join`.' },
  MUSTER_ERR_NO_REGISTRAR: { status: 0, summary: 'No registrar was found by mDNS and no --registrar URL is set.' },
  MUSTER_ERR_MDNS: { status: 0, summary: 'mDNS cannot be used (socket error or name conflict).' },
  // Advertiser (src/advertiser): reported through Mdns onError, or thrown by publish()
  MUSTER_ERR_MDNS_NAME_CONFLICT: { status: 0, summary: 'Another responder on the link owns this service instance name or host name (RFC 6762 §9).' },
  MUSTER_ERR_MDNS_SOCKET: { status: 0, summary: 'The mDNS socket failed: UDP 5353 cannot be bound, or a packet cannot be sent.' },
  MUSTER_ERR_MDNS_CLOSED: { status: 0, summary: 'The mDNS advertiser or this advertisement was closed or stopped.' },
  MUSTER_ERR_MDNS_HANDLER: { status: 0, summary: 'A browse handler threw; the browser goes on.' },
  MUSTER_ERR_TXT_ENCODE: { status: 0, summary: 'A TXT record cannot be encoded (bad key, duplicate key, or too long; RFC 6763 §6).' },
  MUSTER_ERR_BUNDLE: { status: 0, summary: 'The credentials bundle failed validation; nothing was written.' },
  MUSTER_ERR_HOOK: { status: 0, summary: 'The --on-registered command failed.' },
  MUSTER_ERR_ADMIN_SOCKET: { status: 0, summary: "The registrar's admin socket cannot be reached." },
  MUSTER_ERR_ADMIN_REPLY: { status: 0, summary: "The registrar's admin API answered with an error code this muster does not know, or with malformed JSON." },
  MUSTER_ERR_TIMEOUT: { status: 0, summary: 'The node gave up waiting (its --timeout passed).' },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class MusterError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra fields sent to the client with the error (never secrets). */
  readonly details: Record<string, unknown> | undefined;
  /** Seconds a client should wait before retrying (Retry-After), for 429/503. */
  readonly retryAfter: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { details?: Record<string, unknown>; retryAfter?: number; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'MusterError';
    this.code = code;
    this.status = ErrorCodes[code].status;
    this.details = opts.details;
    this.retryAfter = opts.retryAfter;
  }

  toJSON(): Record<string, unknown> {
    return { error: this.code, message: this.message, ...(this.details ?? {}) };
  }
}

export function isMusterError(err: unknown, code?: ErrorCode): err is MusterError {
  return err instanceof MusterError && (code === undefined || err.code === code);
}
