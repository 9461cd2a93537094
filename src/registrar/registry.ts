/**
 * The node registry: the only module that imports level (CONVENTIONS 5). A narrow interface (read,
 * conditional atomic transition under a per-node lock, indexed scans, watch) so that another backend
 * can replace level later without touching policy or API.
 *
 * Key layout (all strings, values JSON):
 *   n!<name>                 node record (the current one for this name)
 *   s!<state>!<name>         index by state ('' value)
 *   h!<name>!<seq>           an earlier record of this name (removed or rejected, then replaced)
 *   e!<seq:16 hex>           event, seq monotonic
 *   sn!<counter:16 hex>      serial allocated to a certificate -> {name, serial}
 *   rv!<serial>              revoked serial -> {name, at}
 *   t!<id>                   join token
 *   m!counts                 number of nodes in each state
 *   m!install-mode           install mode state
 *   m!id                     registrar id
 *
 * Counters, sequence numbers and serials are held in memory, loaded at open with reverse range reads
 * of one key (never a full scan: DEVELOPERS "Targets"), and written in the same batch as the change
 * they count. Every batch is written with sync (fsync) through one group-commit writer, in the order
 * the changes were made, so a crash at any instant leaves a prefix of the changes; nothing is
 * reported to a client before its batch is durable (DESIGN "Exactly once").
 */
import { EventEmitter } from 'node:events';
import { Level } from 'level';

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

export type AdmissionRule = 'token' | 'install-mode' | 'approval' | 'refused' | 'removed';

export interface Decision {
  rule: AdmissionRule;
  /** For a person: which token, which install-mode window, who approved, why refused. */
  detail: string;
  at: string;
}

export interface NodeRecord {
  name: string;
  state: NodeState;
  /** Key fingerprint: base64url SHA-256 of the SPKI. */
  key: string;
  /** SPKI DER, base64. */
  spki: string;
  role: string;
  /** The cluster the node asked for ('' for any). */
  cluster: string;
  channel: 'http' | 'mdns';
  addresses: string[];
  /** Why the node was let in, or not (DESIGN "Node record"). */
  decision?: Decision;
  /** Why it waits (pending only). */
  pendingReason?: string;
  times: Partial<Record<NodeState, string>>;
  lastSeen: string;
  group?: string;
  tokenId?: string;
  serial?: string;
  certificate?: string;
  notAfter?: string;
  issuedAt?: string;
}

export type EventType = NodeState | 'conflict' | 'install-mode' | 'token' | 'group';

export interface MusterEvent {
  seq: number;
  at: string;
  type: EventType;
  name?: string;
  detail?: Record<string, unknown>;
}

export type EventInput = Omit<MusterEvent, 'seq' | 'at'>;

export type BatchOp = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

export interface NodeChange {
  prev?: NodeRecord | undefined;
  next: NodeRecord;
  /** Keep prev under h!<name>!<seq> (the name passes to another key). */
  archivePrev?: boolean;
}

const hex16 = (n: number): string => n.toString(16).padStart(16, '0');

/** About 60 MB of events; a node's record keeps its own transition times and admission decision. */
export const DEFAULT_EVENT_RETENTION = 200_000;

export class Registry extends EventEmitter {
  private readonly db: Level<string, unknown>;
  private counts: Record<NodeState, number> = Object.fromEntries(NODE_STATES.map((s) => [s, 0])) as Record<
    NodeState,
    number
  >;
  private eventSeq = 0;
  private serialCounter = 0;
  private readonly locks = new Map<string, Promise<unknown>>();
  private queue: { ops: BatchOp[]; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private writing = false;
  private failed: unknown;

  /** Events kept: each new event beyond this deletes the oldest, in the same batch (bounded store). */
  readonly eventRetention: number;

  private constructor(dir: string, opts: { eventRetention?: number }) {
    super();
    this.setMaxListeners(0);
    this.eventRetention = opts.eventRetention ?? DEFAULT_EVENT_RETENTION;
    this.db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
  }

  static async open(dir: string, opts: { eventRetention?: number } = {}): Promise<Registry> {
    const r = new Registry(dir, opts);
    await r.db.open();
    const counts = (await r.db.get('m!counts')) as Record<NodeState, number> | undefined;
    if (counts) r.counts = { ...r.counts, ...counts };
    r.eventSeq = await r.lastHex('e!');
    r.serialCounter = await r.lastHex('sn!');
    return r;
  }

  private async lastHex(prefix: string): Promise<number> {
    for await (const k of this.db.keys({ gt: prefix, lt: prefix + '~', reverse: true, limit: 1 })) {
      return parseInt(k.slice(prefix.length), 16);
    }
    return 0;
  }

  async close(): Promise<void> {
    // Let queued batches finish: they may hold acknowledged-to-be changes.
    while (this.writing || this.queue.length) await new Promise((r) => setTimeout(r, 5));
    await this.db.close();
  }

  /** Serialises work on one node name (CONVENTIONS 5: "decided in exactly one place, serialised per node"). */
  async lock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chain = prev.then(() => mine);
    this.locks.set(name, chain);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(name) === chain) this.locks.delete(name);
    }
  }

  async getNode(name: string): Promise<NodeRecord | undefined> {
    return (await this.db.get('n!' + name)) as NodeRecord | undefined;
  }

  async get<T>(key: string): Promise<T | undefined> {
    return (await this.db.get(key)) as T | undefined;
  }

  countByState(): Record<NodeState, number> {
    return { ...this.counts };
  }

  /** Allocates the next serial counter value; never reused (the highest written is found at open). */
  nextSerialCounter(): number {
    return ++this.serialCounter;
  }

  serialOp(counter: number, name: string, serial: string): BatchOp {
    return { type: 'put', key: 'sn!' + hex16(counter), value: { name, serial } };
  }

  /**
   * Commits node changes, extra ops and events as one atomic, durable batch. Everything is computed
   * synchronously (counters, seq numbers) before the first await, so batches land in the order
   * their changes were made. Emits the events once durable.
   */
  async commit(changes: NodeChange[], events: EventInput[], extra: BatchOp[] = []): Promise<MusterEvent[]> {
    if (this.failed) throw this.failed;
    const ops: BatchOp[] = [...extra];
    let countsChanged = false;
    for (const { prev, next, archivePrev } of changes) {
      ops.push({ type: 'put', key: 'n!' + next.name, value: next });
      if (prev && archivePrev) {
        ops.push({ type: 'put', key: `h!${prev.name}!${hex16(this.eventSeq + 1)}`, value: prev });
      }
      if (!prev || prev.state !== next.state) {
        if (prev) {
          ops.push({ type: 'del', key: `s!${prev.state}!${prev.name}` });
          this.counts[prev.state]--;
        }
        ops.push({ type: 'put', key: `s!${next.state}!${next.name}`, value: '' });
        this.counts[next.state]++;
        countsChanged = true;
      }
    }
    if (countsChanged) ops.push({ type: 'put', key: 'm!counts', value: { ...this.counts } });
    const at = new Date().toISOString();
    const evs = events.map((e) => ({ seq: ++this.eventSeq, at, ...e }));
    for (const ev of evs) {
      ops.push({ type: 'put', key: 'e!' + hex16(ev.seq), value: ev });
      // The event log is history, not state (records keep their own times and decisions): keep the
      // newest eventRetention events. Deleting a key that is already gone is harmless.
      if (ev.seq > this.eventRetention) ops.push({ type: 'del', key: 'e!' + hex16(ev.seq - this.eventRetention) });
    }
    await this.write(ops);
    for (const ev of evs) {
      this.emit('event', ev);
      if (ev.name) this.emit('node:' + ev.name, ev);
    }
    return evs;
  }

  /** Writes ops that change no node (tokens, install mode) with their events. */
  async commitOps(ops: BatchOp[], events: EventInput[] = []): Promise<MusterEvent[]> {
    return this.commit([], events, ops);
  }

  private write(ops: BatchOp[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ops, resolve, reject });
      if (!this.writing) void this.flush();
    });
  }

  /** Group commit: every batch queued while one is being written goes into the next single write. */
  private async flush(): Promise<void> {
    this.writing = true;
    while (this.queue.length) {
      const items = this.queue.splice(0);
      try {
        // classic-level honours `sync` (fsync before the callback); abstract-level's types omit it.
        await this.db.batch(items.flatMap((i) => i.ops) as never, { sync: true } as never);
        for (const i of items) i.resolve();
      } catch (err) {
        // In-memory counters now disagree with the store: refuse all further writes (fail stop).
        this.failed = err;
        for (const i of items) i.reject(err);
        for (const i of this.queue.splice(0)) i.reject(err);
      }
    }
    this.writing = false;
  }

  /** One page of nodes, by name, optionally of one state (an index read, never a full scan). */
  async listNodes(opts: { state?: NodeState; after?: string; limit: number }): Promise<NodeRecord[]> {
    if (opts.state) {
      const prefix = `s!${opts.state}!`;
      const names: string[] = [];
      for await (const k of this.db.keys({
        gt: prefix + (opts.after ?? ''),
        lt: prefix + '~',
        limit: opts.limit,
      })) {
        names.push(k.slice(prefix.length));
      }
      const recs = await this.db.getMany(names.map((n) => 'n!' + n));
      return recs.filter((r): r is NodeRecord => r !== undefined);
    }
    const out: NodeRecord[] = [];
    for await (const v of this.db.values({ gt: 'n!' + (opts.after ?? ''), lt: 'n!~', limit: opts.limit })) {
      out.push(v as NodeRecord);
    }
    return out;
  }

  async namesInState(state: NodeState, limit = 10_000): Promise<string[]> {
    const prefix = `s!${state}!`;
    const names: string[] = [];
    for await (const k of this.db.keys({ gt: prefix, lt: prefix + '~', limit })) names.push(k.slice(prefix.length));
    return names;
  }

  async history(name: string): Promise<NodeRecord[]> {
    const out: NodeRecord[] = [];
    for await (const v of this.db.values({ gt: `h!${name}!`, lt: `h!${name}!~` })) out.push(v as NodeRecord);
    return out;
  }

  lastEventSeq(): number {
    return this.eventSeq;
  }

  async listEvents(after: number, limit: number): Promise<MusterEvent[]> {
    const out: MusterEvent[] = [];
    for await (const v of this.db.values({ gt: 'e!' + hex16(after), lt: 'e!~', limit })) out.push(v as MusterEvent);
    return out;
  }

  async scanPrefix<T>(prefix: string, limit = 100_000): Promise<T[]> {
    const out: T[] = [];
    for await (const v of this.db.values({ gt: prefix, lt: prefix + '~', limit })) out.push(v as T);
    return out;
  }
}
