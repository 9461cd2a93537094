/**
 * Operator actions (DESIGN "CLI", admin API): approve, reject, remove, tokens and install mode, each
 * a registry transition with its event, plus the install-mode deadline timer on the injected clock.
 * Turning install mode on admits the nodes already waiting that it would admit if they asked now
 * (same scope, locality and --max); their long polls answer at once.
 */
import type { Clock, TimerHandle } from '../common/clock.js';
import { MusterError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { assertLabel } from '../common/names.js';
import { formatToken } from '../common/proof.js';
import { isStoreConflict, type ListNodesOptions, type Registry } from '../store/registry.js';
import type {
  Ban,
  BanKind,
  InstallModeState,
  MusterEvent,
  NodeRecord,
  NodeState,
  Preapproval,
} from '../store/types.js';
import type { Authorizer } from './admission/authorizer.js';
import { Groups } from './groups.js';
import { describeInstallMode, effectiveInstallMode, newToken, tokenView, type TokenView } from './policy.js';
import type { Registration } from './registration.js';

export type InstallModeView = InstallModeState & { description: string; admitted?: string[] };

export interface OperatorOptions {
  registry: Registry;
  registration: Registration;
  authorizer: Authorizer;
  clock: Clock;
  log: Logger;
  isOnLink: (address: string) => boolean;
  fault?: (point: 'after-accept' | 'after-issue') => void;
  /** The CA pin tokens carry. */
  caFingerprint: string;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** Records one `nodes list --stale` request reads at most before it answers with `next`. */
export const STALE_SCAN_BUDGET = 10_000;

export class Operator {
  private installTimer: TimerHandle | undefined;
  private readonly unwatch: () => void;
  private closed = false;
  /** Groups (DESIGN "Groups"): in groups.ts, under the same per-name lock as every node write. */
  readonly groups: Groups;

  private constructor(private readonly o: OperatorOptions) {
    this.groups = new Groups({ registry: o.registry, locks: o.registration.locks, log: o.log });
    // The deadline timer follows the stored state: armed when install mode goes on, dropped when it
    // goes off (by the operator, the deadline, or the store at --max).
    this.unwatch = o.registry.watch((ev: MusterEvent) => {
      if (ev.type === 'install-mode') void this.armInstallTimer();
    });
  }

  static async create(o: OperatorOptions): Promise<Operator> {
    const op = new Operator(o);
    await op.settleInstallMode();
    return op;
  }

  close(): void {
    this.closed = true;
    this.unwatch();
    this.disarmInstallTimer();
  }

  private get log(): Logger {
    return this.o.log;
  }

  private nowIso(): string {
    return new Date(this.o.clock.now()).toISOString();
  }

  private async existing(name: string): Promise<NodeRecord> {
    const rec = await this.o.registry.getNode(name);
    if (!rec) throw new MusterError('not_found', `no node named ${name}`);
    return rec;
  }

  // ---- nodes ----

  async approve(name: string, operator: string): Promise<NodeRecord> {
    assertLabel('node name', name);
    return this.o.registration.locks.run(name, async () => {
      const rec = await this.existing(name);
      if (rec.state === 'heard') {
        throw new MusterError(
          'invalid_state',
          `node ${name} was only heard over mDNS and has not asked to join yet; approve it once it is pending`,
        );
      }
      if (rec.state !== 'pending')
        throw new MusterError(
          'invalid_state',
          `node ${name} is ${rec.state}; only a pending node can be approved`,
        );
      const nowIso = this.nowIso();
      const { pendingReason: _p, advertisedKey: _a, ...rest } = rec;
      const accepted: NodeRecord = {
        ...rest,
        state: 'accepted',
        decision: { rule: 'approval', detail: `approved by ${operator}`, at: nowIso },
        times: { ...rec.times, accepted: nowIso },
      };
      // Two durable steps (an approval has no CSR to sign in the same breath): accepted, then issued.
      // A crash between them is finished at start or by the node's next poll.
      await this.o.registry.apply({
        nodes: [{ expectRev: rec.rev, next: accepted }],
        events: [
          {
            type: 'accepted',
            name,
            detail: { rule: 'approval', reason: `approved by ${operator}`, key: rec.key },
          },
        ],
      });
      this.log.info({ node: name, key: rec.key, rule: 'approval', operator }, 'node accepted');
      this.o.fault?.('after-accept');
      try {
        return await this.o.registration.issueLocked({ ...accepted, rev: rec.rev + 1 });
      } catch (err) {
        // On a shared store another registrar may finish the acceptance first (the node's poll
        // there sees it accepted and issues): the approval stands, the certificate is theirs.
        if (!isStoreConflict(err, 'node')) throw err;
        const now = await this.o.registry.getNode(name);
        if (now && now.key === rec.key && (now.state === 'issued' || now.state === 'active')) return now;
        throw err;
      }
    });
  }

  async reject(name: string, operator: string): Promise<NodeRecord> {
    assertLabel('node name', name);
    return this.o.registration.locks.run(name, async () => {
      const rec = await this.existing(name);
      if (rec.state !== 'pending' && rec.state !== 'heard') {
        throw new MusterError(
          'invalid_state',
          `node ${name} is ${rec.state}; only a pending node can be rejected (use remove)`,
        );
      }
      const nowIso = this.nowIso();
      const { pendingReason: _p, ...rest } = rec;
      const next: NodeRecord = {
        ...rest,
        state: 'rejected',
        decision: { rule: 'refused', detail: `rejected by ${operator}`, at: nowIso },
        times: { ...rec.times, rejected: nowIso },
      };
      await this.o.registry.apply({
        nodes: [{ expectRev: rec.rev, next }],
        events: [{ type: 'rejected', name, detail: { reason: `rejected by ${operator}` } }],
      });
      this.log.info({ node: name, key: rec.key, operator }, 'node rejected');
      return { ...next, rev: rec.rev + 1 };
    });
  }

  async remove(name: string, operator: string): Promise<NodeRecord> {
    assertLabel('node name', name);
    return this.o.registration.locks.run(name, async () => {
      const rec = await this.existing(name);
      if (rec.state === 'removed') return rec;
      return this.o.registration.removeLocked(rec, `removed by ${operator}`);
    });
  }

  // ---- pre-approval, rebuild, ban (issue 9, item 3) ----

  /**
   * Lets `name` (with `key` and `role`, when given) join once with no token and no install mode
   * (Tailscale's pre-approved keys). Replaces an earlier pre-approval of the name.
   */
  async preapprove(
    name: string,
    opts: { key?: string; role?: string; ttlMs: number | null },
    operator: string,
  ): Promise<Preapproval> {
    assertLabel('node name', name);
    if (opts.role !== undefined) assertLabel('role', opts.role);
    if (opts.key !== undefined) assertFingerprint(opts.key);
    if (opts.ttlMs !== null && !(opts.ttlMs >= 1000))
      throw new MusterError('bad_request', 'a pre-approval needs a lifetime of at least 1s (--ttl)');
    return this.o.registration.locks.run(name, async () => {
      const rec = await this.o.registry.getNode(name);
      if (rec && ['accepted', 'issued', 'active'].includes(rec.state) && rec.key !== opts.key) {
        throw new MusterError(
          'invalid_state',
          `node ${name} is ${rec.state} with key ${rec.key}; to let another machine take the name, use 'muster nodes rebuild ${name}'`,
        );
      }
      return this.putPreapproval(name, opts, operator, 'preapproved');
    });
  }

  private async putPreapproval(
    name: string,
    opts: { key?: string; role?: string; ttlMs: number | null },
    by: string,
    action: 'preapproved' | 'rebuild' | 'force',
  ): Promise<Preapproval> {
    const now = this.o.clock.now();
    const p: Preapproval = {
      name,
      ...(opts.key !== undefined ? { key: opts.key } : {}),
      ...(opts.role !== undefined ? { role: opts.role } : {}),
      expiresAt: opts.ttlMs === null ? null : now + opts.ttlMs,
      createdAt: new Date(now).toISOString(),
      by,
    };
    await this.o.registry.apply({
      putPreapproval: p,
      events: [
        {
          type: 'preapproval',
          name,
          detail: { action, key: p.key, role: p.role, expiresAt: p.expiresAt, by },
        },
      ],
    });
    this.log.info({ node: name, key: p.key, role: p.role, by, action }, 'name pre-approved');
    return p;
  }

  /**
   * `approve --force` (DESIGN "Exactly once": the same name with another key is a conflict until the
   * operator removes the node or re-admits it with --force): the holder is archived (removed, its
   * certificate revoked) and the name is pre-approved for exactly the key that asked, which is
   * accepted at its next request. The conflict event names both keys.
   */
  async forceApprove(
    name: string,
    key: string,
    operator: string,
  ): Promise<{ removed?: NodeRecord; preapproval: Preapproval }> {
    assertLabel('node name', name);
    assertFingerprint(key);
    return this.o.registration.locks.run(name, async () => {
      const rec = await this.existing(name);
      if (rec.key === key) {
        throw new MusterError(
          'invalid_state',
          `node ${name} already has key ${key} (${rec.state}): --force re-admits a name for another key`,
        );
      }
      const why = `replaced by key ${key}: approved with --force by ${operator}`;
      const removed = rec.state === 'removed' ? undefined : await this.o.registration.removeLocked(rec, why);
      await this.o.registry.apply({
        events: [
          { type: 'conflict', name, detail: { reason: why, archivedKey: rec.key, key, by: operator } },
        ],
      });
      const preapproval = await this.putPreapproval(name, { key, ttlMs: null }, operator, 'force');
      return { ...(removed ? { removed } : {}), preapproval };
    });
  }

  listPreapprovals(): Promise<Preapproval[]> {
    return this.o.registry.listPreapprovals();
  }

  /**
   * A machine rebuilt with a new key (SPIRE's evict): the old record is removed and its certificate
   * revoked, then the name is pre-approved for the next key, in that order, so the old key can never
   * use the pre-approval (its record says removed).
   */
  async rebuild(
    name: string,
    opts: { key?: string; role?: string; ttlMs: number | null },
    operator: string,
  ): Promise<{ removed?: NodeRecord; preapproval: Preapproval }> {
    assertLabel('node name', name);
    if (opts.role !== undefined) assertLabel('role', opts.role);
    if (opts.key !== undefined) assertFingerprint(opts.key);
    return this.o.registration.locks.run(name, async () => {
      const rec = await this.existing(name);
      if (opts.key !== undefined && opts.key === rec.key) {
        throw new MusterError('bad_request', `--key ${opts.key} is the key being replaced`);
      }
      const removed =
        rec.state === 'removed'
          ? undefined
          : await this.o.registration.removeLocked(rec, `rebuilt by ${operator}`);
      const preapproval = await this.putPreapproval(name, opts, operator, 'rebuild');
      return { ...(removed ? { removed } : {}), preapproval };
    });
  }

  /**
   * Refuses a name or a key for good, until unban (SPIRE's ban). A node that holds it now is removed
   * and its certificate revoked; a pre-approval of a banned name is dropped.
   */
  async ban(
    target: { kind: BanKind; value: string },
    operator: string,
    reason?: string,
  ): Promise<{ ban: Ban; removed: string[] }> {
    if (target.kind === 'name') assertLabel('node name', target.value);
    else assertFingerprint(target.value);
    const b: Ban = {
      ...target,
      createdAt: this.nowIso(),
      by: operator,
      ...(reason ? { reason } : {}),
    };
    // The ban lands first: from then on no join of it is admitted, so the removals below are final.
    await this.o.registry.apply({
      putBan: b,
      ...(target.kind === 'name' ? { deletePreapproval: target.value } : {}),
      events: [
        {
          type: 'ban',
          ...(target.kind === 'name' ? { name: target.value } : {}),
          detail: { action: 'banned', ...target, by: operator, reason },
        },
      ],
    });
    this.log.warn({ ...target, by: operator, reason }, 'banned');
    const names = target.kind === 'name' ? [target.value] : await this.namesWithKey(target.value);
    const removed: string[] = [];
    for (const name of names) {
      const done = await this.o.registration.locks.run(name, async () => {
        const rec = await this.o.registry.getNode(name);
        if (!rec || rec.state === 'removed' || rec.state === 'rejected') return false;
        if (target.kind === 'key' && rec.key !== target.value) return false;
        await this.o.registration.removeLocked(rec, `banned by ${operator}`);
        return true;
      });
      if (done) removed.push(name);
    }
    return { ban: b, removed };
  }

  async unban(target: { kind: BanKind; value: string }, operator: string): Promise<Ban> {
    const b = await this.o.registry.getBan(target.kind, target.value);
    if (!b) throw new MusterError('not_found', `no ban of ${target.kind} ${target.value}`);
    await this.o.registry.apply({
      deleteBan: target,
      events: [
        {
          type: 'ban',
          ...(target.kind === 'name' ? { name: target.value } : {}),
          detail: { action: 'unbanned', ...target, by: operator },
        },
      ],
    });
    this.log.info({ ...target, by: operator }, 'ban lifted');
    return b;
  }

  listBans(): Promise<Ban[]> {
    return this.o.registry.listBans();
  }

  /** The names whose current record holds this key (an operator action: a walk of the records). */
  private async namesWithKey(key: string): Promise<string[]> {
    const out: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.o.registry.listNodes({ limit: 500, ...(after ? { after } : {}) });
      for (const r of page) if (r.key === key) out.push(r.name);
      if (page.length < 500) return out;
      after = page[page.length - 1]!.name;
    }
  }

  async showNode(name: string): Promise<{ node: NodeRecord; history: NodeRecord[] }> {
    assertLabel('node name', name);
    return { node: await this.existing(name), history: await this.o.registry.history(name) };
  }

  listNodes(opts: ListNodesOptions): Promise<NodeRecord[]> {
    return this.o.registry.listNodes(opts);
  }

  /**
   * One page of the nodes not seen for `staleMs` (no authenticated contact since; issue 9, item 5).
   * The filter runs within the index walk, so paging holds: `next` is the last name this page
   * looked at when it stopped with more to read (a page may hold fewer than `limit` nodes when the
   * walk reached its budget), and absent once the index is exhausted.
   */
  async listStaleNodes(
    opts: ListNodesOptions & { staleMs: number },
  ): Promise<{ nodes: NodeRecord[]; next?: string }> {
    const cutoff = this.o.clock.now() - opts.staleMs;
    const nodes: NodeRecord[] = [];
    let after = opts.after;
    let scanned = 0;
    for (;;) {
      const page = await this.o.registry.listNodes({
        limit: opts.limit,
        ...(opts.state ? { state: opts.state } : {}),
        ...(opts.group !== undefined ? { group: opts.group } : {}),
        ...(after !== undefined ? { after } : {}),
      });
      for (const rec of page) {
        scanned++;
        after = rec.name;
        if (Date.parse(rec.lastSeen) <= cutoff) nodes.push(rec);
        if (nodes.length === opts.limit) return { nodes, next: rec.name };
      }
      if (page.length < opts.limit) return { nodes };
      if (scanned >= STALE_SCAN_BUDGET) return { nodes, ...(after !== undefined ? { next: after } : {}) };
    }
  }

  counts(): Promise<Record<NodeState, number>> {
    return this.o.registry.counts();
  }

  listEvents(after: number, limit: number): Promise<MusterEvent[]> {
    return this.o.registry.listEvents(after, limit);
  }

  // ---- tokens ----

  async createToken(opts: {
    ttlMs: number | null;
    maxUses: number | null;
    roles: string[];
    clusters: string[];
    description?: string;
  }): Promise<{ token: string; view: TokenView }> {
    for (const r of opts.roles) assertLabel('role', r);
    for (const c of opts.clusters) assertLabel('cluster', c);
    const now = this.o.clock.now();
    const t = newToken(now, opts);
    await this.o.registry.apply({
      putToken: t,
      events: [
        {
          type: 'token',
          detail: {
            action: 'created',
            id: t.id,
            roles: t.roles,
            clusters: t.clusters,
            maxUses: t.maxUses,
            expiresAt: t.expiresAt,
          },
        },
      ],
    });
    this.log.info(
      { tokenId: t.id, roles: t.roles, clusters: t.clusters, maxUses: t.maxUses },
      'join token created',
    );
    // The token carries the CA pin (kubeadm's discovery hash, DESIGN "Admission policy"): a node that
    // holds it trusts only this registrar's CA, with no other configuration (issue 8, hole 6).
    return {
      token: formatToken({ id: t.id, secret: t.secret, ca: this.o.caFingerprint }),
      view: tokenView(t, now),
    };
  }

  async listTokens(): Promise<TokenView[]> {
    const now = this.o.clock.now();
    return (await this.o.registry.listTokens())
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
      .map((t) => tokenView(t, now));
  }

  async revokeToken(id: string): Promise<TokenView> {
    const t = await this.o.registry.getToken(id);
    if (!t) throw new MusterError('token_not_found', `no join token with id ${id}`);
    const now = this.o.clock.now();
    if (t.revoked) return tokenView(t, now);
    const next = { ...t, revoked: true, revokedAt: new Date(now).toISOString() };
    // Applied by the store to the token as it is then: a use landing meanwhile is kept.
    await this.o.registry.apply({
      tokenUpdate: { id, revokedAt: next.revokedAt },
      events: [{ type: 'token', detail: { action: 'revoked', id } }],
    });
    this.log.info({ tokenId: id }, 'join token revoked');
    return tokenView((await this.o.registry.getToken(id)) ?? next, now);
  }

  /**
   * Unlocks a token that too many bad proofs locked (DESIGN "Lockout"): it admits again, and its
   * count of bad proofs starts again from 0. Unlocking a token that is not locked resets its count.
   */
  async unlockToken(id: string, operator: string): Promise<TokenView> {
    const t = await this.o.registry.getToken(id);
    if (!t) throw new MusterError('token_not_found', `no join token with id ${id}`);
    const now = this.o.clock.now();
    if (!t.locked && !t.badProofs) return tokenView(t, now);
    const { locked: _l, lockedAt: _a, ...rest } = t;
    const next = { ...rest, badProofs: 0 };
    // Applied by the store to the token as it is then: a use landing meanwhile is never undone.
    await this.o.registry.apply({
      tokenUpdate: { id, unlock: true },
      events: [
        { type: 'token', detail: { action: 'unlocked', id, by: operator, badProofs: t.badProofs ?? 0 } },
      ],
    });
    this.log.info({ tokenId: id, by: operator, badProofs: t.badProofs ?? 0 }, 'join token unlocked');
    return tokenView((await this.o.registry.getToken(id)) ?? next, now);
  }

  // ---- install mode ----

  async installModeStatus(): Promise<InstallModeView> {
    const now = this.o.clock.now();
    const s = await this.o.registry.getInstallMode();
    return { ...effectiveInstallMode(s, now), description: describeInstallMode(s, now) };
  }

  async installModeOn(opts: {
    forMs: number;
    max: number | null;
    role?: string;
    cluster?: string;
    remote: boolean;
  }): Promise<InstallModeView> {
    if (!(opts.forMs >= 1000))
      throw new MusterError('bad_request', 'install mode needs a duration of at least 1s (--for)');
    if (opts.max !== null && opts.max < 1) throw new MusterError('bad_request', '--max must be at least 1');
    if (opts.role) assertLabel('role', opts.role);
    if (opts.cluster) assertLabel('cluster', opts.cluster);
    const now = this.o.clock.now();
    const next: InstallModeState = {
      on: true,
      since: now,
      until: now + opts.forMs,
      max: opts.max,
      accepted: 0,
      remote: opts.remote,
      ...(opts.role ? { role: opts.role } : {}),
      ...(opts.cluster ? { cluster: opts.cluster } : {}),
    };
    await this.o.registry.apply({
      setInstallMode: next,
      events: [
        {
          type: 'install-mode',
          detail: {
            on: true,
            until: new Date(next.until!).toISOString(),
            max: next.max,
            role: next.role,
            cluster: next.cluster,
            remote: next.remote,
          },
        },
      ],
    });
    this.log.info({ installMode: describeInstallMode(next, now) }, 'install mode on');
    const admitted = await this.admitWaiting();
    return { ...(await this.installModeStatus()), admitted };
  }

  async installModeOff(reason = 'turned off by the operator'): Promise<InstallModeView> {
    const cur = await this.o.registry.getInstallMode();
    if (cur.on) {
      const next: InstallModeState = { ...cur, on: false, offReason: reason };
      try {
        // Only this window: with registrars sharing a store (etcd), another may have switched it
        // off at the same deadline, or opened a new window meanwhile, which must stay on.
        await this.o.registry.apply({
          setInstallMode: next,
          ...(cur.since !== undefined ? { installModeWindow: cur.since } : {}),
          events: [{ type: 'install-mode', detail: { on: false, reason } }],
        });
        this.log.info({ reason }, 'install mode off');
      } catch (err) {
        if (!isStoreConflict(err, 'install-mode')) throw err;
      }
    }
    return this.installModeStatus();
  }

  /**
   * Admits the pending nodes that install mode, just turned on, would admit if they asked now: the
   * same authorizer, the locality of the address they asked from, the window's --max (the store
   * counts each use, so this never over-admits). Returns their names.
   */
  async admitWaiting(): Promise<string[]> {
    const admitted: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.o.registry.listNodes({
        state: 'pending',
        limit: 500,
        ...(after ? { after } : {}),
      });
      for (const candidate of page) {
        const im = effectiveInstallMode(await this.o.registry.getInstallMode(), this.o.clock.now());
        if (!im.on) return admitted;
        const ok = await this.o.registration.locks.run(candidate.name, async () => {
          const rec = await this.o.registry.getNode(candidate.name);
          if (rec?.state !== 'pending' || !rec.spki) return false;
          const address = rec.addresses[0] ?? '';
          const verdict = await this.o.authorizer.decide({
            name: rec.name,
            role: rec.role,
            cluster: rec.cluster,
            key: rec.key,
            channel: rec.channel,
            address,
            onLink: address !== '' && this.o.isOnLink(address),
            ...(rec.advertisedKey ? { heard: { key: rec.advertisedKey, addresses: [] } } : {}),
            alreadyPending: true,
          });
          if (verdict.kind !== 'accept' || verdict.rule !== 'install-mode') return false;
          try {
            await this.o.registration.admitLocked(rec, rec, verdict, false, {
              key: rec.key,
              address,
              channel: rec.channel,
            });
            return true;
          } catch (err) {
            if (isStoreConflict(err)) return false; // --max reached or the record moved on
            throw err;
          }
        });
        if (ok) admitted.push(candidate.name);
      }
      if (page.length < 500) return admitted;
      after = page[page.length - 1]!.name;
    }
  }

  /** At start and at the deadline: a stored "on" past its deadline or count is written back as off. */
  private async settleInstallMode(): Promise<void> {
    const cur = await this.o.registry.getInstallMode();
    const eff = effectiveInstallMode(cur, this.o.clock.now());
    if (cur.on && !eff.on) await this.installModeOff(eff.offReason);
    else await this.armInstallTimer();
  }

  private async armInstallTimer(): Promise<void> {
    const cur = await this.o.registry.getInstallMode();
    this.disarmInstallTimer();
    if (this.closed || !cur.on || cur.until === undefined) return;
    const ms = cur.until - this.o.clock.now();
    this.installTimer = this.o.clock.setTimeout(
      () => {
        this.installTimer = undefined;
        if (ms > MAX_TIMER_MS) void this.armInstallTimer();
        else
          void this.settleInstallMode().catch((err) =>
            this.log.error({ err }, 'cannot switch install mode off'),
          );
      },
      Math.min(Math.max(ms, 0), MAX_TIMER_MS),
    );
  }

  private disarmInstallTimer(): void {
    if (this.installTimer) this.o.clock.clearTimeout(this.installTimer);
    this.installTimer = undefined;
  }
}

/** A key fingerprint: base64url SHA-256 of the SPKI (43 characters). */
function assertFingerprint(fp: string): void {
  if (!/^[A-Za-z0-9_-]{43}$/.test(fp)) {
    throw new MusterError(
      'bad_request',
      `${JSON.stringify(fp.slice(0, 64))} is not a key fingerprint (43 base64url characters)`,
    );
  }
}
