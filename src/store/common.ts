/**
 * What every backend does the same way, so that it is written once: the preconditions of a Change
 * on tokens and install mode (DESIGN "Exactly once": the stored count equals the acceptances that
 * landed), reading records written by earlier versions, and delivering events to watchers.
 * Plain functions over plain records: no I/O, no backend's key layout.
 */
import {
  StoreConflict,
  type EventInput,
  type InstallModeState,
  type MusterEvent,
  type NodeRecord,
  type Preapproval,
  type Revocation,
  type TokenRecord,
  type TokenUpdate,
} from './registry.js';

/**
 * A deep copy of a stored record or event: plain objects, arrays and primitives, as the store holds
 * them (they are JSON on disk). Ten times cheaper than structuredClone for these small objects (V8's
 * serializer; ~2 us a record, several a join: docs/benchmarks.md); anything else (a Date, a Buffer, a
 * Map, a class instance) goes to structuredClone, so the copy never shares state with its source.
 */
export function plainCopy<T>(v: T): T {
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) return v.map(plainCopy) as T;
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) return structuredClone(v);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = plainCopy((v as Record<string, unknown>)[k]);
  return out as T;
}

/** The token after one more use, or StoreConflict('token') when it may not be used (nothing changes). */
export function useTokenOnce(t: TokenRecord | undefined, id: string): TokenRecord {
  if (!t) throw new StoreConflict('token', `token ${id} does not exist`);
  if (t.revoked) throw new StoreConflict('token', `token ${id} is revoked`);
  if (t.locked) throw new StoreConflict('token', `token ${id} is locked (too many bad proofs)`);
  if (t.maxUses !== null && t.used >= t.maxUses) {
    throw new StoreConflict('token', `token ${id} has no uses left (${t.used} of ${t.maxUses})`);
  }
  return { ...t, used: t.used + 1 };
}

/** The token after the operator's revoke or unlock (Change.tokenUpdate), as it is when the change lands. */
export function updateTokenOnce(t: TokenRecord | undefined, u: TokenUpdate): TokenRecord {
  if (!t) throw new StoreConflict('token', `token ${u.id} does not exist`);
  let next = t;
  if (u.revokedAt !== undefined && !t.revoked) next = { ...next, revoked: true, revokedAt: u.revokedAt };
  if (u.unlock) {
    const { locked: _l, lockedAt: _a, ...rest } = next;
    next = { ...rest, badProofs: 0 };
  }
  return next;
}

/**
 * The token after one more bad proof, and the event when this one locks it; undefined when nothing
 * changes (unknown id, revoked or already locked: DESIGN "Lockout", no record for unknown ids).
 */
export function tokenBadProofOnce(
  t: TokenRecord | undefined,
  bad: { id: string; max: number; at: string },
): { next: TokenRecord; event?: EventInput } | undefined {
  if (!t || t.revoked || t.locked) return undefined;
  const badProofs = (t.badProofs ?? 0) + 1;
  if (badProofs >= bad.max) {
    return {
      next: { ...t, badProofs, locked: true, lockedAt: bad.at },
      event: { type: 'token', detail: { action: 'locked', id: t.id, badProofs } },
    };
  }
  return { next: { ...t, badProofs } };
}

/**
 * Install mode after one more refused join in the window that began at `since`, and the event when
 * this one reaches `max` and switches it off (Matter's commissioning window). Undefined when that
 * window is not on any more: nothing to count.
 */
export function installModeFailureOnce(
  s: InstallModeState,
  failure: { since: number; max: number },
): { next: InstallModeState; event?: EventInput } | undefined {
  if (!s.on || s.since !== failure.since) return undefined;
  const failures = (s.failures ?? 0) + 1;
  if (failures >= failure.max) {
    const reason = `locked: ${failures} refused attempts`;
    return {
      next: { ...s, failures, on: false, offReason: reason },
      event: { type: 'install-mode', detail: { on: false, reason, failures } },
    };
  }
  return { next: { ...s, failures } };
}

/** Checks that install mode is on in the window that began at `since`, or StoreConflict('install-mode'). */
export function expectInstallModeWindow(s: InstallModeState, since: number): void {
  if (!s.on || s.since !== since) {
    throw new StoreConflict(
      'install-mode',
      `install mode window ${since} is not on (now ${s.on ? s.since : 'off'})`,
    );
  }
}

/** Checks that a pre-approval may be consumed, or StoreConflict('preapproval') (nothing changes). */
export function usePreapprovalOnce(p: Preapproval | undefined, name: string, now?: number): void {
  if (!p) throw new StoreConflict('preapproval', `no pre-approval for ${name}`);
  if (now !== undefined && p.expiresAt !== null && p.expiresAt <= now) {
    throw new StoreConflict('preapproval', `the pre-approval for ${name} has expired`);
  }
}

/** A ban's key in a map: kind first, so that sorting lists by kind, then value. */
export const banId = (kind: string, value: string): string => `${kind}!${value}`;

/**
 * Install mode after one more acceptance in the window that began at `since`, and the event that
 * says it switched off when this acceptance reached its max. StoreConflict('install-mode') when the
 * window is off, another one, or full. Expiry by time is the caller's policy: the store has no clock.
 */
export function useInstallModeOnce(
  s: InstallModeState,
  since: number,
): { next: InstallModeState; event?: EventInput } {
  if (!s.on) throw new StoreConflict('install-mode', 'install mode is off');
  if (s.since !== since) {
    throw new StoreConflict(
      'install-mode',
      `install mode window ${since} is over (now ${s.since ?? 'none'})`,
    );
  }
  if (s.max !== null && s.accepted >= s.max) {
    throw new StoreConflict('install-mode', `install mode accepted its ${s.max} node(s)`);
  }
  const accepted = s.accepted + 1;
  if (s.max !== null && accepted >= s.max) {
    const reason = `${s.max} node(s) accepted`;
    return {
      next: { ...s, accepted, on: false, offReason: reason },
      event: { type: 'install-mode', detail: { on: false, reason } },
    };
  }
  return { next: { ...s, accepted } };
}

/**
 * A node record as stored by any version: records written before revisions existed read as rev 1,
 * and the channel once called 'http' is 'https' (the HTTPS registration endpoint).
 */
export function normaliseNode(raw: unknown): NodeRecord {
  const r = raw as Omit<NodeRecord, 'rev' | 'channel'> & { rev?: number; channel: string };
  return {
    ...r,
    rev: typeof r.rev === 'number' && r.rev > 0 ? r.rev : 1,
    channel: r.channel === 'http' ? 'https' : (r.channel as NodeRecord['channel']),
  };
}

/** A revocation as stored by any version: early ones kept no reason and named the time `at` only. */
export function normaliseRevocation(raw: unknown, serial: string): Revocation {
  const r = raw as Partial<Revocation>;
  return {
    serial: r.serial ?? serial,
    name: r.name ?? '',
    at: r.at ?? '',
    reason: r.reason ?? 'unspecified',
  };
}

/**
 * Delivers events to watchers: in sequence order, each once, never before the change that holds it
 * is durable (the backend calls publish() only then), and only after apply() has resolved: delivery
 * runs on a later turn of the event loop, so the code that awaited apply() has already taken in its
 * result when a watcher hears about it (CONVENTIONS "state first, then the event"). A watcher sees
 * the events that land after it subscribed, never earlier ones.
 */
export class EventDelivery {
  private readonly watchers = new Map<number, { fn: (ev: MusterEvent) => void; after: number }>();
  private nextId = 0;
  private queue: MusterEvent[] = [];
  private scheduled = false;

  /** `landedSeq`: the last event already durable; the watcher gets the ones after it. */
  watch(fn: (ev: MusterEvent) => void, landedSeq: number): () => void {
    const id = this.nextId++;
    this.watchers.set(id, { fn, after: landedSeq });
    return () => void this.watchers.delete(id);
  }

  /** Called once the events are durable, in sequence order. */
  publish(events: readonly MusterEvent[]): void {
    if (events.length === 0) return;
    this.queue.push(...events);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  /**
   * Delivers everything queued now (close() calls it so that no durable event goes unheard). A
   * watcher that throws does not stop delivery to the others; its error is rethrown afterwards, like
   * an EventEmitter listener's: it is a bug in the watcher.
   */
  drain(): void {
    this.scheduled = false;
    const events = this.queue;
    this.queue = [];
    let error: unknown;
    for (const ev of events) {
      for (const [id, w] of [...this.watchers]) {
        // Unsubscribed by another watcher during this delivery: it hears nothing more.
        if (ev.seq <= w.after || !this.watchers.has(id)) continue;
        try {
          w.fn(ev);
        } catch (err) {
          error ??= err;
        }
      }
    }
    if (error !== undefined) throw error;
  }
}
