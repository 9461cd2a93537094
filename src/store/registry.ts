/**
 * The registry: one narrow domain interface (CONVENTIONS 5, DESIGN "Store backends") with backends
 * behind it: level (embedded, the default), memory (tests), etcd (shared by several registrars). The
 * registrar decides; the registry only stores what was decided, atomically and durably, and refuses
 * a change whose preconditions no longer hold (compare-and-set). How records are laid out is each
 * backend's own business: no key, prefix or batch op crosses this interface.
 *
 * Every backend passes the contract suite in test/store/contract.ts.
 */
import type {
  Ban,
  BanKind,
  EventInput,
  InstallModeState,
  MusterEvent,
  NodeRecord,
  NodeState,
  Preapproval,
  Revocation,
  SerialRecord,
  TokenRecord,
} from './types.js';

export * from './types.js';

/** One node transition: compare-and-set on the record's revision. */
export interface NodeWrite {
  /** The revision the caller read (0: the name had no record). */
  expectRev: number;
  /** The new record; its `rev` is ignored and set by the store to expectRev + 1. */
  next: NodeRecord;
  /** Keep the record it replaces in the name's history (the name passes to another key). */
  archivePrev?: boolean;
}

/**
 * Everything one decision changes, applied as ONE atomic, durable write (DESIGN "Exactly once"):
 * either all of it lands, or none of it does and apply() throws.
 */
export interface TokenUpdate {
  id: string;
  /** Revoke, at this time (the store has no clock). */
  revokedAt?: string;
  /** Clear the lock and the count of bad proofs. */
  unlock?: boolean;
}

export interface Change {
  nodes?: NodeWrite[];
  /**
   * Count one use of a join token. Refused (StoreConflict 'token') unless the token exists, is not
   * revoked, and has uses left. The stored count therefore always equals the acceptances that landed.
   */
  useToken?: string;
  /**
   * Count one acceptance of the install-mode window that began at `since`. Refused (StoreConflict
   * 'install-mode') unless that window is still on and below its max; the use that reaches max
   * switches install mode off, and the store adds the `install-mode` event that says so.
   */
  useInstallMode?: { since: number };
  /**
   * Count one refused join of the install-mode window that began at `since` (DESIGN "Lockout"). A
   * no-op when that window is no longer on (a refusal is never itself refused); the failure that
   * reaches `max` switches install mode off (offReason `locked: N refused attempts`), and the store
   * adds the `install-mode` event that says so, in the same write.
   */
  installModeFailure?: { since: number; max: number };
  /**
   * Count one bad proof for join token `id` (DESIGN "Lockout"). A no-op for an unknown id (an
   * attacker cannot grow the store), a revoked or an already locked token; the bad proof that
   * reaches `max` locks the token (`lockedAt`: the caller's time, the store has no clock) and the
   * store adds the `token` event {action: 'locked'}.
   */
  tokenBadProof?: { id: string; max: number; at: string };
  /**
   * The operator's revoke or unlock of join token `id`, applied by the store to the token as it is
   * when the change lands (never a read-modify-write by the caller, which could undo a use or a bad
   * proof that landed in between, on this registrar or another). Revoke sets `revoked` and
   * `revokedAt` (kept when already revoked); unlock clears the lock and the bad-proof count. Refused
   * (StoreConflict 'token') when the token does not exist.
   */
  tokenUpdate?: TokenUpdate;
  /**
   * Consume the name's pre-approval with this acceptance (exactly once, like useToken). Refused
   * (StoreConflict 'preapproval') unless it exists and, when `now` is given, has not expired by then:
   * the store has no clock, expiry is the caller's time.
   */
  usePreapproval?: { name: string; now?: number };
  /** Create or replace the name's pre-approval. */
  putPreapproval?: Preapproval;
  /** Delete the name's pre-approval, if any. */
  deletePreapproval?: string;
  /** Create or replace a ban. */
  putBan?: Ban;
  /** Lift a ban, if any. */
  deleteBan?: { kind: BanKind; value: string };
  /** Create or replace a token (revocation is a replacement). */
  putToken?: TokenRecord;
  /** Replace the install-mode state. */
  setInstallMode?: InstallModeState;
  /**
   * Only while install mode is on in the window that began at this `since`: refused (StoreConflict
   * 'install-mode') otherwise, checked against the state before the change. Switching a window off
   * with it, a registrar never overwrites a window another registrar (sharing the store) opened
   * meanwhile, and two registrars switching one window off at its deadline write one event.
   */
  installModeWindow?: number;
  /** Record a serial allocated by allocateSerial() and issued in this change. */
  serial?: SerialRecord;
  /** Record a revoked certificate. */
  revoke?: Revocation;
  /** Events of this change, numbered by the store in the order given. */
  events?: EventInput[];
}

export type ConflictOn = 'node' | 'token' | 'install-mode' | 'preapproval';

/** A precondition of a Change no longer held; nothing was written. The caller re-reads and decides again. */
export class StoreConflict extends Error {
  constructor(
    readonly on: ConflictOn,
    message: string,
  ) {
    super(message);
    this.name = 'StoreConflict';
  }
}

export function isStoreConflict(err: unknown, on?: ConflictOn): err is StoreConflict {
  return err instanceof StoreConflict && (on === undefined || err.on === on);
}

export interface ListNodesOptions {
  state?: NodeState;
  /**
   * Only the nodes whose record names this group (DESIGN "Groups"): an index read, never a full scan.
   * With `state` too, the group's index is walked and filtered by state.
   */
  group?: string;
  /** Start after this name (paging). */
  after?: string;
  limit: number;
}

/** The states a record waits in until someone acts, and the steward expires after their TTLs. */
export type WaitingState = 'heard' | 'pending' | 'issued';
export const WAITING_STATES: readonly WaitingState[] = ['heard', 'pending', 'issued'];

/**
 * A record in a waiting state as its state index holds it: what the steward (its TTL) and the
 * per-source pending counts need, without a read of the record (issue 12 target 2: on a million
 * records, reading every waiting record after each start touched most of the store's tables).
 */
export interface WaitingEntry {
  name: string;
  /** ms since epoch: when the record entered its state (stateEnteredAt). */
  enteredAt: number;
  /** The record's first address, if any (where a pending request came from). */
  address?: string;
}

/**
 * When a record entered its state, what the steward's TTL counts from: its own transition time,
 * else (an issued record written before transition times) issuedAt, else lastSeen. 0 (long ago)
 * when none parses, so a damaged record is expired rather than kept forever.
 */
export function stateEnteredAt(rec: NodeRecord): number {
  const at = rec.times[rec.state] ?? (rec.state === 'issued' ? rec.issuedAt : undefined) ?? rec.lastSeen;
  const ms = Date.parse(at);
  return Number.isNaN(ms) ? 0 : ms;
}

/** The entry of a record in a waiting state. */
export function waitingEntry(rec: NodeRecord): WaitingEntry {
  const address = rec.addresses[0];
  return { name: rec.name, enteredAt: stateEnteredAt(rec), ...(address !== undefined ? { address } : {}) };
}

export interface GroupCount {
  group: string;
  count: number;
}

export interface Registry {
  readonly backend: string;

  /** The registrar id: the stored one, or `make()` stored now (first start). */
  identity(make: () => string): Promise<string>;

  // ---- nodes ----
  getNode(name: string): Promise<NodeRecord | undefined>;
  /** One page of nodes by name, optionally of one state: an index read, never a full scan. */
  listNodes(opts: ListNodesOptions): Promise<NodeRecord[]>;
  namesInState(state: NodeState, limit?: number): Promise<string[]>;
  /**
   * One page, by name, of the records in a waiting state, as WaitingEntry: from the state index
   * where the backend keeps them there (level), never a full scan. An entry is as of the read; a
   * caller that acts on one re-reads the record.
   */
  listWaiting(opts: { state: WaitingState; after?: string; limit: number }): Promise<WaitingEntry[]>;
  /** Earlier records of a name (archived when the name passed to another key), oldest first. */
  history(name: string): Promise<NodeRecord[]>;
  /** Number of current records in each state. */
  counts(): Promise<Record<NodeState, number>>;
  /**
   * Every group some current record names, by group name, with how many records name it (whatever
   * their state): kept with the records, never a scan of them.
   */
  listGroups(): Promise<GroupCount[]>;

  // ---- tokens and install mode ----
  getToken(id: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<TokenRecord[]>;
  getInstallMode(): Promise<InstallModeState>;

  // ---- pre-approvals and bans ----
  getPreapproval(name: string): Promise<Preapproval | undefined>;
  /** By name. */
  listPreapprovals(): Promise<Preapproval[]>;
  getBan(kind: BanKind, value: string): Promise<Ban | undefined>;
  /** By kind, then value. */
  listBans(): Promise<Ban[]>;

  // ---- serials and revocations ----
  /** A serial counter value never handed out before by this store (gaps are allowed). */
  allocateSerial(): Promise<number>;
  listSerials(opts?: { after?: number; limit?: number }): Promise<SerialRecord[]>;
  listRevocations(): Promise<Revocation[]>;
  isRevoked(serial: string): Promise<boolean>;

  // ---- the one write path ----
  /**
   * Applies a Change atomically and durably, then returns its events (numbered) and tells watchers.
   * Throws StoreConflict when a precondition fails (nothing written). Changes applied by one
   * process land in the order apply() was called.
   */
  apply(change: Change): Promise<MusterEvent[]>;

  // ---- events ----
  lastEventSeq(): Promise<number>;
  listEvents(after: number, limit: number): Promise<MusterEvent[]>;
  /**
   * Calls `fn` with every event once its change is durable, in sequence order. Returns the
   * function that stops watching.
   */
  watch(fn: (ev: MusterEvent) => void): () => void;

  /** Waits for writes in progress, then closes. */
  close(): Promise<void>;
}

export interface RegistryOptions {
  /** Events kept: each new event beyond this deletes the oldest (the log is history, not state). */
  eventRetention?: number;
  /** Time for event stamps (an injected clock in tests). */
  now?: () => number;
  /**
   * Called once when the store can take no more writes (a write failed: disk full, I/O error, and
   * the state in memory is ahead of the disk). The owner should stop and be restarted: a fresh open
   * reads what is durable.
   */
  onFatal?: (err: unknown) => void;
  /**
   * What the owner's log should say about the store's own work that no call returns (the etcd
   * backend: its watch of the event log cut, failed, started again). Never secrets.
   */
  log?: (level: 'info' | 'warn', message: string, detail: Record<string, unknown>) => void;
}

/** About 60 MB of events; a node's record keeps its own transition times and admission decision. */
export const DEFAULT_EVENT_RETENTION = 200_000;
