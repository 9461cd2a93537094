/**
 * Pre-approval and bans (issue 9, item 3; after Tailscale's pre-approved keys and SPIRE's ban).
 *
 * A pre-approval is the operator's word, given ahead, that one name (and key, and role, when set) may
 * join once with no token and no install mode: it admits like an approval, and the acceptance consumes
 * it in the same store change (Change.usePreapproval: exactly once, DESIGN "Exactly once").
 *
 * A ban refuses a name or a key for good, until the operator lifts it. The name is known before the
 * CSR is read (the screen stage); the key only once it is (decide runs every rule again).
 */
import type { Ban, BanKind, Preapproval } from '../../store/types.js';
import { TIER_ROLE } from '../issuer.js';
import type { AdmissionRequest, Provisioner, Verdict } from './authorizer.js';

export class PreapprovalProvisioner implements Provisioner {
  readonly name = 'preapproval';
  constructor(private readonly preapproval: (name: string) => Promise<Preapproval | undefined>) {}

  async evaluate(req: AdmissionRequest, now: number): Promise<Verdict | undefined> {
    const p = await this.preapproval(req.name);
    if (!p || !preapprovalMatches(p, req, now)) return undefined;
    return { kind: 'accept', rule: 'approval', detail: `pre-approved by ${p.by}` };
  }
}

/** Live, and for this key and role when it names them. */
export function preapprovalMatches(p: Preapproval, req: { key: string; role: string }, now: number): boolean {
  if (p.expiresAt !== null && p.expiresAt <= now) return false;
  if (p.key !== undefined && p.key !== req.key) return false;
  // A tier registrar (role cluster, a CA certificate; issue 11) only by a pre-approval naming that role.
  return p.role === req.role || (p.role === undefined && req.role !== TIER_ROLE);
}

export class BanRule implements Provisioner {
  readonly name = 'ban';
  readonly stage = 'screen' as const;
  constructor(private readonly ban: (kind: BanKind, value: string) => Promise<Ban | undefined>) {}

  async evaluate(req: AdmissionRequest): Promise<Verdict | undefined> {
    const byName = await this.ban('name', req.name);
    if (byName) return banned(byName, `node name ${req.name} is banned by the operator`);
    // At the screen stage the key is not known yet ('').
    const byKey = req.key ? await this.ban('key', req.key) : undefined;
    if (byKey) return banned(byKey, `key ${req.key} is banned by the operator`);
    return undefined;
  }
}

function banned(b: Ban, message: string): Verdict {
  return {
    kind: 'deny',
    code: 'banned',
    message,
    cause: `banned by ${b.by} at ${b.createdAt}${b.reason ? `: ${b.reason}` : ''}`,
  };
}
