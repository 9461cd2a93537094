/**
 * The registry's domain records (DESIGN "Node record", "Admission policy"). Plain data: every backend
 * stores them as JSON and no backend adds meaning to them. The registrar's policy reads them; only
 * the backends know how they are laid out in a store.
 */

export type NodeState = 'heard' | 'pending' | 'accepted' | 'issued' | 'active' | 'rejected' | 'removed';
export const NODE_STATES: readonly NodeState[] = [
  'heard',
  'pending',
  'accepted',
  'issued',
  'active',
  'rejected',
  'removed',
];

export type AdmissionRule = 'token' | 'install-mode' | 'approval' | 'policy' | 'refused' | 'removed';

export interface Decision {
  rule: AdmissionRule;
  /** For a person: which token, which install-mode window, who approved, why refused. */
  detail: string;
  at: string;
}

export type Channel = 'https' | 'mdns';

export interface NodeRecord {
  name: string;
  /**
   * Revision of this record, set by the store: 1 for the first write of a name, +1 on every write.
   * Transitions are compare-and-set on it (0 = "no record yet").
   */
  rev: number;
  state: NodeState;
  /** Key fingerprint: base64url SHA-256 of the SPKI. */
  key: string;
  /** SPKI DER, base64 ('' for a node only heard over mDNS). */
  spki: string;
  role: string;
  /** The cluster the node asked for ('' for any). */
  cluster: string;
  channel: Channel;
  addresses: string[];
  /** Why the node was let in, or not (DESIGN "Node record"). */
  decision?: Decision;
  /** Why it waits (pending only). */
  pendingReason?: string;
  /**
   * The key this name advertised over mDNS when it differs from the key the node asked with: such a
   * node waits for the operator, whatever install mode says (DESIGN "Discovery": a hint, not a credential).
   */
  advertisedKey?: string;
  times: Partial<Record<NodeState, string>>;
  lastSeen: string;
  group?: string;
  tokenId?: string;
  serial?: string;
  certificate?: string;
  notAfter?: string;
  issuedAt?: string;
}

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
  /**
   * Proofs that named this token and did not verify with its secret (DESIGN "Lockout"): counted by
   * the store (Change.tokenBadProof), exactly; absent on records written before lockout existed.
   */
  badProofs?: number;
  /** Locked after too many bad proofs: refused like a revoked token until the operator unlocks it. */
  locked?: boolean;
  lockedAt?: string;
}

export interface InstallModeState {
  on: boolean;
  /** ms since epoch; identifies one install-mode window. */
  since?: number;
  until?: number;
  max: number | null;
  accepted: number;
  role?: string;
  cluster?: string;
  remote: boolean;
  /** Why it is off (deadline, max reached, operator, locked). */
  offReason?: string;
  /**
   * Joins refused while this window was open (DESIGN "Lockout", Matter's commissioning window):
   * counted by the store (Change.installModeFailure); absent: none (or written before lockout).
   */
  failures?: number;
}

export const INSTALL_MODE_OFF: InstallModeState = { on: false, max: null, accepted: 0, remote: false };

export type EventType =
  | NodeState
  | 'conflict'
  | 'expired'
  | 'gc'
  | 'install-mode'
  | 'token'
  | 'group'
  | 'renewed'
  | 'preapproval'
  | 'ban'
  | 'refused';

/** Every event type, for validating `muster events --type` and the admin API's `type` filter. */
export const EVENT_TYPES: readonly EventType[] = [
  ...NODE_STATES,
  'conflict',
  'expired',
  'gc',
  'install-mode',
  'token',
  'group',
  'renewed',
  'preapproval',
  'ban',
  'refused',
];

export interface MusterEvent {
  seq: number;
  at: string;
  type: EventType;
  name?: string;
  detail?: Record<string, unknown>;
}

export type EventInput = Omit<MusterEvent, 'seq' | 'at'>;

/** A serial number the issuer allocated and wrote with a certificate. */
export interface SerialRecord {
  counter: number;
  serial: string;
  name: string;
}

export interface Revocation {
  serial: string;
  name: string;
  at: string;
  reason: string;
}

/**
 * The operator's word that one name may join once with no token and no install mode (issue 9: after
 * Tailscale's pre-approved keys): at most one per name, consumed by the acceptance it admits.
 */
export interface Preapproval {
  name: string;
  /** Only this key fingerprint, when set (a rebuild leaves it unset: the next key is not known yet). */
  key?: string;
  /** Only this role, when set. */
  role?: string;
  /** ms since epoch; null: never expires. */
  expiresAt: number | null;
  createdAt: string;
  /** Who pre-approved (the operator, or "rebuild"). */
  by: string;
}

export type BanKind = 'name' | 'key';

/** A name or a key refused for good, until the operator lifts it (SPIRE's ban, not its evict). */
export interface Ban {
  kind: BanKind;
  /** The name, or the key fingerprint. */
  value: string;
  createdAt: string;
  by: string;
  reason?: string;
}
