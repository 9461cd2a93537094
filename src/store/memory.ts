/**
 * The registry in memory (DESIGN "Store backends": for tests). Same contract as the level backend,
 * written to be obviously correct rather than fast: apply() checks every precondition and then
 * changes everything synchronously, so changes land in the order apply() was called and a refused
 * change leaves no trace. Nothing survives close().
 */
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
  installModeFailureOnce,
  tokenBadProofOnce,
  updateTokenOnce,
  useInstallModeOnce,
  usePreapprovalOnce,
  plainCopy,
  useTokenOnce,
} from './common.js';

const copy = plainCopy;

export class MemoryRegistry implements Registry {
  readonly backend = 'memory';
  private readonly eventRetention: number;
  private readonly now: () => number;
  private id: string | undefined;
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly archived = new Map<string, NodeRecord[]>();
  private readonly tokens = new Map<string, TokenRecord>();
  private installMode: InstallModeState = copy(INSTALL_MODE_OFF);
  private readonly preapprovals = new Map<string, Preapproval>();
  private readonly bans = new Map<string, Ban>();
  private serialCounter = 0;
  private readonly serials = new Map<number, SerialRecord>();
  private readonly revocations = new Map<string, Revocation>();
  private readonly events = new Map<number, MusterEvent>();
  private eventSeq = 0;
  private readonly delivery = new EventDelivery();
  private closed = false;

  constructor(opts: RegistryOptions = {}) {
    this.eventRetention = opts.eventRetention ?? DEFAULT_EVENT_RETENTION;
    this.now = opts.now ?? Date.now;
  }

  static async create(opts: RegistryOptions = {}): Promise<MemoryRegistry> {
    return new MemoryRegistry(opts);
  }

  async identity(make: () => string): Promise<string> {
    this.id ??= make();
    return this.id;
  }

  async getNode(name: string): Promise<NodeRecord | undefined> {
    const r = this.nodes.get(name);
    return r && copy(r);
  }

  async listNodes(opts: ListNodesOptions): Promise<NodeRecord[]> {
    return this.page(opts);
  }

  private page(opts: ListNodesOptions): NodeRecord[] {
    const names = [...this.nodes.keys()].sort();
    const out: NodeRecord[] = [];
    for (const name of names) {
      if (out.length >= opts.limit) break;
      if (opts.after !== undefined && name <= opts.after) continue;
      const r = this.nodes.get(name)!;
      if (opts.state !== undefined && r.state !== opts.state) continue;
      if (opts.group !== undefined && r.group !== opts.group) continue;
      out.push(copy(r));
    }
    return out;
  }

  async namesInState(state: NodeState, limit = 10_000): Promise<string[]> {
    return (await this.listNodes({ state, limit })).map((r) => r.name);
  }

  async listWaiting(opts: { state: WaitingState; after?: string; limit: number }): Promise<WaitingEntry[]> {
    if (opts.limit <= 0) return [];
    // Not through listNodes: what a caller reads is one call here, as on the level backend.
    return this.page(opts).map(waitingEntry);
  }

  async history(name: string): Promise<NodeRecord[]> {
    return copy(this.archived.get(name) ?? []);
  }

  async counts(): Promise<Record<NodeState, number>> {
    const c = Object.fromEntries(NODE_STATES.map((s) => [s, 0])) as Record<NodeState, number>;
    for (const r of this.nodes.values()) c[r.state]++;
    return c;
  }

  async listGroups(): Promise<GroupCount[]> {
    const c = new Map<string, number>();
    for (const r of this.nodes.values()) if (r.group !== undefined) c.set(r.group, (c.get(r.group) ?? 0) + 1);
    return [...c.keys()].sort().map((group) => ({ group, count: c.get(group)! }));
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    const t = this.tokens.get(id);
    return t && copy(t);
  }

  async listTokens(): Promise<TokenRecord[]> {
    return [...this.tokens.keys()].sort().map((id) => copy(this.tokens.get(id)!));
  }

  async getInstallMode(): Promise<InstallModeState> {
    return copy(this.installMode);
  }

  async getPreapproval(name: string): Promise<Preapproval | undefined> {
    const p = this.preapprovals.get(name);
    return p && copy(p);
  }

  async listPreapprovals(): Promise<Preapproval[]> {
    return [...this.preapprovals.keys()].sort().map((n) => copy(this.preapprovals.get(n)!));
  }

  async getBan(kind: BanKind, value: string): Promise<Ban | undefined> {
    const b = this.bans.get(banId(kind, value));
    return b && copy(b);
  }

  async listBans(): Promise<Ban[]> {
    return [...this.bans.keys()].sort().map((k) => copy(this.bans.get(k)!));
  }

  async allocateSerial(): Promise<number> {
    this.assertOpen();
    return ++this.serialCounter;
  }

  async listSerials(opts: { after?: number; limit?: number } = {}): Promise<SerialRecord[]> {
    return [...this.serials.values()]
      .filter((s) => s.counter > (opts.after ?? 0))
      .sort((a, b) => a.counter - b.counter)
      .slice(0, opts.limit ?? Infinity)
      .map(copy);
  }

  async listRevocations(): Promise<Revocation[]> {
    return [...this.revocations.keys()].sort().map((s) => copy(this.revocations.get(s)!));
  }

  async isRevoked(serial: string): Promise<boolean> {
    return this.revocations.has(serial);
  }

  async apply(change: Change): Promise<MusterEvent[]> {
    this.assertOpen();
    // Every precondition first, against the state before the change: a refusal changes nothing.
    const next = new Map<string, NodeRecord>();
    for (const w of change.nodes ?? []) {
      const name = w.next.name;
      const cur = next.get(name) ?? this.nodes.get(name);
      if ((cur?.rev ?? 0) !== w.expectRev) {
        throw new StoreConflict('node', `node ${name} is at rev ${cur?.rev ?? 0}, not ${w.expectRev}`);
      }
      next.set(name, { ...copy(w.next), rev: w.expectRev + 1 });
    }
    const usedToken =
      change.useToken !== undefined
        ? useTokenOnce(this.tokens.get(change.useToken), change.useToken)
        : undefined;
    const updatedToken = change.tokenUpdate
      ? updateTokenOnce(this.tokens.get(change.tokenUpdate.id), change.tokenUpdate)
      : undefined;
    if (change.installModeWindow !== undefined)
      expectInstallModeWindow(this.installMode, change.installModeWindow);
    const usedInstallMode = change.useInstallMode
      ? useInstallModeOnce(this.installMode, change.useInstallMode.since)
      : undefined;
    if (change.usePreapproval) {
      const { name, now } = change.usePreapproval;
      usePreapprovalOnce(this.preapprovals.get(name), name, now);
    }

    for (const w of change.nodes ?? []) {
      const name = w.next.name;
      const prev = this.nodes.get(name);
      if (prev && w.archivePrev) this.archived.set(name, [...(this.archived.get(name) ?? []), prev]);
      this.nodes.set(name, { ...copy(w.next), rev: w.expectRev + 1 });
    }
    if (usedToken) this.tokens.set(usedToken.id, usedToken);
    if (change.putToken) this.tokens.set(change.putToken.id, copy(change.putToken));
    if (updatedToken) this.tokens.set(updatedToken.id, updatedToken);
    // Counts of refusals never refuse a change: they apply to the state the change left.
    const badProof = change.tokenBadProof
      ? tokenBadProofOnce(this.tokens.get(change.tokenBadProof.id), change.tokenBadProof)
      : undefined;
    if (badProof) this.tokens.set(badProof.next.id, badProof.next);
    if (usedInstallMode) this.installMode = usedInstallMode.next;
    if (change.setInstallMode) this.installMode = copy(change.setInstallMode);
    const failure = change.installModeFailure
      ? installModeFailureOnce(this.installMode, change.installModeFailure)
      : undefined;
    if (failure) this.installMode = failure.next;
    if (change.usePreapproval) this.preapprovals.delete(change.usePreapproval.name);
    if (change.deletePreapproval !== undefined) this.preapprovals.delete(change.deletePreapproval);
    if (change.putPreapproval) this.preapprovals.set(change.putPreapproval.name, copy(change.putPreapproval));
    if (change.deleteBan) this.bans.delete(banId(change.deleteBan.kind, change.deleteBan.value));
    if (change.putBan) this.bans.set(banId(change.putBan.kind, change.putBan.value), copy(change.putBan));
    if (change.serial) {
      this.serials.set(change.serial.counter, copy(change.serial));
      this.serialCounter = Math.max(this.serialCounter, change.serial.counter);
    }
    if (change.revoke) this.revocations.set(change.revoke.serial, copy(change.revoke));
    const at = new Date(this.now()).toISOString();
    const inputs = [
      ...(change.events ?? []),
      ...(usedInstallMode?.event ? [usedInstallMode.event] : []),
      ...(badProof?.event ? [badProof.event] : []),
      ...(failure?.event ? [failure.event] : []),
    ];
    const events = inputs.map((e): MusterEvent => ({ seq: ++this.eventSeq, at, ...copy(e) }));
    for (const ev of events) {
      this.events.set(ev.seq, ev);
      this.events.delete(ev.seq - this.eventRetention);
    }
    this.delivery.publish(events.map(copy));
    return events.map(copy);
  }

  async lastEventSeq(): Promise<number> {
    return this.eventSeq;
  }

  async listEvents(after: number, limit: number): Promise<MusterEvent[]> {
    const out: MusterEvent[] = [];
    for (
      let seq = Math.max(after + 1, this.eventSeq - this.eventRetention + 1);
      seq <= this.eventSeq;
      seq++
    ) {
      if (out.length >= limit) break;
      const ev = this.events.get(seq);
      if (ev) out.push(copy(ev));
    }
    return out;
  }

  watch(fn: (ev: MusterEvent) => void): () => void {
    return this.delivery.watch(fn, this.eventSeq);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.delivery.drain();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the registry is closed');
  }
}
