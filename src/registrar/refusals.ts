/**
 * Refusals on record and lockout (DESIGN "Admission policy": Lockout; "Node record": every admission
 * decision records the rule that made it, or the reason for refusal).
 *
 * Every join the registrar judged and refused becomes a `refused` event with a stable reason code,
 * so that `muster events --type refused` answers "who knocked, and why was it turned away". While
 * install mode is open, each refused join also counts against the window: the Nth switches it off
 * (Matter's commissioning window). A bad proof for an existing token counts against that token: the
 * Nth locks it. The store does both counts (Change.installModeFailure, Change.tokenBadProof), so they
 * are exact under concurrency and survive a restart.
 *
 * What is a refused attempt: a join that was well-formed and judged, and refused (a deny verdict,
 * name taken, banned, rejected or removed before), or one that install mode, open, turned away and
 * that therefore waits for the operator (off the local link, or outside the window's role or
 * cluster): counted once, when its pending record is written (asking again while it waits does not
 * count). Not refused attempts: malformed requests (400: never judged), requests shed or rate
 * limited (429, 503, and `closed` for a full pending queue: not judged either), a node that simply
 * waits for approval with install mode off.
 *
 * Bounded writes (SECURITY.md, threat "refusals flood the store"): at most one `refused` event is
 * stored per (source: IPv4 address or IPv6 /64, reason, name) per minute; the ones it stands for are
 * counted and folded into the next stored one as `repeats`. Every refusal is also a 4xx answer the
 * failure limiter counts (fallback/failure-limit.ts): a source gets 429 after --rate-limit refusals
 * a minute, and all sources together after max(1200, 20 x --rate-limit), so the stored refusals are
 * at most that many a minute; the count writes stop at N per window and N per token. Event retention
 * prunes the log as for any other event.
 */
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/log.js';
import { sourceKey } from '../common/net.js';
import type { Change, Registry } from '../store/registry.js';
import type { Channel } from '../store/types.js';
import { effectiveInstallMode } from './policy.js';

/** Stable short codes of the `refused` event's `reason` (docs/cli-json.md, README "Refusals"). */
export type RefusalReason =
  | 'bad_proof'
  | 'locked'
  | 'token_scope'
  | 'name_taken'
  | 'wrong_cluster'
  | 'off_link'
  | 'out_of_scope'
  | 'banned'
  | 'rejected'
  | 'removed'
  | 'policy';

export const REFUSAL_REASONS: readonly RefusalReason[] = [
  'bad_proof',
  'locked',
  'token_scope',
  'name_taken',
  'wrong_cluster',
  'off_link',
  'out_of_scope',
  'banned',
  'rejected',
  'removed',
  'policy',
];

/** Refused attempts of an install-mode window, and bad proofs of a token, before lockout (DESIGN). */
export const DEFAULT_MAX_FAILURES = 20;
/** One stored `refused` event per (source, reason, name) per this long. */
export const REFUSAL_COALESCE_MS = 60_000;
/** Coalescing keys tracked at most; beyond, refusals are stored uncoalesced (still limiter-bounded). */
const MAX_TRACKED = 10_000;

/**
 * The reason code of a refusal answered with this error code; undefined for answers that are not a
 * judged refusal (malformed, rate limited, shed, or the pending queue full).
 */
export function refusalReason(code: string): RefusalReason | undefined {
  switch (code) {
    case 'bad_proof':
    case 'token_scope':
    case 'name_taken':
    case 'wrong_cluster':
    case 'banned':
    case 'rejected':
    case 'removed':
      return code;
    case 'policy_denied':
    case 'forbidden_role':
    case 'tier_removed':
      return 'policy';
    default:
      return undefined;
  }
}

export interface Refusal {
  reason: RefusalReason;
  /** The stable code the client was answered with (a locked token answers bad_proof). */
  code: string;
  /** For the operator: the detailed cause (never a secret: no proof, no token secret). */
  message: string;
  name: string;
  address: string;
  channel: Channel;
  /** The key fingerprint of the CSR, once it was read. */
  key?: string;
  /** The token the proof named. */
  tokenId?: string;
  /** A proof that did not verify with this existing token's secret: counts towards its lock. */
  badProofFor?: string;
}

export interface RefusalRecorderOptions {
  registry: Registry;
  clock: Clock;
  log: Logger;
  /** Refused attempts per install-mode window, and bad proofs per token, before lockout. */
  maxFailures?: number;
}

export class RefusalRecorder {
  private readonly recent = new Map<string, { until: number; repeats: number }>();
  readonly maxFailures: number;

  constructor(private readonly o: RefusalRecorderOptions) {
    this.maxFailures = o.maxFailures ?? DEFAULT_MAX_FAILURES;
  }

  /**
   * Records a refusal: its event (coalesced), the install-mode window's failure count while one is
   * open, and a bad proof against its token. Never throws: the refusal is answered whatever the
   * store says (a failed write is the store's fatal error, reported by the registry).
   */
  async record(r: Refusal): Promise<void> {
    const now = this.o.clock.now();
    const change: Change = {};
    const repeats = this.admit(r, now);
    if (repeats !== undefined) {
      change.events = [
        {
          type: 'refused',
          name: r.name,
          detail: {
            reason: r.reason,
            code: r.code,
            message: r.message,
            address: r.address,
            channel: r.channel,
            ...(r.key ? { key: r.key } : {}),
            ...(r.tokenId ? { tokenId: r.tokenId } : {}),
            ...(repeats > 0 ? { repeats } : {}),
          },
        },
      ];
    }
    try {
      const im = effectiveInstallMode(await this.o.registry.getInstallMode(), now);
      if (im.on && im.since !== undefined)
        change.installModeFailure = { since: im.since, max: this.maxFailures };
      if (r.badProofFor !== undefined)
        change.tokenBadProof = { id: r.badProofFor, max: this.maxFailures, at: new Date(now).toISOString() };
      if (!change.events && !change.installModeFailure && !change.tokenBadProof) return;
      const events = await this.o.registry.apply(change);
      for (const ev of events) {
        if (ev.type === 'install-mode')
          this.o.log.warn(
            { reason: ev.detail?.reason, failures: ev.detail?.failures },
            'install mode switched itself off: too many refused attempts',
          );
        else if (ev.type === 'token')
          this.o.log.warn(
            { tokenId: ev.detail?.id, badProofs: ev.detail?.badProofs },
            'join token locked: too many bad proofs',
          );
      }
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message, node: r.name }, 'could not record a refusal');
    }
  }

  /**
   * Undefined: this refusal is folded into the next stored one of its key; else the number of
   * refusals of its key folded since the last stored one.
   */
  private admit(r: Refusal, now: number): number | undefined {
    const key = `${sourceKey(r.address)}|${r.reason}|${r.name}`;
    const seen = this.recent.get(key);
    if (seen && now < seen.until) {
      seen.repeats++;
      return undefined;
    }
    if (!seen && this.recent.size >= MAX_TRACKED) {
      for (const [k, v] of this.recent) if (now >= v.until) this.recent.delete(k);
      if (this.recent.size >= MAX_TRACKED) return 0;
    }
    // Re-inserted: the map stays in order of last storing, the oldest first.
    this.recent.delete(key);
    this.recent.set(key, { until: now + REFUSAL_COALESCE_MS, repeats: 0 });
    return seen?.repeats ?? 0;
  }
}
