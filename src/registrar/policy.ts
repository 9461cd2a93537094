/**
 * The rules of admission as pure functions (DESIGN "Admission policy"): token state and proof,
 * install-mode state at a given time. The provisioners in admission/ apply them; no fastify, no
 * store, no sockets here.
 */
import { randomBytes } from 'node:crypto';
import { formatDuration } from '../common/names.js';
import { joinProofMac, PROOF_WINDOW_S, safeEqual, type ProofFields } from '../common/proof.js';
import type { InstallModeState, TokenRecord } from '../store/types.js';

export { INSTALL_MODE_OFF, type InstallModeState, type TokenRecord } from '../store/types.js';

export type Autoregister = 'local' | 'any' | 'off';

/** A token as the operator sees it: never the secret. */
export type TokenView = Omit<TokenRecord, 'secret'> & {
  state: 'valid' | 'expired' | 'used-up' | 'revoked' | 'locked';
};

export function tokenView(t: TokenRecord, now: number): TokenView {
  const { secret: _s, ...rest } = t;
  return { ...rest, state: tokenState(t, now) };
}

export function tokenState(t: TokenRecord, now: number): TokenView['state'] {
  if (t.revoked) return 'revoked';
  // Locked after too many bad proofs (DESIGN "Lockout"): refused like a revoked token.
  if (t.locked) return 'locked';
  if (t.expiresAt !== null && now >= t.expiresAt) return 'expired';
  if (t.maxUses !== null && t.used >= t.maxUses) return 'used-up';
  return 'valid';
}

export function newToken(
  now: number,
  opts: {
    ttlMs: number | null;
    maxUses: number | null;
    roles: string[];
    clusters: string[];
    description?: string;
  },
): TokenRecord {
  return {
    id: randomBytes(5).toString('hex'),
    secret: randomBytes(32).toString('base64url'),
    createdAt: new Date(now).toISOString(),
    expiresAt: opts.ttlMs === null ? null : now + opts.ttlMs,
    maxUses: opts.maxUses,
    used: 0,
    roles: opts.roles,
    clusters: opts.clusters,
    revoked: false,
    ...(opts.description ? { description: opts.description } : {}),
  };
}

export interface Proof {
  id: string;
  ts: number;
  hmac: string;
}

/**
 * Checks a join proof. The client only ever learns "bad proof"; `reason` is for the log
 * (smallstep's errs: generic denial out, detailed cause in).
 */
export function checkProof(
  token: TokenRecord | undefined,
  proof: Proof,
  fields: Omit<ProofFields, 'ts'>,
  now: number,
): { ok: true; token: TokenRecord } | { ok: false; reason: string } {
  if (!token) return { ok: false, reason: `unknown token id ${proof.id}` };
  const skew = Math.abs(now / 1000 - proof.ts);
  if (!(skew <= PROOF_WINDOW_S)) {
    return {
      ok: false,
      reason: `proof timestamp is ${Math.round(skew)} s away from the registrar clock (window ${PROOF_WINDOW_S} s)`,
    };
  }
  const expected = joinProofMac(token.secret, { ...fields, ts: proof.ts });
  if (!safeEqual(expected, proof.hmac))
    return { ok: false, reason: `proof HMAC does not match token ${token.id}` };
  const state = tokenState(token, now);
  if (state !== 'valid') return { ok: false, reason: `token ${token.id} is ${state}` };
  return { ok: true, token };
}

/** Install mode as in force at `now`: past its deadline or count it is off, whatever was stored. */
export function effectiveInstallMode(s: InstallModeState, now: number): InstallModeState {
  if (!s.on) return s;
  if (s.until !== undefined && now >= s.until) return { ...s, on: false, offReason: 'deadline passed' };
  if (s.max !== null && s.accepted >= s.max)
    return { ...s, on: false, offReason: `${s.max} node(s) accepted` };
  return s;
}

export function describeInstallMode(s: InstallModeState, now: number): string {
  const e = effectiveInstallMode(s, now);
  if (!e.on) return `off${e.offReason ? ` (${e.offReason})` : ''}`;
  const parts = [`on for ${formatDuration((e.until ?? now) - now)} more`];
  if (e.max !== null) parts.push(`${e.max - e.accepted} of ${e.max} acceptance(s) left`);
  if (e.role) parts.push(`role ${e.role}`);
  if (e.cluster) parts.push(`cluster ${e.cluster}`);
  parts.push(e.remote ? 'any address' : 'local link only');
  return parts.join(', ');
}
