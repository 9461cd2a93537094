/**
 * The registry on level (DESIGN "Store backends": embedded, the default). The only module that
 * imports level (CONVENTIONS 5); the key layout below is private to this file.
 *
 * Key layout (strings; values JSON):
 *   n!<name>                        current node record of a name
 *   s!<state>!<name>                index by state: '' value, but for a waiting state (heard, pending,
 *                                   issued) {"at": ms, "a": address}, the record's WaitingEntry (see
 *                                   listWaiting; stores written before it hold '' until their first
 *                                   open fills them, see fillWaitingIndex)
 *   g!<group>!<name>                index by group ('' value; only records that name a group)
 *   h!<name>!<seq:16 hex>[!<rev:16 hex>]
 *                                   an earlier record of the name (archivePrev), oldest first; seq is
 *                                   the event sequence at the time (older versions wrote no rev part)
 *   e!<seq:16 hex>                  event; seq monotonic, the newest `eventRetention` kept
 *   sn!<counter:16 hex>             serial issued -> {name, serial}
 *   rv!<serial>                     revoked serial -> {serial, name, at, reason}
 *   t!<id>                          join token
 *   pa!<name>                       pre-approval of a name
 *   b!<kind>!<value>                ban of a name or a key
 *   m!counts                        number of current records in each state
 *   m!groups                        number of current records in each group (absent: none; stores
 *                                   written before groups existed have no grouped record)
 *   m!install-mode                  install mode state
 *   m!id                            registrar id
 *   m!serial-lease                  serial counters up to here may have been handed out
 *
 * What makes a precondition decidable without a read stays in memory: tokens, install mode,
 * pre-approvals and bans (small: loaded at open), the state and group counts, the event sequence and the serial counter (loaded at open with
 * one-key reverse reads: never a full scan, so a cold start on a million records stays fast). A node
 * write is checked against the latest record of its name, including writes queued but not yet
 * durable (the pending map).
 *
 * Order and durability (DESIGN "Exactly once"): apply() calls pass one by one, in call order, through
 * a short section that checks the preconditions and turns the change into one batch, reading node
 * records synchronously (no await inside: the checks hold while the batch is built). Batches go to
 * one group-commit writer that writes everything queued as one batch with
 * {sync: true} (fsync), in queue order, so a crash at any instant leaves a prefix of the changes, and
 * the stored token and install-mode counts equal the uses that landed (a group write puts each of
 * m!counts, t!<id> and m!install-mode once, with the value after its last change). Nothing is
 * reported (apply() resolving, reads, watchers) before its batch is durable. After a failed write the
 * in-memory state may be ahead of the disk: every later write is refused (fail stop) until the store
 * is reopened.
 */
import { Level } from 'level';
import {
  type Ban,
  type BanKind,
  type Preapproval,
  DEFAULT_EVENT_RETENTION,
  INSTALL_MODE_OFF,
  NODE_STATES,
  StoreConflict,
  type Change,
  type GroupCount,
  type InstallModeState,
  type ListNodesOptions,
  type EventInput,
  type MusterEvent,
  type NodeRecord,
  type NodeState,
  type Registry,
  type RegistryOptions,
  type Revocation,
  type SerialRecord,
  type TokenRecord,
  type WaitingEntry,
  type WaitingState,
  WAITING_STATES,
  waitingEntry,
} from './registry.js';
import {
  banId,
  EventDelivery,
  expectInstallModeWindow,
  normaliseNode,
  normaliseRevocation,
  plainCopy,
  installModeFailureOnce,
  tokenBadProofOnce,
  updateTokenOnce,
  useInstallModeOnce,
  usePreapprovalOnce,
  useTokenOnce,
} from './common.js';

type Op = { type: 'put'; key: string; value: string } | { type: 'del'; key: string };

const hex16 = (n: number): string => n.toString(16).padStart(16, '0');
/** Above every character a key part can hold: the upper bound of a prefix range. */
const END = '\uffff';
/**
 * For a page read with `.all()`: the whole page in one read on leveldb's side. classic-level holds
 * 16 KB per trip through the libuv pool by default, and `for await` reads one entry on its first
 * step, so a page of 100 records (~2 KB each) took ~14 trips, each a wait for a pool thread and
 * then for the main thread: on 1M records under load, p90 15.5 against 3.4 ms (p50 1.7 against
 * 1.25 ms; docs/benchmarks.md). The page's `limit` bounds what is held.
 */
const ONE_TRIP = { highWaterMarkBytes: 64 * 1024 * 1024 };
/** Serial counters reserved per durable write of m!serial-lease. */
const SERIAL_LEASE = 1024;

const K = {
  node: (name: string) => 'n!' + name,
  state: (state: NodeState, name: string) => `s!${state}!${name}`,
  group: (group: string, name: string) => `g!${group}!${name}`,
  history: (name: string, seq: number, rev: number) => `h!${name}!${hex16(seq)}!${hex16(rev)}`,
  event: (seq: number) => 'e!' + hex16(seq),
  serial: (counter: number) => 'sn!' + hex16(counter),
  revocation: (serial: string) => 'rv!' + serial,
  token: (id: string) => 't!' + id,
  preapproval: (name: string) => 'pa!' + name,
  /** `id`: banId(kind, value). */
  ban: (id: string) => 'b!' + id,
  counts: 'm!counts',
  groups: 'm!groups',
  installMode: 'm!install-mode',
  id: 'm!id',
  serialLease: 'm!serial-lease',
};

/** The latest record of a name as this process knows it: enough to check and to archive it. */
interface Current {
  rev: number;
  state: NodeState;
  /** The group the record names, if any: what its g! index key is. */
  group: string | undefined;
  /** The value of its s! index key (indexValue). */
  idx: string;
  /** The record as stored (archived as is, normalised when read back). */
  json: string;
}

interface Batch {
  ops: Op[];
  /**
   * Puts of whole-state keys (counts, a token, install mode): when several queued changes write one
   * such key, the group write keeps only the last value, which holds all of them.
   */
  state?: Map<string, string>;
  events: MusterEvent[];
  /** Makes the change visible to readers; called once it is durable. */
  land: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const isWaiting = (state: NodeState): state is WaitingState =>
  (WAITING_STATES as readonly NodeState[]).includes(state);

/** The value of a record's s! key: its WaitingEntry (less the name, the key's) in a waiting state. */
function indexValue(rec: NodeRecord): string {
  if (!isWaiting(rec.state)) return '';
  const { enteredAt, address } = waitingEntry(rec);
  return JSON.stringify(address === undefined ? { at: enteredAt } : { at: enteredAt, a: address });
}

const zeroCounts = (): Record<NodeState, number> =>
  Object.fromEntries(NODE_STATES.map((s) => [s, 0])) as Record<NodeState, number>;

/** The m!groups value: groups by name, each with its count (groups at zero are left out). */
const groupsJson = (m: Map<string, number>): string =>
  JSON.stringify(Object.fromEntries([...m.keys()].sort().map((g) => [g, m.get(g)!])));

export class LevelRegistry implements Registry {
  readonly backend = 'level';
  private readonly db: Level<string, string>;
  private readonly eventRetention: number;
  private readonly now: () => number;
  private id: string | undefined;
  private idWrite: Promise<string> | undefined;

  // The state as queued: what the next change is checked against and writes on top of.
  private queuedCounts = zeroCounts();
  private queuedGroups = new Map<string, number>();
  private queuedSeq = 0;
  private readonly queuedTokens = new Map<string, TokenRecord>();
  private queuedInstallMode: InstallModeState = { ...INSTALL_MODE_OFF };
  private queuedPreapprovals = new Map<string, Preapproval>();
  /** Node records queued but not yet durable, by name. */
  private readonly pending = new Map<string, Current>();

  // The state as durable: what reads return.
  private landedCounts = zeroCounts();
  private landedGroups = new Map<string, number>();
  private landedSeq = 0;
  private readonly landedTokens = new Map<string, TokenRecord>();
  private landedInstallMode: InstallModeState = { ...INSTALL_MODE_OFF };
  private landedPreapprovals = new Map<string, Preapproval>();
  /** Bans are never a precondition: only their durable state is kept. */
  private landedBans = new Map<string, Ban>();

  private serialCounter = 0;
  private serialCeiling = 0;
  private leasing: Promise<void> | undefined;

  private queue: Batch[] = [];
  private writing: Promise<void> | undefined;
  private failed: unknown;
  private readonly onFatal: ((err: unknown) => void) | undefined;
  private readonly log: RegistryOptions['log'];
  private closing = false;
  private closed: Promise<void> | undefined;
  private readonly delivery = new EventDelivery();

  private constructor(dir: string, opts: RegistryOptions) {
    this.eventRetention = opts.eventRetention ?? DEFAULT_EVENT_RETENTION;
    this.now = opts.now ?? Date.now;
    this.onFatal = opts.onFatal;
    this.log = opts.log;
    // leveldb's default table cache (classic-level maxOpenFiles 1000): each open table is mmapped,
    // so the pages a read touches count in RSS as RssFile. They are clean pages of the page cache
    // (read() would leave the same pages there, counted by a cgroup all the same) that the kernel
    // drops under pressure. Capping maxOpenFiles at 40 kept RssFile at ~48 MB on 1M records under
    // random reads, against ~690 MB, but made a read of an existing record cost 6.4 x the CPU (375
    // against 58 us: tables reopened, their index and filter blocks read again) and changed nothing
    // for absent names (bloom filters). Not capped: the registrar reads records (renewals, polls,
    // acks) far more often than an operator reads RSS; docs/benchmarks.md has the numbers and says
    // to watch RssAnon.
    this.db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  }

  /** Opens (creating if need be) the store in `dir`. Reads a few keys, never the whole store. */
  static async open(dir: string, opts: RegistryOptions = {}): Promise<LevelRegistry> {
    const r = new LevelRegistry(dir, opts);
    await r.db.open();
    try {
      await r.load();
    } catch (err) {
      await r.db.close();
      throw err;
    }
    return r;
  }

  private async load(): Promise<void> {
    const [counts, installMode, id, lease, groups] = await this.db.getMany([
      K.counts,
      K.installMode,
      K.id,
      K.serialLease,
      K.groups,
    ]);
    if (counts) this.landedCounts = { ...zeroCounts(), ...(JSON.parse(counts) as Record<NodeState, number>) };
    if (groups) this.landedGroups = new Map(Object.entries(JSON.parse(groups) as Record<string, number>));
    this.queuedGroups = new Map(this.landedGroups);
    if (installMode) this.landedInstallMode = JSON.parse(installMode) as InstallModeState;
    this.id = id === undefined ? undefined : (JSON.parse(id) as string);
    for await (const v of this.db.values({ gt: 't!', lt: 't!' + END })) {
      const t = JSON.parse(v) as TokenRecord;
      this.landedTokens.set(t.id, t);
      this.queuedTokens.set(t.id, t);
    }
    for await (const v of this.db.values({ gt: 'pa!', lt: 'pa!' + END })) {
      const p = JSON.parse(v) as Preapproval;
      this.landedPreapprovals.set(p.name, p);
    }
    this.queuedPreapprovals = new Map(this.landedPreapprovals);
    for await (const v of this.db.values({ gt: 'b!', lt: 'b!' + END })) {
      const b = JSON.parse(v) as Ban;
      this.landedBans.set(banId(b.kind, b.value), b);
    }
    this.queuedCounts = { ...this.landedCounts };
    this.queuedInstallMode = this.landedInstallMode;
    await this.fillWaitingIndex();
    this.landedSeq = this.queuedSeq = await this.lastHex('e!');
    this.serialCounter = Math.max(await this.lastHex('sn!'), lease === undefined ? 0 : Number(lease));
    this.serialCeiling = this.serialCounter;
    await this.trimEvents();
  }

  /**
   * A store written before the waiting states' index carried WaitingEntry values (or bulk-loaded,
   * bulkLoadLevel) holds '' there: each such state's index is filled once, here, from its records,
   * in one synced batch per state (a crash leaves a state all filled or all not). That one open
   * reads every waiting record, as every start's steward sweep did before; later opens read one
   * key per state. listWaiting still reads the record of any entry left '' (never stale: every
   * write of a waiting record writes its value).
   */
  private async fillWaitingIndex(): Promise<void> {
    for (const state of WAITING_STATES) {
      if (this.landedCounts[state] === 0) continue;
      const prefix = K.state(state, '');
      let filled = true;
      for await (const v of this.db.values({ gt: prefix, lt: prefix + END, limit: 1 })) filled = v !== '';
      if (filled) continue;
      // Seconds on a large store (about 9 s for 1M records here): say why this start is slow.
      const started = performance.now();
      this.log?.(
        'info',
        "building the store's index of waiting nodes, once (an earlier muster wrote this store)",
        {
          state,
          nodes: this.landedCounts[state],
        },
      );
      const ops: Op[] = [];
      for await (const k of this.db.keys({ gt: prefix, lt: prefix + END })) {
        const v = this.db.getSync(K.node(k.slice(prefix.length)));
        if (v === undefined) continue;
        const rec = normaliseNode(JSON.parse(v));
        if (rec.state === state) ops.push({ type: 'put', key: k, value: indexValue(rec) });
      }
      await this.db.batch(ops as never, { sync: true } as never);
      this.log?.('info', "the store's index of waiting nodes is built", {
        state,
        entries: ops.length,
        ms: Math.round(performance.now() - started),
      });
    }
  }

  /** The highest 16-hex suffix under a prefix: one key read backwards. */
  private async lastHex(prefix: string): Promise<number> {
    for await (const k of this.db.keys({ gt: prefix, lt: prefix + END, reverse: true, limit: 1 })) {
      return parseInt(k.slice(prefix.length), 16);
    }
    return 0;
  }

  /**
   * Each event deletes the one `eventRetention` before it, so the log stays bounded; after a start
   * with a smaller retention than before, older events are cleared once here (two key reads).
   */
  private async trimEvents(): Promise<void> {
    const keep = this.landedSeq - this.eventRetention;
    if (keep <= 0) return;
    for await (const k of this.db.keys({ gt: 'e!', lt: 'e!' + END, limit: 1 })) {
      if (parseInt(k.slice(2), 16) <= keep) await this.db.clear({ gte: k, lte: K.event(keep) });
    }
  }

  async identity(make: () => string): Promise<string> {
    if (this.id !== undefined) return this.id;
    this.idWrite ??= (async () => {
      const id = make();
      await this.write([{ type: 'put', key: K.id, value: JSON.stringify(id) }], [], () => {
        this.id = id;
      });
      return id;
    })().finally(() => (this.idWrite = undefined));
    return this.idWrite;
  }

  // ---- reads: what is durable ----

  async getNode(name: string): Promise<NodeRecord | undefined> {
    // Synchronous, like the section's read (see current()): a point read costs microseconds, the
    // pool's hand-off more.
    const v = this.db.getSync(K.node(name));
    return v === undefined ? undefined : normaliseNode(JSON.parse(v));
  }

  async listNodes(opts: ListNodesOptions): Promise<NodeRecord[]> {
    if (opts.limit <= 0) return [];
    if (opts.group !== undefined) return this.listGroup(opts.group, opts);
    if (opts.state) {
      // Index and records from one snapshot: a node that changes state meanwhile is not listed
      // under its old state.
      const snapshot = this.db.snapshot();
      try {
        const prefix = K.state(opts.state, '');
        const keys = await this.db
          .keys({
            gt: prefix + (opts.after ?? ''),
            lt: prefix + END,
            limit: opts.limit,
            snapshot,
            ...ONE_TRIP,
          })
          .all();
        const names = keys.map((k) => k.slice(prefix.length));
        const recs = await this.db.getMany(names.map(K.node), { snapshot });
        return recs.filter((v): v is string => v !== undefined).map((v) => normaliseNode(JSON.parse(v)));
      } finally {
        await snapshot.close();
      }
    }
    const values = await this.db
      .values({ gt: K.node(opts.after ?? ''), lt: K.node(END), limit: opts.limit, ...ONE_TRIP })
      .all();
    return values.map((v) => normaliseNode(JSON.parse(v)));
  }

  /**
   * One page of a group's nodes from its index (never a scan of all records), from one snapshot like
   * the state index. With a state as well, the group's index is read a chunk at a time and filtered.
   */
  private async listGroup(group: string, opts: ListNodesOptions): Promise<NodeRecord[]> {
    const snapshot = this.db.snapshot();
    try {
      const prefix = K.group(group, '');
      const out: NodeRecord[] = [];
      let after = opts.after ?? '';
      const chunk = opts.state ? Math.max(opts.limit, 256) : opts.limit;
      for (;;) {
        const keys = await this.db
          .keys({ gt: prefix + after, lt: prefix + END, limit: chunk, snapshot, ...ONE_TRIP })
          .all();
        const names = keys.map((k) => k.slice(prefix.length));
        const recs = await this.db.getMany(names.map(K.node), { snapshot });
        for (const v of recs) {
          if (v === undefined) continue;
          const r = normaliseNode(JSON.parse(v));
          if (opts.state && r.state !== opts.state) continue;
          out.push(r);
          if (out.length === opts.limit) return out;
        }
        if (names.length < chunk) return out;
        after = names[names.length - 1]!;
      }
    } finally {
      await snapshot.close();
    }
  }

  async listGroups(): Promise<GroupCount[]> {
    return [...this.landedGroups.keys()]
      .sort()
      .map((group) => ({ group, count: this.landedGroups.get(group)! }));
  }

  async namesInState(state: NodeState, limit = 10_000): Promise<string[]> {
    if (limit <= 0) return [];
    const prefix = K.state(state, '');
    const keys = await this.db.keys({ gt: prefix, lt: prefix + END, limit, ...ONE_TRIP }).all();
    return keys.map((k) => k.slice(prefix.length));
  }

  /**
   * From the state index alone: its keys and values lie together, a few MB on a million records,
   * where the records of those names lie across the whole store (each read would map in a table
   * page: RSS, issue 12 target 2). An entry whose value is '' (not filled, see fillWaitingIndex)
   * is read from its record.
   */
  async listWaiting(opts: { state: WaitingState; after?: string; limit: number }): Promise<WaitingEntry[]> {
    if (opts.limit <= 0) return [];
    const prefix = K.state(opts.state, '');
    const out: WaitingEntry[] = [];
    const entries = await this.db
      .iterator({ gt: prefix + (opts.after ?? ''), lt: prefix + END, limit: opts.limit, ...ONE_TRIP })
      .all();
    for (const [k, v] of entries) {
      const name = k.slice(prefix.length);
      if (v !== '') {
        const { at, a } = JSON.parse(v) as { at: number; a?: string };
        out.push(a === undefined ? { name, enteredAt: at } : { name, enteredAt: at, address: a });
        continue;
      }
      const rec = this.db.getSync(K.node(name));
      if (rec !== undefined) out.push(waitingEntry(normaliseNode(JSON.parse(rec))));
    }
    return out;
  }

  async history(name: string): Promise<NodeRecord[]> {
    const out: NodeRecord[] = [];
    for await (const v of this.db.values({ gt: `h!${name}!`, lt: `h!${name}!${END}` })) {
      out.push(normaliseNode(JSON.parse(v)));
    }
    return out;
  }

  async counts(): Promise<Record<NodeState, number>> {
    return { ...this.landedCounts };
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    const t = this.landedTokens.get(id);
    return t && plainCopy(t);
  }

  async listTokens(): Promise<TokenRecord[]> {
    return [...this.landedTokens.keys()].sort().map((id) => plainCopy(this.landedTokens.get(id)!));
  }

  async getInstallMode(): Promise<InstallModeState> {
    return plainCopy(this.landedInstallMode);
  }

  async getPreapproval(name: string): Promise<Preapproval | undefined> {
    const p = this.landedPreapprovals.get(name);
    return p && plainCopy(p);
  }

  async listPreapprovals(): Promise<Preapproval[]> {
    return [...this.landedPreapprovals.keys()].sort().map((n) => plainCopy(this.landedPreapprovals.get(n)!));
  }

  async getBan(kind: BanKind, value: string): Promise<Ban | undefined> {
    const b = this.landedBans.get(banId(kind, value));
    return b && plainCopy(b);
  }

  async listBans(): Promise<Ban[]> {
    return [...this.landedBans.keys()].sort().map((k) => plainCopy(this.landedBans.get(k)!));
  }

  /**
   * Counters come from a lease: m!serial-lease is raised (durably) by SERIAL_LEASE at a time before
   * any counter under it is handed out, so a counter allocated and never written (a crash between
   * allocation and issue) is still never handed out again after a restart.
   */
  async allocateSerial(): Promise<number> {
    for (;;) {
      this.assertWritable();
      if (this.serialCounter < this.serialCeiling) return ++this.serialCounter;
      this.leasing ??= (async () => {
        const ceiling = this.serialCounter + SERIAL_LEASE;
        await this.write([{ type: 'put', key: K.serialLease, value: String(ceiling) }], [], () => {
          this.serialCeiling = Math.max(this.serialCeiling, ceiling);
        });
      })().finally(() => (this.leasing = undefined));
      await this.leasing;
    }
  }

  async listSerials(opts: { after?: number; limit?: number } = {}): Promise<SerialRecord[]> {
    const out: SerialRecord[] = [];
    if (opts.limit !== undefined && opts.limit <= 0) return out;
    for await (const [k, v] of this.db.iterator({
      gt: K.serial(opts.after ?? 0),
      lt: 'sn!' + END,
      limit: opts.limit ?? -1,
    })) {
      const s = JSON.parse(v) as { name: string; serial: string };
      out.push({ counter: parseInt(k.slice(3), 16), serial: s.serial, name: s.name });
    }
    return out;
  }

  async listRevocations(): Promise<Revocation[]> {
    const out: Revocation[] = [];
    for await (const [k, v] of this.db.iterator({ gt: 'rv!', lt: 'rv!' + END })) {
      out.push(normaliseRevocation(JSON.parse(v), k.slice(3)));
    }
    return out;
  }

  async isRevoked(serial: string): Promise<boolean> {
    return (await this.db.get(K.revocation(serial))) !== undefined;
  }

  async lastEventSeq(): Promise<number> {
    return this.landedSeq;
  }

  async listEvents(after: number, limit: number): Promise<MusterEvent[]> {
    if (limit <= 0) return [];
    const values = await this.db.values({ gt: K.event(after), lt: 'e!' + END, limit, ...ONE_TRIP }).all();
    return values.map((v) => JSON.parse(v) as MusterEvent);
  }

  watch(fn: (ev: MusterEvent) => void): () => void {
    return this.delivery.watch(fn, this.landedSeq);
  }

  // ---- the one write path ----

  async apply(change: Change): Promise<MusterEvent[]> {
    this.assertWritable();
    // The section runs now, synchronously: changes are checked and queued in call order.
    const { events, done } = this.prepare(change);
    await done;
    return events.map((ev) => plainCopy(ev));
  }

  /**
   * The latest record of a name: queued, else durable. A synchronous read (leveldb's Get from the
   * memtable, block cache or page cache, with bloom filters for absent names): a read through the
   * libuv pool costs two thread hand-offs, more CPU than the read itself (docs/benchmarks.md).
   */
  private current(name: string): Current | undefined {
    const queued = this.pending.get(name);
    if (queued) return queued;
    const v = this.db.getSync(K.node(name));
    if (v === undefined) return undefined;
    const r = normaliseNode(JSON.parse(v));
    return { rev: r.rev, state: r.state, group: r.group, idx: indexValue(r), json: v };
  }

  /**
   * The section: checks every precondition of the change against the latest state (queued
   * included), and only if all hold, turns it into one batch, advances the queued state and queues
   * the batch. A refused change returns before anything is changed. Runs for one change at a time,
   * in call order, so batches are queued in call order. Changes called before close() still pass.
   */
  private prepare(change: Change): { events: MusterEvent[]; done: Promise<void> } {
    if (this.failed) throw this.failed;
    const nodes: { name: string; prev: Current | undefined; next: Current; archivePrev: boolean }[] = [];
    const latest = new Map<string, Current | undefined>();
    for (const w of change.nodes ?? []) {
      const name = w.next.name;
      const prev = latest.has(name) ? latest.get(name) : this.current(name);
      if ((prev?.rev ?? 0) !== w.expectRev) {
        throw new StoreConflict('node', `node ${name} is at rev ${prev?.rev ?? 0}, not ${w.expectRev}`);
      }
      const rec: NodeRecord = { ...w.next, rev: w.expectRev + 1 };
      const next: Current = {
        rev: rec.rev,
        state: rec.state,
        group: rec.group,
        idx: indexValue(rec),
        json: JSON.stringify(rec),
      };
      latest.set(name, next);
      nodes.push({ name, prev, next, archivePrev: w.archivePrev === true });
    }
    const usedToken =
      change.useToken !== undefined
        ? useTokenOnce(this.queuedTokens.get(change.useToken), change.useToken)
        : undefined;
    // Refuses an unknown token now; build() applies it to the same queued state (no await in between).
    if (change.tokenUpdate) updateTokenOnce(this.queuedTokens.get(change.tokenUpdate.id), change.tokenUpdate);
    if (change.installModeWindow !== undefined) {
      expectInstallModeWindow(this.queuedInstallMode, change.installModeWindow);
    }
    const usedInstallMode = change.useInstallMode
      ? useInstallModeOnce(this.queuedInstallMode, change.useInstallMode.since)
      : undefined;
    if (change.usePreapproval) {
      const { name, now } = change.usePreapproval;
      usePreapprovalOnce(this.queuedPreapprovals.get(name), name, now);
    }
    return this.build(change, nodes, usedToken, usedInstallMode);
  }

  private build(
    change: Change,
    nodes: { name: string; prev: Current | undefined; next: Current; archivePrev: boolean }[],
    usedToken: TokenRecord | undefined,
    usedInstallMode: ReturnType<typeof useInstallModeOnce> | undefined,
  ): { events: MusterEvent[]; done: Promise<void> } {
    const ops: Op[] = [];
    let countsChanged = false;
    let groupsChanged = false;
    const pendingHere: [string, Current][] = [];
    for (const { name, prev, next, archivePrev } of nodes) {
      ops.push({ type: 'put', key: K.node(name), value: next.json });
      if (prev && archivePrev) {
        ops.push({ type: 'put', key: K.history(name, this.queuedSeq + 1, prev.rev), value: prev.json });
      }
      if (!prev || prev.state !== next.state) {
        if (prev) {
          ops.push({ type: 'del', key: K.state(prev.state, name) });
          this.queuedCounts[prev.state]--;
        }
        ops.push({ type: 'put', key: K.state(next.state, name), value: next.idx });
        this.queuedCounts[next.state]++;
        countsChanged = true;
      } else if (prev.idx !== next.idx) {
        // Same state, another entry (re-heard from a new address, a new transition time).
        ops.push({ type: 'put', key: K.state(next.state, name), value: next.idx });
      }
      // The group index follows the record (DESIGN "Groups"): the old group's key goes, the new one's comes.
      if (prev?.group !== next.group) {
        if (prev?.group !== undefined) {
          ops.push({ type: 'del', key: K.group(prev.group, name) });
          const left = (this.queuedGroups.get(prev.group) ?? 0) - 1;
          if (left > 0) this.queuedGroups.set(prev.group, left);
          else this.queuedGroups.delete(prev.group);
        }
        if (next.group !== undefined) {
          ops.push({ type: 'put', key: K.group(next.group, name), value: '' });
          this.queuedGroups.set(next.group, (this.queuedGroups.get(next.group) ?? 0) + 1);
        }
        groupsChanged = true;
      }
      this.pending.set(name, next);
      pendingHere.push([name, next]);
    }
    const state = new Map<string, string>();
    if (countsChanged) state.set(K.counts, JSON.stringify(this.queuedCounts));
    if (groupsChanged) state.set(K.groups, groupsJson(this.queuedGroups));

    const tokens: TokenRecord[] = [];
    if (usedToken) tokens.push(usedToken);
    if (change.putToken) tokens.push(plainCopy(change.putToken));
    for (const t of tokens) this.queuedTokens.set(t.id, t);
    if (change.tokenUpdate) {
      const updated = updateTokenOnce(this.queuedTokens.get(change.tokenUpdate.id), change.tokenUpdate);
      tokens.push(updated);
      this.queuedTokens.set(updated.id, updated);
    }
    // Counts of refusals never refuse a change: they apply to the state the change left (no await
    // since the checks: the count is exact under concurrency, like a use).
    const badProof = change.tokenBadProof
      ? tokenBadProofOnce(this.queuedTokens.get(change.tokenBadProof.id), change.tokenBadProof)
      : undefined;
    if (badProof) {
      tokens.push(badProof.next);
      this.queuedTokens.set(badProof.next.id, badProof.next);
    }
    for (const t of tokens) state.set(K.token(t.id), JSON.stringify(this.queuedTokens.get(t.id)));
    let installMode: InstallModeState | undefined;
    if (usedInstallMode) installMode = usedInstallMode.next;
    if (change.setInstallMode) installMode = plainCopy(change.setInstallMode);
    const failure = change.installModeFailure
      ? installModeFailureOnce(installMode ?? this.queuedInstallMode, change.installModeFailure)
      : undefined;
    if (failure) installMode = failure.next;
    if (installMode) {
      this.queuedInstallMode = installMode;
      state.set(K.installMode, JSON.stringify(installMode));
    }
    // Pre-approvals and bans: plain puts and deletes in the batch's own order (never merged across
    // queued changes, so a delete after a put of the same key stays a delete).
    const preapprovals: [string, Preapproval | undefined][] = [];
    if (change.usePreapproval) preapprovals.push([change.usePreapproval.name, undefined]);
    if (change.deletePreapproval !== undefined) preapprovals.push([change.deletePreapproval, undefined]);
    if (change.putPreapproval)
      preapprovals.push([change.putPreapproval.name, plainCopy(change.putPreapproval)]);
    for (const [name, p] of preapprovals) {
      if (p) {
        this.queuedPreapprovals.set(name, p);
        ops.push({ type: 'put', key: K.preapproval(name), value: JSON.stringify(p) });
      } else {
        this.queuedPreapprovals.delete(name);
        ops.push({ type: 'del', key: K.preapproval(name) });
      }
    }
    const bans: [string, Ban | undefined][] = [];
    if (change.deleteBan) bans.push([banId(change.deleteBan.kind, change.deleteBan.value), undefined]);
    if (change.putBan) bans.push([banId(change.putBan.kind, change.putBan.value), plainCopy(change.putBan)]);
    for (const [id, b] of bans) {
      ops.push(
        b ? { type: 'put', key: K.ban(id), value: JSON.stringify(b) } : { type: 'del', key: K.ban(id) },
      );
    }
    if (change.serial) {
      const { counter, name, serial } = change.serial;
      ops.push({ type: 'put', key: K.serial(counter), value: JSON.stringify({ name, serial }) });
      // A counter written that this process did not hand out must not be handed out later either.
      this.serialCounter = Math.max(this.serialCounter, counter);
      this.serialCeiling = Math.max(this.serialCeiling, this.serialCounter);
    }
    if (change.revoke) {
      ops.push({
        type: 'put',
        key: K.revocation(change.revoke.serial),
        value: JSON.stringify(change.revoke),
      });
    }
    const at = new Date(this.now()).toISOString();
    const inputs = [
      ...(change.events ?? []),
      ...(usedInstallMode?.event ? [usedInstallMode.event] : []),
      ...(badProof?.event ? [badProof.event] : []),
      ...(failure?.event ? [failure.event] : []),
    ];
    const events = inputs.map((e): MusterEvent => ({ seq: ++this.queuedSeq, at, ...plainCopy(e) }));
    for (const ev of events) {
      ops.push({ type: 'put', key: K.event(ev.seq), value: JSON.stringify(ev) });
      // The log is history, not state: each event beyond the retention deletes the oldest kept one.
      if (ev.seq > this.eventRetention) ops.push({ type: 'del', key: K.event(ev.seq - this.eventRetention) });
    }

    const counts = countsChanged ? { ...this.queuedCounts } : undefined;
    const groups = groupsChanged ? new Map(this.queuedGroups) : undefined;
    const seq = this.queuedSeq;
    const land = (): void => {
      if (counts) this.landedCounts = counts;
      if (groups) this.landedGroups = groups;
      this.landedSeq = seq;
      for (const t of tokens) this.landedTokens.set(t.id, t);
      if (installMode) this.landedInstallMode = installMode;
      for (const [name, p] of preapprovals) {
        if (p) this.landedPreapprovals.set(name, p);
        else this.landedPreapprovals.delete(name);
      }
      for (const [id, b] of bans) {
        if (b) this.landedBans.set(id, b);
        else this.landedBans.delete(id);
      }
      for (const [name, cur] of pendingHere) if (this.pending.get(name) === cur) this.pending.delete(name);
    };
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    this.enqueue({ ops, state, events, land, resolve, reject });
    return { events, done };
  }

  /** Writes ops that no Change carries (identity, serial lease) through the same ordered writer. */
  private write(ops: Op[], events: MusterEvent[], land: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.assertWritable();
      this.enqueue({ ops, events, land, resolve, reject });
    });
  }

  private enqueue(batch: Batch): void {
    if (this.failed) {
      batch.reject(this.failed);
      return;
    }
    this.queue.push(batch);
    this.writing ??= this.flush().finally(() => (this.writing = undefined));
  }

  /** Group commit: everything queued while one batch is written goes into the next single write. */
  private async flush(): Promise<void> {
    while (this.queue.length) {
      const batches = this.queue.splice(0);
      try {
        const ops: Op[] = [];
        const state = new Map<string, string>();
        for (const b of batches) {
          for (const op of b.ops) ops.push(op);
          for (const [key, value] of b.state ?? []) state.set(key, value);
        }
        for (const [key, value] of state) ops.push({ type: 'put', key, value });
        await this.writeDurably(ops);
      } catch (err) {
        // The queued state is now ahead of the disk: refuse every further write (fail stop), and
        // tell the owner, which restarts from what is durable (a reopen reads the disk's truth).
        this.failed = err;
        for (const b of [...batches, ...this.queue.splice(0)]) b.reject(err);
        this.onFatal?.(err);
        return;
      }
      for (const b of batches) b.land();
      for (const b of batches) b.resolve();
      this.delivery.publish(batches.flatMap((b) => b.events));
    }
  }

  /**
   * One atomic batch, fsync'd before it resolves (classic-level honours `sync`; abstract-level's types
   * omit it). The operations go straight to classic-level's batch (`_batch`, the implementation
   * abstract-level's public `batch()` ends in) when it is there: the public wrapper copies every
   * operation and runs its key and value through the encodings and hooks, which for this store's utf8
   * strings and no hooks change nothing, and cost ~0.1 ms of the main thread a join (10 operations or
   * so, in-process profile; issue 12, target 1). Only while the handle is open, as the wrapper checks.
   */
  private writeDurably(ops: Op[]): Promise<void> {
    const db = this.db as unknown as {
      status: string;
      _batch?: (ops: Op[], options: { sync: boolean }) => Promise<void>;
    };
    if (typeof db._batch === 'function' && db.status === 'open') return db._batch(ops, { sync: true });
    return this.db.batch(ops as never, { sync: true } as never);
  }

  private assertWritable(): void {
    if (this.failed) throw this.failed;
    if (this.closing) throw new Error('the registry is closed');
  }

  async close(): Promise<void> {
    this.closed ??= this.shutDown();
    return this.closed;
  }

  private async shutDown(): Promise<void> {
    this.closing = true;
    // Changes already called for were checked and queued (or refused) when called; the queued ones
    // are written: they may be about to be acknowledged.
    while (this.writing) await this.writing;
    this.delivery.drain();
    await this.db.close();
  }
}

/** One slice of a bulk load: written as one batch (see bulkLoadLevel). */
export interface BulkLoadChunk {
  /** Final records, one per name over the whole load; `rev` is stored as given. */
  nodes?: NodeRecord[];
  serials?: SerialRecord[];
  revocations?: Revocation[];
  /** Events in log order; the store numbers them and keeps the newest `eventRetention`, as apply() does. */
  events?: (EventInput & { at: string })[];
}

/**
 * Writes a new store in `dir` from final state, with the keys and values apply() would have left
 * (records, state and group indexes, counters, serials, revocations, the retained events, tokens,
 * registrar id, serial lease): for benchmarks on a million records, where one apply() per
 * transition takes minutes. The waiting states' index values are left '' (the layout of the stores
 * this was first written for): the first open fills them (LevelRegistry.fillWaitingIndex). Each
 * chunk is one unsynced batch; the counters go last in one fsync'd
 * batch, so a store cut short by a crash has no m!id and is refused by the caller's check, never
 * opened half-built as if whole. Refuses a directory that already holds a store.
 */
export async function bulkLoadLevel(
  dir: string,
  opts: { id: string; tokens?: TokenRecord[]; eventRetention?: number },
  chunks: Iterable<BulkLoadChunk> | AsyncIterable<BulkLoadChunk>,
): Promise<void> {
  const retention = opts.eventRetention ?? DEFAULT_EVENT_RETENTION;
  const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  await db.open();
  try {
    for await (const _ of db.keys({ limit: 1 })) throw new Error(`${dir} already holds a store`);
    const counts = zeroCounts();
    const groups = new Map<string, number>();
    let seq = 0;
    let maxCounter = 0;
    // The newest `retention` events (a ring): what the per-event trim of apply() leaves.
    const kept: string[] = new Array<string>(Math.max(retention, 0));
    for await (const c of chunks) {
      const ops: Op[] = [];
      for (const rec of c.nodes ?? []) {
        ops.push({ type: 'put', key: K.node(rec.name), value: JSON.stringify(rec) });
        ops.push({ type: 'put', key: K.state(rec.state, rec.name), value: '' });
        counts[rec.state]++;
        if (rec.group !== undefined) {
          ops.push({ type: 'put', key: K.group(rec.group, rec.name), value: '' });
          groups.set(rec.group, (groups.get(rec.group) ?? 0) + 1);
        }
      }
      for (const { counter, name, serial } of c.serials ?? []) {
        ops.push({ type: 'put', key: K.serial(counter), value: JSON.stringify({ name, serial }) });
        maxCounter = Math.max(maxCounter, counter);
      }
      for (const r of c.revocations ?? [])
        ops.push({ type: 'put', key: K.revocation(r.serial), value: JSON.stringify(r) });
      for (const { at, ...e } of c.events ?? []) {
        seq++;
        if (retention > 0) kept[seq % retention] = JSON.stringify({ seq, at, ...e });
      }
      if (ops.length) await db.batch(ops as never);
    }
    let events: Op[] = [];
    for (let s = Math.max(1, seq - retention + 1); s <= seq; s++) {
      events.push({ type: 'put', key: K.event(s), value: kept[s % retention]! });
      if (events.length === 10_000 || s === seq) {
        await db.batch(events as never);
        events = [];
      }
    }
    const ops: Op[] = [];
    for (const t of opts.tokens ?? [])
      ops.push({ type: 'put', key: K.token(t.id), value: JSON.stringify(t) });
    ops.push({ type: 'put', key: K.counts, value: JSON.stringify(counts) });
    if (groups.size) ops.push({ type: 'put', key: K.groups, value: groupsJson(groups) });
    if (maxCounter > 0) {
      const lease = Math.ceil(maxCounter / SERIAL_LEASE) * SERIAL_LEASE;
      ops.push({ type: 'put', key: K.serialLease, value: String(lease) });
    }
    ops.push({ type: 'put', key: K.id, value: JSON.stringify(opts.id) });
    await db.batch(ops as never, { sync: true } as never);
  } finally {
    await db.close();
  }
}
