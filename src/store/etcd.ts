/**
 * The registry on etcd (DESIGN "Store backends": several registrars share one registry; exactly once
 * by etcd transactions). The only module that imports etcd3 (CONVENTIONS 5); the key layout below is
 * private to this file, under a prefix (default `/muster/`) so that several registries can share one
 * etcd cluster.
 *
 * Key layout (under the prefix; values JSON unless said otherwise):
 *   n/<name>                        current node record of a name
 *   s/<state>/<name>                index by state ('' value); counts() counts these keys
 *   g/<group>/<name>                index by group ('' value; only records that name a group)
 *   gc/<group>                      number of current records that name the group (decimal; absent: 0)
 *   h/<name>/<slot:16 hex>/<rev:16 hex>
 *                                   an earlier record of the name (archivePrev), oldest first (slot:
 *                                   the revision the name's record was read at, x 256)
 *   q/<writer>/<n:16 hex>           the events of one commit, staged (JSON array, unnumbered): event
 *                                   i of it is number create_revision x 256 + i; the watched log
 *   e/<seq:16 hex>                  event, indexed from q/ by a later transaction; the newest
 *                                   `eventRetention` kept
 *   sn/<counter:16 hex>             serial issued -> {name, serial}
 *   rv/<serial>                     revoked serial
 *   t/<id>                          join token
 *   pa/<name>                       pre-approval of a name
 *   b/<kind>!<value>                ban of a name or a key
 *   m/install-mode                  install mode state
 *   m/id                            registrar id (created if absent)
 *   m/last                          the highest indexed event number (16 hex: compared as bytes)
 *   m/seq                           registries written before events were numbered by revision: their
 *                                   last event number (decimal; read, never written)
 *   m/serial-lease                  serial counters up to here may have been handed out (decimal)
 *
 * Exactly once across registrars (DESIGN "Exactly once"): apply() is optimistic concurrency over
 * etcd's multi-version store. A group of queued changes reads every key its preconditions depend on
 * (the node records, the token, install mode, the pre-approval), checks the preconditions in
 * memory with the same functions as the other backends (common.ts), and commits ONE etcd transaction
 * whose compares say "each of those keys still has the mod_revision I read" (0: still absent, which
 * is create-if-absent) and whose success branch holds every put and delete of the group. etcd applies
 * it atomically through raft, so it is durable on a quorum when it answers. If another registrar wrote
 * one of those keys meanwhile, nothing is written, the transaction's failure branch reads the group's
 * keys instead, and the group is decided again on them. (A group whose keys this process saw lately
 * skips the first read and decides on what it saw: the compares make that safe, and a refusal, which
 * has no compare, is decided again on a fresh read.) A token's use count and install mode's window
 * count are thereby counters advanced by compare-and-set, and two registrars never both see "the
 * name is free".
 *
 * Events take no counter (issue 12: a counter every commit of every registrar advanced made two
 * registrars' commits conflict whatever they decided). A commit puts its events, unnumbered, under a
 * key of its own writer (q/), compared by nobody; their numbers are the commit's etcd revision x 256
 * plus their place in it: unique, increasing in commit order across registrars, with gaps (DESIGN
 * "monotonic"; `events --after N` and watches resume from any number). Every registrar watches q/.
 * The writer's next transaction (its next commit, or one of its own when nothing follows) copies
 * them to e/<seq> and deletes the staged key in one step, so a read of e/ and q/ at one revision
 * lists each event once, in order; events staged by a registrar that stopped first are indexed by
 * the next one to open. The log is trimmed to the retention every so many events (a count of e/).
 *
 * Changes queued by one process are grouped (group commit, up to MAX_GROUP changes and about
 * MAX_OPS keys per transaction, below etcd's default --max-txn-ops 128) and land in call order.
 * Serial counters come from leases of SERIAL_LEASE taken by compare-and-set on m/serial-lease, so two
 * registrars never hand out the same counter. Events reach watchers through an etcd watch on e/: every
 * registrar hears the events of all (long polls answered across registrars).
 *
 * etcd unreachable is transient (unlike a failed local disk write): a call fails with
 * `store_unavailable` (503, Retry-After) and the registrar goes on; onFatal is never called. Every
 * call has a deadline (callTimeoutMs). A transaction is atomic: a call that fails has written all of
 * its change or none of it (when the answer was lost, the caller's retry meets its own write, which
 * exactly once answers the same way).
 */
import { randomBytes } from 'node:crypto';
import {
  Etcd3,
  type IKeyValue,
  type IRequestOp,
  type ICompare,
  type ITxnResponse,
  type Watcher,
} from 'etcd3';
import { MusterError } from '../common/errors.js';
import {
  type Ban,
  type BanKind,
  type Preapproval,
  DEFAULT_EVENT_RETENTION,
  INSTALL_MODE_OFF,
  NODE_STATES,
  StoreConflict,
  isStoreConflict,
  type Change,
  type GroupCount,
  type InstallModeState,
  type ListNodesOptions,
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
  waitingEntry,
} from './registry.js';
import {
  banId,
  EventDelivery,
  expectInstallModeWindow,
  normaliseNode,
  normaliseRevocation,
  installModeFailureOnce,
  tokenBadProofOnce,
  updateTokenOnce,
  useInstallModeOnce,
  usePreapprovalOnce,
  useTokenOnce,
} from './common.js';

export interface EtcdSpec {
  /** host:port of each etcd member (plain http; TLS is not supported yet). */
  endpoints: string[];
  /** Key prefix of this registry (default `/muster/`). */
  prefix?: string;
  /**
   * Deadline of each etcd call, its retries on other members included (default 5 s): a store call
   * never hangs, and a registrar answers 503 soon when etcd has no quorum.
   */
  callTimeoutMs?: number;
}

export const DEFAULT_ETCD_PREFIX = '/muster/';
/**
 * A healthy etcd answers in milliseconds and elects a new leader in about a second (its default
 * timeouts); a try on a member that cannot answer is given up after MAX_TRY_MS for another member.
 */
export const DEFAULT_CALL_TIMEOUT_MS = 5000;
const MAX_TRY_MS = 2000;
/** What Retry-After says when etcd cannot be reached (seconds): an election takes about a second. */
const UNAVAILABLE_RETRY_S = 2;
const SERIAL_LEASE = 1024;
const MAX_GROUP = 32;
/**
 * Operations in one etcd transaction: keys written or compared before a group is cut, and reads
 * per transaction (etcd refuses more than --max-txn-ops, 128 by default, in either branch).
 */
const MAX_OPS = 100;
/** etcd's default --max-txn-ops: operations in one branch of a transaction, reads carried along included. */
const TXN_OPS = 128;
/** Keys whose last seen value a commit may decide on without reading it first (see `known`). */
const KNOWN_KEYS = 4096;
/**
 * Event numbers per etcd revision: the i-th event of the transaction at revision R is R * 256 + i
 * (a group is cut before it holds more). Unique and increasing in commit order with no counter to
 * advance; R < 2^45 keeps every number exact in a double and within the admin API's 15 digits.
 */
const EVENTS_PER_REV = 256;
/**
 * How long staged events wait for a commit to carry them to their index before a transaction of
 * their own does (a registrar between joins: one call fewer per commit when the next comes soon).
 */
const FLUSH_DELAY_MS = 100;

/** An event as decided, numbered once its transaction's revision is known. */
type Unnumbered = Omit<MusterEvent, 'seq'>;
/** Events of one commit, staged under `key` until they are indexed under e/ (see indexOps()). */
interface Staged {
  key: string;
  events: MusterEvent[];
}

/** `items` in slices of at most `n`. */
function slices<T>(items: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += n) out.push(items.slice(i, i + n));
  return out;
}
/** Rounds of a group lost to other registrars' writes before giving up (503: retry later). */
const MAX_ROUNDS = 200;

const hex16 = (n: number): string => n.toString(16).padStart(16, '0');

/**
 * What this process's etcd registries asked of etcd, for the scale bench (calls and lost rounds per
 * join): counters only, never keys or values.
 */
export interface EtcdStats {
  /** etcd calls (each try of call(): reads, commits, leases, lists). */
  calls: number;
  /** Commit transactions sent (groups of changes, with writes). */
  commits: number;
  /** Commits that lost their compare to another writer and were decided again. */
  lost: number;
  /** Changes that landed. */
  changes: number;
}
const STATS: EtcdStats = { calls: 0, commits: 0, lost: 0, changes: 0 };
/** A copy of this process's counters (src/bench/child.ts reports them to the scale bench). */
export function etcdStats(): EtcdStats {
  return { ...STATS };
}

const K = {
  node: (name: string) => 'n/' + name,
  state: (state: NodeState, name: string) => `s/${state}/${name}`,
  group: (group: string, name: string) => `g/${group}/${name}`,
  groupCount: (group: string) => 'gc/' + group,
  history: (name: string, seq: number, rev: number) => `h/${name}/${hex16(seq)}/${hex16(rev)}`,
  event: (seq: number) => 'e/' + hex16(seq),
  serial: (counter: number) => 'sn/' + hex16(counter),
  revocation: (serial: string) => 'rv/' + serial,
  token: (id: string) => 't/' + id,
  preapproval: (name: string) => 'pa/' + name,
  ban: (id: string) => 'b/' + id,
  staged: (writer: string, n: number) => `q/${writer}/${hex16(n)}`,
  installMode: 'm/install-mode',
  id: 'm/id',
  seq: 'm/seq',
  last: 'm/last',
  serialLease: 'm/serial-lease',
};

/** The end of the range of keys that start with `prefix` (etcd's "prefix + 1"). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // every key
}

/** A decision needs a key the group did not read (known only from another key's value): read and decide again. */
class NeedRead extends Error {
  constructor(readonly key: string) {
    super(`etcd registry: ${key} was not read for this group`);
  }
}

/** A key as read at the group's revision: its value (undefined: absent) and mod_revision ('0': absent). */
interface Read {
  value: string | undefined;
  mod: string;
}

/**
 * The state one group of changes sees and writes: the keys read from etcd, with the group's own
 * writes on top. A child overlay holds one change until its preconditions all hold; only then is it
 * merged, so a refused change leaves no trace in the group.
 */
class Overlay {
  readonly writes: Map<string, string | null>;
  /** Keys whose value a decision depended on: the transaction compares their mod_revision. */
  readonly guarded: Set<string>;
  constructor(
    private readonly reads: Map<string, Read>,
    parent?: Overlay,
  ) {
    this.writes = new Map(parent?.writes);
    this.guarded = new Set(parent?.guarded);
  }
  child(): Overlay {
    return new Overlay(this.reads, this);
  }
  merge(child: Overlay): void {
    for (const [k, v] of child.writes) this.writes.set(k, v);
    for (const k of child.guarded) this.guarded.add(k);
  }
  /** The key's value as the group has it; a decision depends on it unless `peek`. */
  get(key: string, peek = false): string | undefined {
    if (this.writes.has(key)) return this.writes.get(key) ?? undefined;
    const r = this.reads.get(key);
    if (!r) throw new NeedRead(key);
    if (!peek) this.guarded.add(key);
    return r.value;
  }
  /** The mod_revision the key was read at ('0': absent), without depending on it. */
  readMod(key: string): number {
    return Number(this.reads.get(key)?.mod ?? 0);
  }
  json<T>(key: string, peek = false): T | undefined {
    const v = this.get(key, peek);
    return v === undefined ? undefined : (JSON.parse(v) as T);
  }
  put(key: string, value: string): void {
    this.writes.set(key, value);
  }
  del(key: string): void {
    this.writes.set(key, null);
  }
}

type ReadBatch = (readonly [
  string,
  { resolve: (v: string | undefined) => void; reject: (err: unknown) => void }[],
])[];

interface Queued {
  change: Change;
  resolve: (events: MusterEvent[]) => void;
  reject: (err: unknown) => void;
}

export class EtcdRegistry implements Registry {
  readonly backend = 'etcd';
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly eventRetention: number;
  private readonly now: () => number;
  private readonly where: string;
  private readonly callTimeoutMs: number;
  private readonly log: NonNullable<RegistryOptions['log']>;
  private id: string | undefined;
  private watcher: Watcher | undefined;
  private readonly delivery = new EventDelivery();
  /** The highest event seq this process has seen committed (its own or heard by the watch). */
  private knownSeq = 0;
  /** The highest event seq passed to watchers. */
  private publishedSeq = 0;
  private queue: Queued[] = [];
  /** This process's name among the writers of staged events (q/<writer>/...): new at each open. */
  private readonly writer = randomBytes(8).toString('hex');
  private stagedCount = 0;
  /** This process's committed events not indexed under e/ yet: the next commit (or flush) does it. */
  private unindexed: Staged[] = [];
  /** Events this process indexed since it last trimmed the log to the retention. */
  private indexedSinceTrim = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushChain: Promise<void> = Promise.resolve();
  /** Single-key reads waiting for the next batch, by key (getValue). */
  private readonly readQueue = new Map<
    string,
    { resolve: (v: string | undefined) => void; reject: (err: unknown) => void }[]
  >();
  private readsRunning = false;
  /**
   * The last value and mod_revision this process saw of recently used keys (its reads, its own
   * writes, the failure branches of its lost commits), at most KNOWN_KEYS. A
   * commit whose keys are all here decides on them without reading first: its compares check every
   * value it depended on, so a stale one only costs a lost round (whose failure branch reads fresh
   * values), never a wrong decision.
   */
  private readonly known = new Map<string, Read>();
  private running: Promise<void> | undefined;
  /** The group being committed: watched events wait for it, so apply() resolves before they are heard. */
  private inflight: Promise<unknown> = Promise.resolve();
  private watchChain: Promise<void> = Promise.resolve();
  private serialNext = 1;
  private serialCeiling = 0;
  private leasing: Promise<void> | undefined;
  private closing = false;
  private closed: Promise<void> | undefined;

  private constructor(spec: EtcdSpec, opts: RegistryOptions) {
    this.log = opts.log ?? (() => undefined);
    this.prefix = spec.prefix ?? DEFAULT_ETCD_PREFIX;
    this.eventRetention = opts.eventRetention ?? DEFAULT_EVENT_RETENTION;
    this.now = opts.now ?? Date.now;
    this.where = spec.endpoints.join(',');
    const timeout = (this.callTimeoutMs = spec.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS);
    this.client = new Etcd3({
      hosts: spec.endpoints.map((e) => `http://${e}`),
      dialTimeout: timeout,
      // A page of node records with their certificates can pass gRPC's default 4 MiB per message.
      grpcOptions: { 'grpc.max_receive_message_length': 64 * 1024 * 1024 },
      // A deadline on every unary call (call() gives each a budget of its own, shared by its tries);
      // the watch stream lives as long as the registry.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    });
  }

  /**
   * Connects, reads where the event log is, trims it to the retention and starts watching it.
   * Fails with store_unavailable when etcd cannot be reached.
   */
  static async open(spec: EtcdSpec, opts: RegistryOptions = {}): Promise<EtcdRegistry> {
    if (spec.endpoints.length === 0) throw new Error('the etcd registry needs at least one endpoint');
    const r = new EtcdRegistry(spec, opts);
    try {
      await r.load();
    } catch (err) {
      r.client.close();
      throw r.unavailable(err);
    }
    return r;
  }

  private async load(): Promise<void> {
    const { events, staged, revision } = await this.readLog();
    this.knownSeq = this.publishedSeq = events;
    // m/last exists before any commit compares it (a value compare on an absent key always fails).
    await this.call((co) =>
      this.client.kv.txn(
        {
          compare: [{ key: this.key(K.last), target: 'Version', result: 'Equal', version: 0 }],
          success: [{ request_put: { key: this.key(K.last), value: Buffer.from(hex16(this.knownSeq)) } }],
        },
        co,
      ),
    );
    // Events staged by a registrar that stopped before indexing them: indexed now (idempotent, so a
    // live writer indexing the same ones meanwhile is harmless).
    while (staged.length) {
      const part = EtcdRegistry.indexable(staged);
      await this.call((co) => this.client.kv.txn({ success: this.indexOps(part) }, co));
    }
    await this.trim();
    await this.startWatch(revision);
  }

  /**
   * Where the event log is: the highest event number (indexed, staged, or the counter of registries
   * written before events were numbered by revision), the staged events, at one revision.
   */
  private async readLog(): Promise<{ events: number; staged: Staged[]; revision: string }> {
    const res = await this.call((co) =>
      this.client.kv.txn(
        {
          success: [
            { request_range: { key: this.key(K.seq) } },
            { request_range: { key: this.key(K.last) } },
            { request_range: { key: this.key('q/'), range_end: prefixEnd(this.key('q/')) } },
          ],
        },
        co,
      ),
    );
    const value = (i: number): string | undefined =>
      res.responses[i]!.response_range.kvs[0]?.value.toString();
    const staged = res.responses[2]!.response_range.kvs.map((kv) => this.stagedOf(kv));
    const events = Math.max(
      Number(value(0) ?? 0),
      parseInt(value(1) ?? '0', 16),
      ...staged.map((st) => st.events.at(-1)?.seq ?? 0),
    );
    return { events, staged, revision: res.header.revision };
  }

  /** A staged key's events, numbered by the revision that created it. */
  private stagedOf(kv: IKeyValue): Staged {
    const base = Number(kv.create_revision) * EVENTS_PER_REV;
    const events = (JSON.parse(kv.value.toString()) as Unnumbered[]).map((e, i): MusterEvent => ({
      seq: base + i,
      ...e,
    }));
    return { key: kv.key.toString().slice(this.prefix.length), events };
  }

  /**
   * The operations that index staged events: each under e/<seq>, the staged key deleted, and m/last
   * raised to the highest (a nested transaction: raised only, whoever indexes last). The same
   * operations twice write the same values: any registrar may index any staged events.
   */
  /** Takes staged events from the front of `list` whose index fits one transaction level (at least one key). */
  private static indexable(list: Staged[]): Staged[] {
    let ops = 1;
    let n = 0;
    while (n < list.length && (n === 0 || ops + list[n]!.events.length + 1 <= MAX_OPS)) {
      ops += list[n]!.events.length + 1;
      n++;
    }
    return list.splice(0, n);
  }

  private indexOps(staged: Staged[]): IRequestOp[] {
    const ops: IRequestOp[] = [];
    let last = 0;
    for (const st of staged) {
      for (const ev of st.events) {
        ops.push({ request_put: { key: this.key(K.event(ev.seq)), value: Buffer.from(JSON.stringify(ev)) } });
        last = Math.max(last, ev.seq);
      }
      ops.push({ request_delete_range: { key: this.key(st.key) } });
    }
    if (last > 0) {
      ops.push({
        request_txn: {
          compare: [
            { key: this.key(K.last), target: 'Value', result: 'Less', value: Buffer.from(hex16(last)) },
          ],
          success: [{ request_put: { key: this.key(K.last), value: Buffer.from(hex16(last)) } }],
          failure: [],
        },
      });
    }
    return ops;
  }

  /**
   * Keeps the newest `eventRetention` indexed events (the log is history, not state): counts e/ and
   * deletes the oldest beyond it, the count and the cut read at one revision so that two registrars
   * trimming at once cut at the same event. Done every so many indexed events (each one when the
   * retention is small), so the log may hold that many more between trims.
   */
  private async trim(): Promise<void> {
    this.indexedSinceTrim = 0;
    const range = { key: this.key('e/'), range_end: prefixEnd(this.key('e/')) };
    const counted = await this.call((co) => this.client.kv.range({ ...range, count_only: true }, co));
    const over = Number(counted.count) - this.eventRetention;
    if (over <= 0) return;
    const oldest = await this.call((co) =>
      this.client.kv.range({ ...range, keys_only: true, limit: over, revision: counted.header.revision }, co),
    );
    const cut = oldest.kvs.at(-1);
    if (!cut) return;
    await this.call((co) =>
      this.client.kv.deleteRange(
        { key: range.key, range_end: Buffer.concat([cut.key, Buffer.from([0])]) },
        co,
      ),
    );
  }

  private get trimEvery(): number {
    return Math.max(1, Math.min(1024, Math.floor(this.eventRetention / 64)));
  }

  /**
   * Watches the event log from just after `revision`. A cut stream (a member down, etcd
   * unreachable) is reconnected by the client, resuming from the last revision it saw: said in the
   * log when it is cut and when it is back, since events of other registrars wait meanwhile. A watch
   * that fails for good ('error': etcd cancelled it, e.g. its revision was compacted away while it
   * was cut) is started again by rewatch(), which first reads what it missed from the log.
   */
  private async startWatch(revision: string): Promise<void> {
    const w = await this.client
      .watch()
      .prefix(this.prefix + 'q/')
      .startRevision(String(Number(revision) + 1))
      .create();
    if (this.closing) {
      await w.cancel().catch(() => undefined);
      return;
    }
    this.watcher = w;
    let cut = false;
    // Each commit's events are one staged key, put once: its puts come in revision order, which is
    // event order (indexing deletes it later; deletes are not events).
    w.on('put', (kv: IKeyValue) => {
      for (const ev of this.stagedOf(kv).events) this.heard(ev);
    });
    w.on('disconnected', (err: Error) => {
      if (cut || this.closing) return;
      cut = true;
      this.log(
        'warn',
        "the watch of the event log in etcd was cut; reconnecting (other registrars' events wait)",
        {
          err: err?.message,
        },
      );
    });
    w.on('connected', () => {
      if (!cut) return;
      cut = false;
      this.log('info', 'the watch of the event log in etcd is back', {});
    });
    w.on('error', (err: Error) => {
      if (this.closing || this.watcher !== w) return;
      this.log('warn', 'the watch of the event log in etcd failed; starting it again', { err: err?.message });
      void w.cancel().catch(() => undefined);
      void this.rewatch();
    });
  }

  /**
   * A new watch after one failed for good: the events after the last one passed on are read from the
   * log (heard() passes each on once), then watched from the revision of that read. Tried again, with
   * a growing pause, until it works or the registry closes.
   */
  private async rewatch(): Promise<void> {
    for (let attempt = 0; !this.closing; attempt++) {
      try {
        const { events, revision } = await this.eventsAfter(this.publishedSeq);
        for (const ev of events) this.heard(ev);
        await this.startWatch(revision);
        this.log('info', 'the watch of the event log in etcd is back', { missed: events.length });
        return;
      } catch (err) {
        if (attempt === 0) {
          this.log('warn', 'the watch of the event log in etcd cannot be started again yet; retrying', {
            err: (err as Error)?.message,
          });
        }
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
      }
    }
  }

  private key(k: string): Buffer {
    return Buffer.from(this.prefix + k);
  }

  private unavailable(err: unknown): unknown {
    if (isStoreConflict(err) || err instanceof MusterError) return err;
    // grpc-js appends a resolver note to its messages: the first part says what happened.
    const msg = ((err as Error)?.message ?? String(err)).replace(/\s*Resolution note:.*$/s, '');
    return new MusterError(
      'store_unavailable',
      `the registry on etcd (${this.where}) cannot be reached: ${msg}`,
      {
        retryAfter: UNAVAILABLE_RETRY_S,
        cause: err,
      },
    );
  }

  /**
   * Runs one etcd call; etcd's failures become store_unavailable. The call and every retry the client
   * makes of it (on another member: one may be down or without a leader) share one budget of
   * callTimeoutMs, each try getting at most half of it (at most MAX_TRY_MS): a dead member costs a
   * try, not the call, and an outage answers 503 within the budget instead of after four full
   * deadlines (issue 11: a join during an outage gets its 503 within a few seconds).
   */
  private async call<T>(fn: (options: { deadline: number }) => Promise<T>): Promise<T> {
    const end = Date.now() + this.callTimeoutMs;
    const tryMs = Math.min(MAX_TRY_MS, Math.ceil(this.callTimeoutMs / 2));
    // etcd3 resolves the options of each try when the try starts (merged over defaultCallOptions),
    // reading the getter then: each try's deadline is taken when it starts, within the budget.
    const options = {
      get deadline(): number {
        return Math.min(Date.now() + tryMs, end);
      },
    };
    STATS.calls++;
    try {
      return await fn(options);
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  /**
   * One key's value. Reads of single keys are coalesced: those asked for while a batch is on its way
   * go together in the next one, one etcd transaction of range requests (a join reads the node, the
   * token, install mode, the pre-approval and the bans one after the other; each a gRPC call of its
   * own cost the registrar more CPU than the rest of the join). Still linearizable: a batch is sent
   * after every read in it was asked for, so it sees every change that resolved before.
   */
  private getValue(k: string): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      const waiting = this.readQueue.get(k);
      if (waiting) waiting.push({ resolve, reject });
      else this.readQueue.set(k, [{ resolve, reject }]);
      // After this tick, so that reads asked for together go together.
      if (!this.readsRunning) {
        this.readsRunning = true;
        queueMicrotask(() => void this.runReads());
      }
    });
  }

  /** Up to `max` queued single-key reads, taken off the queue. */
  private takeReads(max: number): ReadBatch {
    const keys = [...this.readQueue.keys()].slice(0, Math.max(0, max));
    const batch = keys.map((k) => [k, this.readQueue.get(k)!] as const);
    for (const k of keys) this.readQueue.delete(k);
    return batch;
  }

  /** Answers taken reads from the range responses of a transaction, in order. */
  private answerReads(batch: ReadBatch, responses: ITxnResponse['responses']): void {
    batch.forEach(([key, waiters], i) => {
      const kv = responses[i]!.response_range.kvs[0];
      const value = kv?.value.toString();
      this.remember(key, { value, mod: kv?.mod_revision ?? '0' });
      for (const w of waiters) w.resolve(value);
    });
  }

  /** Puts taken reads back on the queue (their transaction failed): the read batches try them again. */
  private requeueReads(batch: ReadBatch): void {
    for (const [key, waiters] of batch) {
      const waiting = this.readQueue.get(key);
      if (waiting) waiting.push(...waiters);
      else this.readQueue.set(key, [...waiters]);
    }
    if (batch.length && !this.readsRunning) {
      this.readsRunning = true;
      queueMicrotask(() => void this.runReads());
    }
  }

  private async runReads(): Promise<void> {
    try {
      while (this.readQueue.size) {
        const batch = this.takeReads(MAX_OPS);
        const keys = batch.map(([k]) => k);
        try {
          const res = await this.call((co) =>
            this.client.kv.txn(
              { success: keys.map((k): IRequestOp => ({ request_range: { key: this.key(k) } })) },
              co,
            ),
          );
          this.answerReads(batch, res.responses);
        } catch (err) {
          for (const [, waiters] of batch) for (const w of waiters) w.reject(err);
        }
      }
    } finally {
      this.readsRunning = false;
    }
  }

  /** Values of the keys under `sub` (after `after`, up to `limit`), in key order. */
  private async rangeOf(
    sub: string,
    o: { after?: string; limit?: number; keysOnly?: boolean; revision?: string } = {},
  ): Promise<{ kvs: IKeyValue[]; revision: string }> {
    const start =
      o.after !== undefined ? Buffer.concat([this.key(sub + o.after), Buffer.from([0])]) : this.key(sub);
    const res = await this.call((co) =>
      this.client.kv.range(
        {
          key: start,
          range_end: prefixEnd(this.key(sub)),
          ...(o.limit !== undefined ? { limit: o.limit } : {}),
          ...(o.keysOnly ? { keys_only: true } : {}),
          ...(o.revision ? { revision: o.revision } : {}),
        },
        co,
      ),
    );
    return { kvs: res.kvs, revision: res.header.revision };
  }

  private async values<T>(sub: string, o: { after?: string; limit?: number } = {}): Promise<T[]> {
    return (await this.rangeOf(sub, o)).kvs.map((kv) => JSON.parse(kv.value.toString()) as T);
  }

  async identity(make: () => string): Promise<string> {
    if (this.id !== undefined) return this.id;
    const id = make();
    const res = await this.call((co) =>
      this.client.kv.txn(
        {
          compare: [{ key: this.key(K.id), target: 'Version', result: 'Equal', version: 0 }],
          success: [{ request_put: { key: this.key(K.id), value: Buffer.from(JSON.stringify(id)) } }],
          failure: [{ request_range: { key: this.key(K.id) } }],
        },
        co,
      ),
    );
    this.id = res.succeeded
      ? id
      : (JSON.parse(res.responses[0]!.response_range.kvs[0]!.value.toString()) as string);
    return this.id;
  }

  // ---- reads: linearizable (etcd's default), so a change that resolved is read back ----

  async getNode(name: string): Promise<NodeRecord | undefined> {
    const v = await this.getValue(K.node(name));
    return v === undefined ? undefined : normaliseNode(JSON.parse(v));
  }

  async listNodes(opts: ListNodesOptions): Promise<NodeRecord[]> {
    if (opts.limit <= 0) return [];
    if (opts.group !== undefined) return this.listGroup(opts.group, opts);
    if (!opts.state) {
      return (
        await this.values<unknown>('n/', { limit: opts.limit, ...(opts.after ? { after: opts.after } : {}) })
      ).map(normaliseNode);
    }
    // The index page, then its records at the same revision: one consistent snapshot, so a node
    // that changes state meanwhile is not listed under its old state.
    const sub = `s/${opts.state}/`;
    const idx = await this.rangeOf(sub, {
      limit: opts.limit,
      keysOnly: true,
      ...(opts.after ? { after: opts.after } : {}),
    });
    if (idx.kvs.length === 0) return [];
    const names = idx.kvs.map((kv) => kv.key.toString().slice(this.prefix.length + sub.length));
    return this.nodesAt(names, idx.revision);
  }

  /** The records of these names as they were at `revision`, in the order given. */
  private async nodesAt(names: string[], revision: string): Promise<NodeRecord[]> {
    const parts = await Promise.all(
      slices(names, MAX_OPS).map((part) =>
        this.call((co) =>
          this.client.kv.txn(
            {
              success: part.map((n): IRequestOp => ({
                request_range: { key: this.key(K.node(n)), revision },
              })),
            },
            co,
          ),
        ),
      ),
    );
    return parts
      .flatMap((res) => res.responses)
      .map((r) => r.response_range.kvs[0])
      .filter((kv): kv is IKeyValue => kv !== undefined)
      .map((kv) => normaliseNode(JSON.parse(kv.value.toString())));
  }

  /**
   * One page of a group's nodes from its index (never a scan of all records), every read at the
   * revision of the first one (one snapshot). With a state as well, the group's index is read a
   * chunk at a time and filtered.
   */
  private async listGroup(group: string, opts: ListNodesOptions): Promise<NodeRecord[]> {
    const sub = `g/${group}/`;
    const out: NodeRecord[] = [];
    const chunk = opts.state ? Math.max(opts.limit, 256) : opts.limit;
    let after = opts.after;
    let revision: string | undefined;
    for (;;) {
      const idx = await this.rangeOf(sub, {
        limit: chunk,
        keysOnly: true,
        ...(after !== undefined ? { after } : {}),
        ...(revision ? { revision } : {}),
      });
      revision ??= idx.revision;
      const names = idx.kvs.map((kv) => kv.key.toString().slice(this.prefix.length + sub.length));
      for (const r of await this.nodesAt(names, revision)) {
        if (opts.state && r.state !== opts.state) continue;
        out.push(r);
        if (out.length === opts.limit) return out;
      }
      if (names.length < chunk) return out;
      after = names[names.length - 1]!;
    }
  }

  /** From the per-group counters (gc/), by group name: one range read, no scan of the records. */
  async listGroups(): Promise<GroupCount[]> {
    const { kvs } = await this.rangeOf('gc/');
    return kvs.map((kv) => ({
      group: kv.key.toString().slice(this.prefix.length + 3),
      count: Number(kv.value.toString()),
    }));
  }

  async namesInState(state: NodeState, limit = 10_000): Promise<string[]> {
    if (limit <= 0) return [];
    const sub = `s/${state}/`;
    const { kvs } = await this.rangeOf(sub, { limit, keysOnly: true });
    return kvs.map((kv) => kv.key.toString().slice(this.prefix.length + sub.length));
  }

  /**
   * From the state index and the records at one revision (listNodes): etcd keeps no entry in its
   * index values. The level backend does, because there a read of every waiting record touches
   * most of a large store's mmapped tables (issue 12 target 2); here records come over the network
   * and cost the registrar no memory beyond the page.
   */
  async listWaiting(opts: { state: WaitingState; after?: string; limit: number }): Promise<WaitingEntry[]> {
    return (await this.listNodes(opts)).map(waitingEntry);
  }

  async history(name: string): Promise<NodeRecord[]> {
    return (await this.values<unknown>(`h/${name}/`)).map(normaliseNode);
  }

  /** Counted in etcd from the state index, all states at one revision: no shared counter to contend on. */
  async counts(): Promise<Record<NodeState, number>> {
    const res = await this.call((co) =>
      this.client.kv.txn(
        {
          success: NODE_STATES.map((s): IRequestOp => ({
            request_range: {
              key: this.key(`s/${s}/`),
              range_end: prefixEnd(this.key(`s/${s}/`)),
              count_only: true,
            },
          })),
        },
        co,
      ),
    );
    return Object.fromEntries(
      NODE_STATES.map((s, i) => [s, Number(res.responses[i]!.response_range.count)]),
    ) as Record<NodeState, number>;
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    const v = await this.getValue(K.token(id));
    return v === undefined ? undefined : (JSON.parse(v) as TokenRecord);
  }

  async listTokens(): Promise<TokenRecord[]> {
    return this.values<TokenRecord>('t/');
  }

  async getInstallMode(): Promise<InstallModeState> {
    const v = await this.getValue(K.installMode);
    return v === undefined ? structuredClone(INSTALL_MODE_OFF) : (JSON.parse(v) as InstallModeState);
  }

  async getPreapproval(name: string): Promise<Preapproval | undefined> {
    const v = await this.getValue(K.preapproval(name));
    return v === undefined ? undefined : (JSON.parse(v) as Preapproval);
  }

  async listPreapprovals(): Promise<Preapproval[]> {
    return this.values<Preapproval>('pa/');
  }

  async getBan(kind: BanKind, value: string): Promise<Ban | undefined> {
    const v = await this.getValue(K.ban(banId(kind, value)));
    return v === undefined ? undefined : (JSON.parse(v) as Ban);
  }

  async listBans(): Promise<Ban[]> {
    return this.values<Ban>('b/');
  }

  /**
   * Counters come from leases: m/serial-lease is raised by SERIAL_LEASE by compare-and-set before
   * any counter under it is handed out, so no two registrars (nor one after a restart) ever hand out
   * the same counter.
   */
  async allocateSerial(): Promise<number> {
    for (;;) {
      this.assertOpen();
      if (this.serialNext <= this.serialCeiling) return this.serialNext++;
      this.leasing ??= this.lease().finally(() => (this.leasing = undefined));
      await this.leasing;
    }
  }

  private async lease(): Promise<void> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const res = await this.call((co) => this.client.kv.range({ key: this.key(K.serialLease) }, co));
      const kv = res.kvs[0];
      const from = kv ? Number(kv.value.toString()) : 0;
      const to = from + SERIAL_LEASE;
      const put = await this.call((co) =>
        this.client.kv.txn(
          {
            compare: [
              {
                key: this.key(K.serialLease),
                target: 'Mod',
                result: 'Equal',
                mod_revision: kv?.mod_revision ?? 0,
              },
            ],
            success: [{ request_put: { key: this.key(K.serialLease), value: Buffer.from(String(to)) } }],
          },
          co,
        ),
      );
      if (put.succeeded) {
        this.remember(K.serialLease, { value: String(to), mod: put.header.revision });
        this.serialNext = from + 1;
        this.serialCeiling = to;
        return;
      }
    }
    throw this.unavailable(new Error('too much contention on the serial lease'));
  }

  async listSerials(opts: { after?: number; limit?: number } = {}): Promise<SerialRecord[]> {
    if (opts.limit !== undefined && opts.limit <= 0) return [];
    const { kvs } = await this.rangeOf('sn/', {
      ...(opts.after !== undefined ? { after: hex16(opts.after) } : {}),
      ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
    });
    return kvs.map((kv) => {
      const s = JSON.parse(kv.value.toString()) as { name: string; serial: string };
      const counter = parseInt(kv.key.toString().slice(this.prefix.length + 3), 16);
      return { counter, serial: s.serial, name: s.name };
    });
  }

  async listRevocations(): Promise<Revocation[]> {
    const { kvs } = await this.rangeOf('rv/');
    return kvs.map((kv) =>
      normaliseRevocation(JSON.parse(kv.value.toString()), kv.key.toString().slice(this.prefix.length + 3)),
    );
  }

  async isRevoked(serial: string): Promise<boolean> {
    return (await this.getValue(K.revocation(serial))) !== undefined;
  }

  async lastEventSeq(): Promise<number> {
    await this.indexOwn();
    const { events } = await this.readLog();
    this.knownSeq = Math.max(this.knownSeq, events);
    return events;
  }

  async listEvents(after: number, limit: number): Promise<MusterEvent[]> {
    if (limit <= 0) return [];
    await this.indexOwn();
    return (await this.eventsAfter(after, limit)).events;
  }

  /**
   * What this process staged is indexed (and the log trimmed when due) before it reads the log:
   * its own reads then see the log as the retention keeps it. Others' staged events are listed
   * from q/ all the same.
   */
  private async indexOwn(): Promise<void> {
    if (this.unindexed.length || this.indexedSinceTrim >= this.trimEvery) await this.flushIndex();
  }

  /**
   * The events after `after`, in order, up to `limit`: the indexed ones (e/) and the staged ones not
   * indexed yet (q/), read at one revision. A staged key and its index never both exist at one
   * revision (indexing writes one and deletes the other in one transaction), so nothing is listed
   * twice, and an event committed after this read has a higher number than any listed.
   */
  private async eventsAfter(
    after: number,
    limit?: number,
  ): Promise<{ events: MusterEvent[]; revision: string }> {
    const res = await this.call((co) =>
      this.client.kv.txn(
        {
          success: [
            {
              request_range: {
                key: Buffer.concat([this.key(K.event(after)), Buffer.from([0])]),
                range_end: prefixEnd(this.key('e/')),
                ...(limit !== undefined ? { limit } : {}),
              },
            },
            { request_range: { key: this.key('q/'), range_end: prefixEnd(this.key('q/')) } },
          ],
        },
        co,
      ),
    );
    const indexed = res.responses[0]!.response_range.kvs.map(
      (kv) => JSON.parse(kv.value.toString()) as MusterEvent,
    );
    const staged = res.responses[1]!.response_range.kvs.flatMap((kv) => this.stagedOf(kv).events).filter(
      (ev) => ev.seq > after,
    );
    const events = staged.length ? [...indexed, ...staged].sort((a, b) => a.seq - b.seq) : indexed;
    return { events: limit !== undefined ? events.slice(0, limit) : events, revision: res.header.revision };
  }

  watch(fn: (ev: MusterEvent) => void): () => void {
    return this.delivery.watch(fn, this.knownSeq);
  }

  /**
   * An event heard by the etcd watch (this registrar's or another's), in revision order, which is
   * sequence order (an event's number is its transaction's revision, then its place in it). It is passed on
   * once the group this process is committing has resolved, so that an apply() resolves before its
   * events are heard.
   */
  private heard(ev: MusterEvent): void {
    this.watchChain = this.watchChain
      .then(() => this.inflight)
      .then(() => {
        // Once each: a watch that resumes after a reconnect may replay what it already delivered.
        if (ev.seq <= this.publishedSeq) return;
        this.publishedSeq = ev.seq;
        this.knownSeq = Math.max(this.knownSeq, ev.seq);
        this.delivery.publish([ev]);
      });
  }

  // ---- the one write path ----

  async apply(change: Change): Promise<MusterEvent[]> {
    this.assertOpen();
    // A copy now: the caller may change its objects once apply() is called.
    const own = structuredClone(change);
    return new Promise<MusterEvent[]>((resolve, reject) => {
      this.queue.push({ change: own, resolve, reject });
      this.kick();
    });
  }

  /**
   * Starts the committer unless it runs. When it ends it looks again: a change queued between its
   * last look at the queue and its end would otherwise wait for the next apply().
   */
  private kick(): void {
    if (this.running || this.queue.length === 0) return;
    this.running = this.run().finally(() => {
      this.running = undefined;
      this.kick();
    });
  }

  private async run(): Promise<void> {
    while (this.queue.length) {
      const group = this.queue.splice(0, MAX_GROUP);
      const done = this.commit(group);
      this.inflight = done.catch(() => undefined);
      await this.inflight;
    }
  }

  /** Keys a change's preconditions read. */
  private static reads(change: Change): string[] {
    const keys = (change.nodes ?? []).map((w) => K.node(w.next.name));
    if (change.useToken !== undefined) keys.push(K.token(change.useToken));
    if (change.tokenBadProof) keys.push(K.token(change.tokenBadProof.id));
    if (change.tokenUpdate) keys.push(K.token(change.tokenUpdate.id));
    if (change.useInstallMode || change.installModeFailure || change.installModeWindow !== undefined) {
      keys.push(K.installMode);
    }
    if (change.usePreapproval) keys.push(K.preapproval(change.usePreapproval.name));
    if (change.serial) keys.push(K.serialLease);
    return keys;
  }

  /**
   * Decides and commits one group: read, check, one transaction; again from the read when another
   * registrar wrote a key the group depends on. Each change of the group resolves with its events or
   * rejects with its StoreConflict; if etcd fails, every change of the group rejects (none landed).
   */
  private async commit(group: Queued[]): Promise<void> {
    try {
      const keys = new Set<string>(group.flatMap((q) => EtcdRegistry.reads(q.change)));
      /** The keys to decide on: remembered (`known`), or read by the failure branch of a lost commit. */
      let fresh: Map<string, Read> | undefined = this.knownReads(keys);
      /** The next round decides on remembered values, not on values read since the changes were asked. */
      let remembered = fresh !== undefined;
      round: for (let round = 0; round < MAX_ROUNDS; round++) {
        const reads = fresh ?? (await this.readKeys([...keys]));
        const onRemembered = remembered;
        fresh = undefined;
        remembered = false;
        const ws = new Overlay(reads);
        const outcomes: ({ events: Unnumbered[] } | { error: unknown })[] = [];
        let cut = group.length;
        let eventCount = 0;
        for (let i = 0; i < group.length; i++) {
          const o = ws.child();
          try {
            const events = this.decide(group[i]!.change, o);
            if (
              i > 0 &&
              (o.writes.size > MAX_OPS ||
                o.guarded.size > MAX_OPS ||
                eventCount + events.length >= Math.min(EVENTS_PER_REV, MAX_OPS))
            ) {
              cut = i; // too big for one transaction with what is before it: the next group
              break;
            }
            ws.merge(o);
            eventCount += events.length;
            outcomes.push({ events });
          } catch (err) {
            if (err instanceof NeedRead) {
              keys.add(err.key);
              continue round;
            }
            if (!isStoreConflict(err)) throw err;
            outcomes.push({ error: err });
          }
        }
        if (onRemembered && outcomes.some((x) => 'error' in x)) {
          // A refusal has no compare to check it: one decided on remembered values (perhaps stale)
          // is decided again on values read now.
          continue round;
        }
        if (cut < group.length) {
          this.queue.unshift(...group.splice(cut));
        }
        const decided = outcomes.flatMap((x) => ('events' in x ? x.events : []));
        let revision = 0;
        if (ws.writes.size > 0 || decided.length > 0) {
          // The group's events, unnumbered, under a key of this process's own (no other writer
          // touches it: nothing to compare); numbered by the revision of this transaction.
          const staged = decided.length ? K.staged(this.writer, ++this.stagedCount) : undefined;
          // The events of this process's previous commits ride along to their index (one nested
          // transaction: etcd's limit on operations is per level).
          const indexing = EtcdRegistry.indexable(this.unindexed);
          const index = indexing.length ? this.indexOps(indexing) : [];
          // If the compare fails, the transaction reads the group's keys instead (at its revision,
          // one consistent snapshot): the next round decides on them without a read of its own.
          const reread = keys.size <= MAX_OPS ? [...keys] : [];
          const success: IRequestOp[] = [
            ...[...ws.writes].map(([k, v]): IRequestOp =>
              v === null
                ? { request_delete_range: { key: this.key(k) } }
                : { request_put: { key: this.key(k), value: Buffer.from(v) } },
            ),
            ...(staged
              ? [{ request_put: { key: this.key(staged), value: Buffer.from(JSON.stringify(decided)) } }]
              : []),
            ...(index.length ? [{ request_txn: { compare: [], success: index, failure: [] } }] : []),
          ];
          const failure = reread.map((k): IRequestOp => ({ request_range: { key: this.key(k) } }));
          // Single-key reads waiting for their batch ride along in both branches (a round trip
          // fewer; still linearizable: the transaction is sent after they were asked for).
          const carried = this.takeReads(TXN_OPS - Math.max(success.length, failure.length));
          const carriedOps = carried.map(([k]): IRequestOp => ({ request_range: { key: this.key(k) } }));
          STATS.commits++;
          const res = await this.call((co) =>
            this.client.kv.txn(
              {
                compare: [...ws.guarded].map((k): ICompare => ({
                  key: this.key(k),
                  target: 'Mod',
                  result: 'Equal',
                  mod_revision: reads.get(k)!.mod,
                })),
                success: [...success, ...carriedOps],
                failure: [...failure, ...carriedOps],
              },
              co,
            ),
          ).catch((err: unknown) => {
            // Perhaps landed, perhaps not: indexing is idempotent, so it is done again either way.
            this.unindexed.unshift(...indexing);
            this.requeueReads(carried);
            throw err;
          });
          this.answerReads(carried, res.responses.slice(res.succeeded ? success.length : failure.length));
          if (!res.succeeded) {
            STATS.lost++;
            this.unindexed.unshift(...indexing);
            if (reread.length) fresh = this.readsOf(reread, res.responses);
            else for (const k of keys) this.known.delete(k);
            // Another registrar wrote a key this group read: decide again on fresh reads, after a
            // short random pause when it keeps happening (registrars racing in step).
            if (round >= 3) await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, round * 2)));
            continue;
          }
          this.indexedSinceTrim += indexing.reduce((a, st) => a + st.events.length, 0);
          // What this transaction wrote of the keys decisions read is what the next commit may
          // decide on (events, indexes and the like are never read back by a commit).
          const rev = res.header.revision;
          revision = Number(rev);
          for (const [k, v] of ws.writes) {
            if (!keys.has(k)) this.known.delete(k);
            else this.remember(k, v === null ? { value: undefined, mod: '0' } : { value: v, mod: rev });
          }
          if (staged) {
            const numbered = decided.map((e, i): MusterEvent => ({
              seq: revision * EVENTS_PER_REV + i,
              ...e,
            }));
            this.unindexed.push({ key: staged, events: numbered });
            this.knownSeq = Math.max(this.knownSeq, numbered.at(-1)!.seq);
          }
        }
        // The events just staged ride along with the next commit to their index; with none queued,
        // a flush of their own follows unless a commit comes first (the watch has told every
        // registrar already, and every read of the log lists staged events too).
        if (this.indexedSinceTrim >= this.trimEvery) await this.trim().catch(() => undefined);
        if (this.queue.length === 0 && this.unindexed.length) this.scheduleFlush();
        let next = 0;
        group.forEach((q, i) => {
          const out = outcomes[i]!;
          if ('events' in out) {
            STATS.changes++;
            const events = out.events.map((e): MusterEvent => ({
              seq: revision * EVENTS_PER_REV + next++,
              ...e,
            }));
            q.resolve(events);
          } else q.reject(out.error);
        });
        return;
      }
      throw new Error(`too much contention: ${MAX_ROUNDS} rounds lost to other writers`);
    } catch (err) {
      const e = this.unavailable(err);
      for (const q of group) q.reject(e);
    }
  }

  private scheduleFlush(): void {
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      void this.flushIndex();
    }, FLUSH_DELAY_MS).unref();
  }

  /**
   * Indexes this process's staged events in a transaction of its own (when no commit follows to
   * carry them), and trims the log when due. A failure leaves them staged: listed all the same, and
   * indexed by a later commit or the next open.
   */
  private flushIndex(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    // One at a time: a read of the log that asks for a flush finds the one in progress done first.
    this.flushChain = this.flushChain.then(() => this.flushOnce());
    return this.flushChain;
  }

  private async flushOnce(): Promise<void> {
    while (this.unindexed.length) {
      const indexing = EtcdRegistry.indexable(this.unindexed);
      try {
        await this.call((co) => this.client.kv.txn({ success: this.indexOps(indexing) }, co));
        this.indexedSinceTrim += indexing.reduce((a, st) => a + st.events.length, 0);
      } catch {
        this.unindexed.unshift(...indexing);
        return;
      }
    }
    if (this.indexedSinceTrim >= this.trimEvery) await this.trim().catch(() => undefined);
  }

  /**
   * Reads keys (a transaction of reads per MAX_OPS keys): their values and mod_revisions. Slices may
   * be read at different revisions: the commit compares each key's mod_revision, so what it decided
   * on still holds when it lands.
   */
  private async readKeys(keys: string[]): Promise<Map<string, Read>> {
    const parts = await Promise.all(
      slices(keys, MAX_OPS).map(async (part) => {
        const res = await this.call((co) =>
          this.client.kv.txn(
            {
              success: part.map((k): IRequestOp => ({ request_range: { key: this.key(k) } })),
            },
            co,
          ),
        );
        return this.readsOf(part, res.responses);
      }),
    );
    return new Map(parts.flatMap((m) => [...m]));
  }

  /** The values and mod_revisions of `keys` from the range responses of a transaction, in order. */
  private readsOf(keys: string[], responses: ITxnResponse['responses']): Map<string, Read> {
    const out = new Map<string, Read>();
    keys.forEach((k, i) => {
      const kv = responses[i]!.response_range.kvs[0];
      const read = kv ? { value: kv.value.toString(), mod: kv.mod_revision } : { value: undefined, mod: '0' };
      out.set(k, read);
      this.remember(k, read);
    });
    return out;
  }

  /** Keeps a key's last seen value and mod_revision, the most recent KNOWN_KEYS keys. */
  private remember(key: string, read: Read): void {
    this.known.delete(key);
    this.known.set(key, read);
    if (this.known.size > KNOWN_KEYS) this.known.delete(this.known.keys().next().value!);
  }

  /** The keys as last seen, if every one of them is known. */
  private knownReads(keys: Iterable<string>): Map<string, Read> | undefined {
    const out = new Map<string, Read>();
    for (const k of keys) {
      const r = this.known.get(k);
      if (!r) return undefined;
      out.set(k, r);
    }
    return out;
  }

  /**
   * One change on top of the group so far (in `o`, a child overlay): every precondition, then every
   * write; throws StoreConflict, leaving `o` to be dropped, when a precondition does not hold.
   * The same checks, in the same order, as the level and memory backends.
   */
  private decide(change: Change, o: Overlay): Unnumbered[] {
    for (const w of change.nodes ?? []) {
      const name = w.next.name;
      const raw = o.get(K.node(name));
      const cur = raw === undefined ? undefined : normaliseNode(JSON.parse(raw));
      if ((cur?.rev ?? 0) !== w.expectRev) {
        throw new StoreConflict('node', `node ${name} is at rev ${cur?.rev ?? 0}, not ${w.expectRev}`);
      }
      const next: NodeRecord = { ...w.next, rev: w.expectRev + 1 };
      o.put(K.node(name), JSON.stringify(next));
      // A name's archived records in order: each archive rewrites the name's record, so the revision
      // it was read at grows from one archive to the next (and is above the event counter of
      // registries written before events were numbered by revision).
      if (cur && w.archivePrev) {
        o.put(K.history(name, o.readMod(K.node(name)) * EVENTS_PER_REV + 1, cur.rev), raw!);
      }
      if (!cur || cur.state !== next.state) {
        if (cur) o.del(K.state(cur.state, name));
        o.put(K.state(next.state, name), '');
      }
      // The group index follows the record (DESIGN "Groups"); each group's count is a counter
      // advanced by compare-and-set like the event sequence.
      if (cur?.group !== next.group) {
        if (cur?.group !== undefined) {
          o.del(K.group(cur.group, name));
          const left = Number(o.get(K.groupCount(cur.group)) ?? 0) - 1;
          if (left > 0) o.put(K.groupCount(cur.group), String(left));
          else o.del(K.groupCount(cur.group));
        }
        if (next.group !== undefined) {
          o.put(K.group(next.group, name), '');
          o.put(K.groupCount(next.group), String(Number(o.get(K.groupCount(next.group)) ?? 0) + 1));
        }
      }
    }
    const usedToken =
      change.useToken !== undefined
        ? useTokenOnce(o.json<TokenRecord>(K.token(change.useToken)), change.useToken)
        : undefined;
    const updatedToken = change.tokenUpdate
      ? updateTokenOnce(o.json<TokenRecord>(K.token(change.tokenUpdate.id)), change.tokenUpdate)
      : undefined;
    if (change.installModeWindow !== undefined) {
      expectInstallModeWindow(
        o.json<InstallModeState>(K.installMode) ?? INSTALL_MODE_OFF,
        change.installModeWindow,
      );
    }
    const usedInstallMode = change.useInstallMode
      ? useInstallModeOnce(
          o.json<InstallModeState>(K.installMode) ?? INSTALL_MODE_OFF,
          change.useInstallMode.since,
        )
      : undefined;
    if (change.usePreapproval) {
      const { name, now } = change.usePreapproval;
      usePreapprovalOnce(o.json<Preapproval>(K.preapproval(name)), name, now);
      o.del(K.preapproval(name));
    }

    if (usedToken) o.put(K.token(usedToken.id), JSON.stringify(usedToken));
    if (change.putToken) o.put(K.token(change.putToken.id), JSON.stringify(change.putToken));
    if (updatedToken) o.put(K.token(updatedToken.id), JSON.stringify(updatedToken));
    // Counts of refusals never refuse a change: they apply to the state the change left.
    const badProof = change.tokenBadProof
      ? tokenBadProofOnce(o.json<TokenRecord>(K.token(change.tokenBadProof.id)), change.tokenBadProof)
      : undefined;
    if (badProof) o.put(K.token(badProof.next.id), JSON.stringify(badProof.next));
    if (usedInstallMode) o.put(K.installMode, JSON.stringify(usedInstallMode.next));
    if (change.setInstallMode) o.put(K.installMode, JSON.stringify(change.setInstallMode));
    const failure = change.installModeFailure
      ? installModeFailureOnce(
          o.json<InstallModeState>(K.installMode) ?? INSTALL_MODE_OFF,
          change.installModeFailure,
        )
      : undefined;
    if (failure) o.put(K.installMode, JSON.stringify(failure.next));
    if (change.deletePreapproval !== undefined) o.del(K.preapproval(change.deletePreapproval));
    if (change.putPreapproval)
      o.put(K.preapproval(change.putPreapproval.name), JSON.stringify(change.putPreapproval));
    if (change.deleteBan) o.del(K.ban(banId(change.deleteBan.kind, change.deleteBan.value)));
    if (change.putBan)
      o.put(K.ban(banId(change.putBan.kind, change.putBan.value)), JSON.stringify(change.putBan));
    if (change.serial) {
      const { counter, name, serial } = change.serial;
      o.put(K.serial(counter), JSON.stringify({ name, serial }));
      // A counter written above every lease (not handed out by allocateSerial) raises the lease, so
      // no registrar hands it out later. The lease only grows: below it, nothing to guard.
      const lease = Number(o.get(K.serialLease, true) ?? 0);
      if (counter > lease) {
        o.get(K.serialLease);
        o.put(K.serialLease, String(counter));
      }
    }
    if (change.revoke) o.put(K.revocation(change.revoke.serial), JSON.stringify(change.revoke));

    const inputs = [
      ...(change.events ?? []),
      ...(usedInstallMode?.event ? [usedInstallMode.event] : []),
      ...(badProof?.event ? [badProof.event] : []),
      ...(failure?.event ? [failure.event] : []),
    ];
    // Numbered by the commit, from its transaction's revision: no counter every commit advances.
    const at = new Date(this.now()).toISOString();
    return inputs.map((e): Unnumbered => ({ at, ...e }));
  }

  private assertOpen(): void {
    if (this.closing) throw new Error('the registry is closed');
  }

  async close(): Promise<void> {
    this.closed ??= this.shutDown();
    return this.closed;
  }

  private async shutDown(): Promise<void> {
    this.closing = true;
    // Changes already called for are decided and committed (or refused): they may be about to be
    // acknowledged.
    while (this.running) await this.running;
    // What it committed is indexed before it goes (else the next registrar to open does it).
    await this.flushIndex();
    await this.watchChain;
    await this.watcher?.cancel().catch(() => undefined);
    this.delivery.drain();
    this.client.close();
  }
}
