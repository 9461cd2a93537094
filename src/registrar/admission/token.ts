/**
 * The join-token provisioner (DESIGN "Join tokens"): checks the node's proof against the token it
 * names (HMAC over name, role, cluster, key and time; the secret never crosses the wire), the token's
 * state (counting uses in flight), then its scope. The client only ever hears "bad proof"; the log
 * gets the cause.
 */
import type { TokenRecord } from '../../store/types.js';
import { TIER_ROLE } from '../issuer.js';
import { joinProofMac, safeEqual } from '../../common/proof.js';
import { checkProof, type Autoregister } from '../policy.js';
import type { AdmissionRequest, Provisioner, Verdict } from './authorizer.js';
import { lookPastInflight } from './reservations.js';

export interface TokenProvisionerDeps {
  token(id: string): Promise<TokenRecord | undefined>;
  /** Uses held by acceptances in flight. */
  inflight(id: string): number;
  /** Resolves when a use of the token held now is given back (Reservations.released). */
  released(id: string): Promise<void>;
  autoregister(): Autoregister;
  /** The cluster this registrar serves. */
  cluster: string;
}

export const BAD_PROOF_MESSAGE =
  'the join token proof is not valid (wrong, revoked, expired or used-up token, or clock skew over 5 minutes)';

export class TokenProvisioner implements Provisioner {
  readonly name = 'token';
  constructor(private readonly deps: TokenProvisionerDeps) {}

  async evaluate(req: AdmissionRequest, now: number): Promise<Verdict | undefined> {
    if (!req.proof) return undefined;
    const proof = req.proof;
    const fields = { name: req.name, role: req.role, cluster: req.cluster, key: req.key };
    // Only uses in flight make the token look used up (Reservations): one may yet be given back, and
    // one whose change already landed is counted twice until its acceptance ends, so a token sized
    // exactly for its herd refused its last nodes for good. Not a refusal yet: look again once one
    // of them ends (lookPastInflight).
    const looked = await lookPastInflight(
      async () => {
        const stored = await this.deps.token(proof.id);
        const inflight = stored ? this.deps.inflight(stored.id) : 0;
        const seen = stored && { ...stored, used: stored.used + inflight };
        const check = checkProof(seen, proof, fields, now);
        return {
          result: { seen, check },
          onlyInflightRefuses: !check.ok && inflight > 0 && checkProof(stored, proof, fields, now).ok,
        };
      },
      () => this.deps.released(proof.id),
    );
    if (!looked) {
      return {
        kind: 'deny',
        code: 'busy',
        message: 'the registrar is busy with this join token: retry shortly',
        cause: `the last uses of token ${proof.id} are held by joins in flight`,
        retryAfter: 1,
      };
    }
    const t = looked.seen;
    const checked = looked.check;
    if (!checked.ok) {
      // A locked token answers like a revoked one (the node hears only "bad proof"); the log and the
      // refused event say locked. A proof whose HMAC does not verify with an existing token's secret
      // is a guess at it: it counts towards the token's lock (DESIGN "Lockout"). A stale timestamp
      // with the right HMAC (the holder's clock is off) and an unknown id count for nothing.
      const guess = t !== undefined && !t.locked && !t.revoked && !proofMacMatches(t, req);
      return {
        kind: 'deny',
        code: 'bad_proof',
        message: BAD_PROOF_MESSAGE,
        cause: t?.locked && !t.revoked ? `token ${t.id} is locked (too many bad proofs)` : checked.reason,
        refusal: {
          reason: t?.locked && !t.revoked ? 'locked' : 'bad_proof',
          tokenId: req.proof.id.slice(0, 64),
          ...(guess ? { badProofFor: t.id } : {}),
        },
      };
    }
    if (t!.roles.length && !t!.roles.includes(req.role)) {
      return {
        kind: 'deny',
        code: 'token_scope',
        message: `join token ${t!.id} does not allow role ${req.role} (allows ${t!.roles.join(', ')})`,
      };
    }
    // The scope is checked against the cluster the node would join: the one it asked for, or this
    // registrar's own when it asked for any (issue 8: an empty cluster skipped the check).
    const cluster = req.cluster || this.deps.cluster;
    if (t!.clusters.length && !t!.clusters.includes(cluster)) {
      return {
        kind: 'deny',
        code: 'token_scope',
        message: `join token ${t!.id} does not allow cluster ${cluster}`,
      };
    }
    // A tier's intermediate CA signs certificates the whole cluster trusts (issue 11): only a token
    // created for that role admits it; an unscoped token leaves it to the operator.
    if (req.role === TIER_ROLE && !t!.roles.includes(TIER_ROLE)) {
      return {
        kind: 'pending',
        reason: `join token ${t!.id} is not scoped to role ${TIER_ROLE} (tokens create --role ${TIER_ROLE}): a tier registrar waits for approval`,
        tokenId: t!.id,
      };
    }
    if (this.deps.autoregister() === 'off') {
      return {
        kind: 'pending',
        reason: `valid join token ${t!.id}, but autoregister is off: waiting for approval`,
        tokenId: t!.id,
      };
    }
    return { kind: 'accept', rule: 'token', detail: `join token ${t!.id}`, tokenId: t!.id };
  }
}

/** The proof's HMAC verifies with the token's secret (whatever its timestamp and the token's state). */
function proofMacMatches(t: TokenRecord, req: AdmissionRequest): boolean {
  const p = req.proof!;
  const expected = joinProofMac(t.secret, {
    name: req.name,
    role: req.role,
    cluster: req.cluster,
    key: req.key,
    ts: p.ts,
  });
  return safeEqual(expected, p.hmac);
}
