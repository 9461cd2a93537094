/**
 * Exit codes (DESIGN "CLI"; docs/errors.md): every command exits 0 on success, 1 on a failure with a
 * one-line reason, 2 on a usage error. `muster join` documents more, for unit files
 * (RestartPreventExitStatus=3 4 5 in muster-join.service): JOIN_EXIT.
 */
import { isMusterError } from '../common/errors.js';

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** Exit codes of `muster join` (README "Exit codes", docs/errors.md). */
export const JOIN_EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  refused: 3,
  nameTaken: 4,
  mismatch: 5,
  hook: 6,
  timeout: 7,
} as const;

/** The exit code of `muster join` for an error of the node agent. */
export function exitCodeFor(err: unknown): number {
  if (!isMusterError(err)) return JOIN_EXIT.failure;
  switch (err.code) {
    case 'MUSTER_ERR_USAGE':
    case 'MUSTER_ERR_CONFIG':
      return JOIN_EXIT.usage;
    case 'rejected':
    case 'removed':
    case 'bad_proof':
    case 'token_scope':
    case 'wrong_cluster':
    case 'banned':
    case 'policy_denied':
    case 'forbidden_role':
    case 'tier_removed':
    case 'invalid_csr':
    case 'csr_mismatch':
    case 'invalid_name':
    case 'bad_request':
      return JOIN_EXIT.refused;
    case 'name_taken':
      return JOIN_EXIT.nameTaken;
    case 'MUSTER_ERR_BUNDLE':
    case 'MUSTER_ERR_AMBIGUOUS':
    case 'MUSTER_ERR_NOT_CHOSEN':
    case 'MUSTER_ERR_CA_PIN':
    case 'MUSTER_ERR_TLS':
      return JOIN_EXIT.mismatch;
    case 'MUSTER_ERR_HOOK':
      return JOIN_EXIT.hook;
    case 'MUSTER_ERR_TIMEOUT':
      return JOIN_EXIT.timeout;
    default:
      return JOIN_EXIT.failure;
  }
}

/**
 * The exit code of any other command: a refused setting or argument is a usage error (2), and so is a
 * request the admin API refuses as malformed (400); anything else is a failure (1).
 */
export function exitCodeForCommand(err: unknown): number {
  if (!isMusterError(err)) return EXIT.failure;
  if (err.code === 'MUSTER_ERR_USAGE' || err.code === 'MUSTER_ERR_CONFIG') return EXIT.usage;
  return err.status === 400 ? EXIT.usage : EXIT.failure;
}
