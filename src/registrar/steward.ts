/**
 * The steward (issue 9, item 6): garbage collection of records nobody will finish. A `heard` hint, a
 * `pending` request the operator never decided and an `issued` certificate the node never
 * acknowledged expire after their TTLs, each with a `gc` event. The store has no delete, so each
 * moves to a state that frees its name for another key (the next join archives it):
 *
 * - heard and pending -> `rejected`, decided "expired after TTL". Not `removed`: nothing was issued,
 *   so nothing is revoked, and the same key may ask again (a GC'd record is decided afresh, see
 *   Registration.joinLocked), while another key takes the name as it takes any rejected one.
 * - issued but never acknowledged -> `removed`, its certificate revoked like `muster nodes remove`:
 *   a certificate out there that the node never confirmed it holds must not stay valid.
 *
 * A sweep runs once at start and then on a timer of the injected clock (CONVENTIONS 2), paging
 * through listWaiting({state}): the state index's entries, each with the time the record entered its
 * state, never the records themselves (issue 12 target 2: on a million records the first sweep read
 * ~50,000 of them within seconds of every start, and the level store's mmapped tables put ~700 MB
 * in the registrar's RSS). Only a record past its TTL is read: again under its lock, and written
 * with compare-and-set, so a record that moved on since the page was read is left alone.
 */
import type { Clock, TimerHandle } from '../common/clock.js';
import type { Logger } from '../common/log.js';
import { isStoreConflict, stateEnteredAt, type Registry } from '../store/registry.js';
import type { NodeRecord } from '../store/types.js';
import type { Registration } from './registration.js';

export const DEFAULT_HEARD_TTL_MS = 24 * 3600_000;
export const DEFAULT_PENDING_TTL_MS = 7 * 24 * 3600_000;
export const DEFAULT_UNACKED_TTL_MS = 7 * 24 * 3600_000;
export const GC_INTERVAL_MS = 10 * 60_000;
/** The decision detail of a heard or pending record the steward expired. */
export const GC_DETAIL = 'expired after TTL';

export interface StewardOptions {
  registry: Registry;
  registration: Registration;
  clock: Clock;
  log: Logger;
  /** 0: never expire. */
  heardTtlMs?: number;
  pendingTtlMs?: number;
  unackedTtlMs?: number;
  intervalMs?: number;
  /** Records read per page. */
  pageSize?: number;
}

type Swept = 'heard' | 'pending' | 'issued';

/** Is this a heard or pending record that the steward expired (not a decision of the operator)? */
export function expiredByGc(rec: NodeRecord): boolean {
  return (
    rec.state === 'rejected' && rec.decision?.rule === 'refused' && rec.decision.detail.startsWith(GC_DETAIL)
  );
}

export class Steward {
  private timer: TimerHandle | undefined;
  private closed = false;
  private running: Promise<number> | undefined;

  constructor(private readonly o: StewardOptions) {}

  private ttl(state: Swept): number {
    if (state === 'heard') return this.o.heardTtlMs ?? DEFAULT_HEARD_TTL_MS;
    if (state === 'pending') return this.o.pendingTtlMs ?? DEFAULT_PENDING_TTL_MS;
    return this.o.unackedTtlMs ?? DEFAULT_UNACKED_TTL_MS;
  }

  /** Runs a sweep now, then every interval. */
  start(): void {
    const tick = (): void => {
      this.timer = undefined;
      if (this.closed) return;
      void this.sweep()
        .catch((err: unknown) =>
          this.o.log.error({ err: (err as Error).message }, 'garbage collection failed'),
        )
        .finally(() => {
          if (!this.closed) this.timer = this.o.clock.setTimeout(tick, this.o.intervalMs ?? GC_INTERVAL_MS);
        });
    };
    tick();
  }

  close(): void {
    this.closed = true;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One pass over heard, pending and issued records; resolves to the number expired. */
  sweep(): Promise<number> {
    this.running ??= this.sweepAll().finally(() => (this.running = undefined));
    return this.running;
  }

  private async sweepAll(): Promise<number> {
    let n = 0;
    for (const state of ['heard', 'pending', 'issued'] as const) {
      const ttl = this.ttl(state);
      if (ttl <= 0) continue;
      const limit = this.o.pageSize ?? 500;
      let after: string | undefined;
      for (;;) {
        const page = await this.o.registry.listWaiting({ state, limit, ...(after ? { after } : {}) });
        const now = this.o.clock.now();
        for (const e of page) if (now >= e.enteredAt + ttl && (await this.expire(e.name, state, ttl))) n++;
        if (page.length < limit || this.closed) break;
        after = page[page.length - 1]!.name;
      }
    }
    return n;
  }

  private async expire(name: string, state: Swept, ttl: number): Promise<boolean> {
    return this.o.registration.locks.run(name, async () => {
      const rec = await this.o.registry.getNode(name);
      const now = this.o.clock.now();
      if (!rec || rec.state !== state || now < stateEnteredAt(rec) + ttl) return false;
      const nowIso = new Date(now).toISOString();
      const ttlText = `${Math.round(ttl / 1000)}s`;
      try {
        if (state === 'issued') {
          const reason = `never acknowledged its certificate: ${GC_DETAIL} (${ttlText})`;
          await this.o.registry.apply({
            nodes: [
              {
                expectRev: rec.rev,
                next: {
                  ...rec,
                  state: 'removed',
                  decision: { rule: 'removed', detail: reason, at: nowIso },
                  times: { ...rec.times, removed: nowIso },
                },
              },
            ],
            ...(rec.serial ? { revoke: { serial: rec.serial, name, at: nowIso, reason } } : {}),
            events: [
              { type: 'gc', name, detail: { from: state, reason, key: rec.key } },
              // The CRL publisher re-signs on `removed` (registrar/crl.ts).
              { type: 'removed', name, detail: { reason, serial: rec.serial } },
            ],
          });
        } else {
          const reason = `${GC_DETAIL} (${ttlText}): ${state === 'heard' ? 'heard over mDNS but never asked to join' : 'never approved'}`;
          const { pendingReason: _p, ...rest } = rec;
          await this.o.registry.apply({
            nodes: [
              {
                expectRev: rec.rev,
                next: {
                  ...rest,
                  state: 'rejected',
                  decision: { rule: 'refused', detail: reason, at: nowIso },
                  times: { ...rec.times, rejected: nowIso },
                },
              },
            ],
            events: [{ type: 'gc', name, detail: { from: state, reason, key: rec.key } }],
          });
        }
      } catch (err) {
        if (isStoreConflict(err)) return false; // it moved on meanwhile: nothing to collect
        throw err;
      }
      this.o.log.info({ node: name, from: state, key: rec.key }, 'garbage collected a record past its TTL');
      return true;
    });
  }
}
