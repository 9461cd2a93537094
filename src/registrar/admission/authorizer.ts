/**
 * The authorizer (DESIGN "Admission policy", CONVENTIONS 4): every rule that can admit or refuse a
 * join sits here, behind one default-deny interface, after smallstep's provisioners. Each
 * provisioner checks its own credential (the token provisioner its proof, install mode the peer's
 * locality) and returns a verdict or no opinion. A deny from any of them wins; an accept needs a
 * provisioner that accepts; with neither, the node waits for the operator's approval, unless the
 * pending queue is full.
 *
 * No fastify, no bonjour-service, no store layout here: what a provisioner needs from the registry
 * it gets through the narrow functions it is built with.
 */
import type { Clock } from '../../common/clock.js';
import type { ErrorCode } from '../../common/errors.js';
import type { Channel } from '../../store/types.js';
import type { Proof } from '../policy.js';
import type { RefusalReason } from '../refusals.js';

/** What the registrar knows about a join when it decides. */
export interface AdmissionRequest {
  name: string;
  role: string;
  cluster: string;
  /** Fingerprint of the key in the CSR. */
  key: string;
  channel: Channel;
  /** The TCP peer address: locality comes from here, never from a packet (DESIGN "Admission policy"). */
  address: string;
  /** The peer is on the subnet of an interface the registrar advertises on (no router between). */
  onLink: boolean;
  /** The token proof the node sent, unchecked (the token provisioner checks it). */
  proof?: Proof;
  /** The node's mDNS advertisement the registrar heard for this name, if any: a hint, not a credential. */
  heard?: { key: string; addresses: string[] };
  /** This (name, key) already waits for approval: the pending cap does not apply to it again. */
  alreadyPending?: boolean;
}

/**
 * 'approval': the operator's pre-approval of the name (admission/preapproval.ts); 'policy': the policy
 * hook accepted what would otherwise wait (admission/policy-hook.ts).
 */
export type AcceptRule = 'token' | 'install-mode' | 'approval' | 'policy';

export type Verdict =
  | {
      kind: 'accept';
      rule: AcceptRule;
      detail: string;
      /** The token that admits (rule 'token'). */
      tokenId?: string;
      /** The install-mode window that admits (rule 'install-mode'), by its start. */
      since?: number;
    }
  | {
      kind: 'deny';
      code: ErrorCode;
      /** For the client: generic where detail would help an attacker (smallstep's errs). */
      message: string;
      /** For the log only: the detailed cause. */
      cause?: string;
      retryAfter?: number;
      /** What the refusal record adds to the code (registrar/refusals.ts): never shown to the client. */
      refusal?: { reason?: RefusalReason; tokenId?: string; badProofFor?: string };
    }
  | {
      kind: 'pending';
      reason: string;
      /**
       * A valid join token the node proved but that does not admit it by itself (a tier's role, or
       * autoregister off): kept on the pending record so that, once approved, its bundle carries the
       * token MAC the node checks (node/bundle-check.ts).
       */
      tokenId?: string;
      /**
       * A hold: the node waits even if a token or install mode would admit it (a singleton role,
       * admission/singleton.ts). Only the operator lifts it: an approval or a pre-approval.
       */
      hold?: boolean;
      /**
       * Install mode, open, turned this node away (off the local link, or outside the window's
       * scope): a refused attempt of the window (DESIGN "Lockout"), though the node still waits.
       */
      refusal?: Extract<RefusalReason, 'off_link' | 'out_of_scope'>;
    };

/** One admission method, or a rule that can only refuse. Undefined: no opinion. */
export interface Provisioner {
  readonly name: string;
  /**
   * 'screen' rules judge the request alone (the cluster asked for) and run before the registrar
   * looks at what it decided earlier for this name; 'admit' rules run when a decision is needed.
   */
  readonly stage?: 'screen' | 'admit';
  evaluate(req: AdmissionRequest, now: number): Verdict | undefined | Promise<Verdict | undefined>;
}

export const DEFAULT_PENDING_REASON = 'no token and install mode is off: waiting for approval';

export interface AuthorizerOptions {
  clock: Clock;
  /** Refuse new pending records beyond this many (a full queue is closed for now, not unbounded). */
  pendingCap?: {
    max: number;
    count: () => Promise<number>;
    /** And beyond this many from one source (an IPv4 address or IPv6 /64), so one client cannot fill it. */
    perSource?: { max: number; count: (address: string) => number | Promise<number> };
  };
  /**
   * The policy hook (--policy-exec, admission/policy-hook.ts): it sees every verdict that is not a
   * deny and returns the final one (deny wins; it never overrides a bad proof, which is a deny).
   */
  policy?: {
    judge(req: AdmissionRequest, builtin: Exclude<Verdict, { kind: 'deny' }>): Promise<Verdict>;
  };
}

export class Authorizer {
  constructor(
    private readonly provisioners: Provisioner[],
    private readonly opts: AuthorizerOptions,
  ) {}

  /** The request-only rules: a deny, or undefined. */
  async screen(req: AdmissionRequest): Promise<Extract<Verdict, { kind: 'deny' }> | undefined> {
    const now = this.opts.clock.now();
    for (const p of this.provisioners) {
      if (p.stage !== 'screen') continue;
      const v = await p.evaluate(req, now);
      if (v?.kind === 'deny') return v;
    }
    return undefined;
  }

  async decide(req: AdmissionRequest): Promise<Verdict> {
    const now = this.opts.clock.now();
    const verdicts: Verdict[] = [];
    for (const p of this.provisioners) {
      const v = await p.evaluate(req, now);
      if (v) verdicts.push(v);
    }
    const deny = verdicts.find((v) => v.kind === 'deny');
    if (deny) return deny;
    const hold = verdicts.find((v) => v.kind === 'pending' && v.hold);
    const accept = verdicts.find(
      (v) => v.kind === 'accept' && (!hold || v.rule === 'approval'), // the operator's word lifts a hold
    );
    const builtin = (accept ??
      hold ??
      verdicts.find((v) => v.kind === 'pending') ?? {
        kind: 'pending',
        reason: DEFAULT_PENDING_REASON,
      }) as Exclude<Verdict, { kind: 'deny' }>;
    const verdict = this.opts.policy ? await this.opts.policy.judge(req, builtin) : builtin;
    if (verdict.kind !== 'pending') return verdict;
    // A token the node proved travels with the wait, whichever rule made it wait (see tokenId above).
    const proven = verdicts.find((v) => v.kind === 'pending' && v.tokenId !== undefined);
    const pending =
      verdict.tokenId === undefined && proven?.kind === 'pending'
        ? { ...verdict, tokenId: proven.tokenId! }
        : verdict;
    const cap = this.opts.pendingCap;
    if (cap && !req.alreadyPending) {
      if (cap.perSource && (await cap.perSource.count(req.address)) >= cap.perSource.max) {
        return {
          kind: 'deny',
          code: 'closed',
          message:
            'too many nodes from this address are waiting for approval; the registrar takes no more from it for now',
          cause: `pending records from ${req.address} at the per-source cap (${cap.perSource.max})`,
          retryAfter: 60,
        };
      }
      if ((await cap.count()) >= cap.max) {
        return {
          kind: 'deny',
          code: 'closed',
          message: 'too many nodes are waiting for approval; the registrar takes no more for now',
          cause: `pending queue full (${cap.max})`,
          retryAfter: 60,
        };
      }
    }
    return pending;
  }
}
