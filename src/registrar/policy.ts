/**
 * Admission policy (DESIGN "Admission policy"): join tokens, install mode, approval, behind one
 * default-deny authorizer (CONVENTIONS 4, after smallstep's provisioners). Pure logic over in-memory
 * state and an injected clock; the registrar service persists what `consume()` changes in the same
 * batch as the acceptance. No fastify, no level, no sockets here.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../common/clock.js';
import { formatDuration } from '../common/names.js';
import { joinProofMac, PROOF_WINDOW_S, safeEqual, type ProofFields } from '../common/proof.js';

export type Autoregister = 'local' | 'any' | 'off';

export interface TokenRecord {
  id: string;
  secret: string;
  createdAt: string;
  /** ms since epoch; null: never expires. */
  expiresAt: number | null;
  /** null: unlimited. */
  maxUses: number | null;
  used: number;
  roles: string[];
  clusters: string[];
  revoked: boolean;
  revokedAt?: string;
  description?: string;
}

/** A token as the operator sees it: never the secret. */
export type TokenView = Omit<TokenRecord, 'secret'> & { state: 'valid' | 'expired' | 'used-up' | 'revoked' };

export function tokenView(t: TokenRecord, now: number): TokenView {
  const { secret: _s, ...rest } = t;
  return { ...rest, state: tokenState(t, now) };
}

export function tokenState(t: TokenRecord, now: number): TokenView['state'] {
  if (t.revoked) return 'revoked';
  if (t.expiresAt !== null && now >= t.expiresAt) return 'expired';
  if (t.maxUses !== null && t.used >= t.maxUses) return 'used-up';
  return 'valid';
}

export function newToken(
  now: number,
  opts: { ttlMs: number | null; maxUses: number | null; roles: string[]; clusters: string[]; description?: string },
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
    return { ok: false, reason: `proof timestamp is ${Math.round(skew)} s away from the registrar clock (window ${PROOF_WINDOW_S} s)` };
  }
  const expected = joinProofMac(token.secret, { ...fields, ts: proof.ts });
  if (!safeEqual(expected, proof.hmac)) return { ok: false, reason: `proof HMAC does not match token ${token.id}` };
  const state = tokenState(token, now);
  if (state !== 'valid') return { ok: false, reason: `token ${token.id} is ${state}` };
  return { ok: true, token };
}

export interface InstallModeState {
  on: boolean;
  /** ms since epoch. */
  since?: number;
  until?: number;
  max: number | null;
  accepted: number;
  role?: string;
  cluster?: string;
  remote: boolean;
  /** Why it is off (deadline, max reached, operator). */
  offReason?: string;
}

export const INSTALL_MODE_OFF: InstallModeState = { on: false, max: null, accepted: 0, remote: false };

/** Install mode as in force at `now`: past its deadline or count it is off, whatever was stored. */
export function effectiveInstallMode(s: InstallModeState, now: number): InstallModeState {
  if (!s.on) return s;
  if (s.until !== undefined && now >= s.until) return { ...s, on: false, offReason: 'deadline passed' };
  if (s.max !== null && s.accepted >= s.max) return { ...s, on: false, offReason: `${s.max} node(s) accepted` };
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

/** What the registrar knows about a request when it decides. */
export interface AdmissionRequest {
  name: string;
  role: string;
  cluster: string;
  key: string;
  channel: 'http' | 'mdns';
  address: string;
  /** The address is on the subnet of an interface the registrar advertises on (no router between). */
  onLink: boolean;
  /** A token whose proof verified. */
  token?: TokenRecord;
}

export type Verdict =
  | { kind: 'accept'; rule: 'token' | 'install-mode'; detail: string; tokenId?: string }
  | { kind: 'deny'; code: 'token_scope'; message: string }
  | { kind: 'pending'; reason: string };

/** One admission method. Returns undefined when it has no opinion on the request. */
export interface Provisioner {
  readonly name: string;
  evaluate(req: AdmissionRequest, now: number): Verdict | undefined;
}

export class TokenProvisioner implements Provisioner {
  readonly name = 'token';
  constructor(private readonly autoregister: () => Autoregister) {}

  evaluate(req: AdmissionRequest): Verdict | undefined {
    const t = req.token;
    if (!t) return undefined;
    if (t.roles.length && !t.roles.includes(req.role)) {
      return { kind: 'deny', code: 'token_scope', message: `join token ${t.id} does not allow role ${req.role} (allows ${t.roles.join(', ')})` };
    }
    if (t.clusters.length && req.cluster && !t.clusters.includes(req.cluster)) {
      return { kind: 'deny', code: 'token_scope', message: `join token ${t.id} does not allow cluster ${req.cluster}` };
    }
    if (this.autoregister() === 'off') {
      return { kind: 'pending', reason: `valid join token ${t.id}, but autoregister is off: waiting for approval` };
    }
    return { kind: 'accept', rule: 'token', detail: `join token ${t.id}`, tokenId: t.id };
  }
}

export class InstallModeProvisioner implements Provisioner {
  readonly name = 'install-mode';
  constructor(
    private readonly state: () => InstallModeState,
    private readonly autoregister: () => Autoregister,
  ) {}

  evaluate(req: AdmissionRequest, now: number): Verdict | undefined {
    const s = effectiveInstallMode(this.state(), now);
    if (!s.on) return undefined;
    const auto = this.autoregister();
    if (auto === 'off') return { kind: 'pending', reason: 'install mode is on, but autoregister is off' };
    if (s.role && s.role !== req.role) return { kind: 'pending', reason: `install mode admits role ${s.role} only` };
    if (s.cluster && req.cluster && s.cluster !== req.cluster) {
      return { kind: 'pending', reason: `install mode admits cluster ${s.cluster} only` };
    }
    if (!req.onLink && !s.remote && auto !== 'any') {
      return { kind: 'pending', reason: `install mode admits the local link only and ${req.address} is not on it` };
    }
    const where = req.onLink ? `on-link ${req.address}` : `remote ${req.address}`;
    return { kind: 'accept', rule: 'install-mode', detail: `install mode (${req.channel}, ${where})` };
  }
}

/**
 * Default deny: a request is accepted only when a provisioner accepts it. A deny from any provisioner
 * wins over an accept from another; with no accept the node waits for the operator's approval.
 */
export class Authorizer {
  constructor(private readonly provisioners: Provisioner[], private readonly clock: Clock) {}

  decide(req: AdmissionRequest): Verdict {
    const verdicts = this.provisioners.map((p) => p.evaluate(req, this.clock.now())).filter((v) => v !== undefined);
    const deny = verdicts.find((v) => v.kind === 'deny');
    if (deny) return deny;
    const accept = verdicts.find((v) => v.kind === 'accept');
    if (accept) return accept;
    const pending = verdicts.find((v) => v.kind === 'pending');
    return pending ?? { kind: 'pending', reason: 'no token and install mode is off: waiting for approval' };
  }
}
