/**
 * Delivery: the node's long poll (DESIGN "GET /v1/join/:name"). A waiting request is parked until an
 * event about its node arrives from the store's watch (the operator's approval wakes it at once) or
 * its wait runs out on the injected clock; there is no polling loop. One store watch serves every
 * waiter, indexed by node name.
 */
import type { Clock } from '../common/clock.js';
import type { Registry } from '../store/registry.js';
import type { MusterEvent } from '../store/types.js';

export const MAX_WAIT_MS = 60_000;

export class Delivery {
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly unwatch: () => void;
  private closed = false;

  constructor(
    registry: Registry,
    private readonly clock: Clock,
  ) {
    this.unwatch = registry.watch((ev: MusterEvent) => {
      if (ev.name) this.wake(ev.name);
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private wake(name: string): void {
    const set = this.waiters.get(name);
    if (!set) return;
    this.waiters.delete(name);
    for (const w of set) w();
  }

  /**
   * Resolves at the next event about `name`, after `ms`, or at close(), whichever comes first. The
   * waiter is registered before this returns: call it BEFORE reading the state it waits on, so an
   * event between the read and the wait is not lost.
   */
  arm(name: string, ms: number): { wait: Promise<void>; cancel: () => void } {
    let done!: () => void;
    const wait = new Promise<void>((r) => (done = r));
    if (this.closed) {
      done();
      return { wait, cancel: () => undefined };
    }
    let set = this.waiters.get(name);
    if (!set) this.waiters.set(name, (set = new Set()));
    const timer = this.clock.setTimeout(() => finish(), Math.max(0, ms));
    const finish = (): void => {
      this.clock.clearTimeout(timer);
      const s = this.waiters.get(name);
      if (s) {
        s.delete(finish);
        if (!s.size) this.waiters.delete(name);
      }
      done();
    };
    set.add(finish);
    return { wait, cancel: finish };
  }

  /** Number of long polls parked (metrics, tests). */
  get parked(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }

  /** Wakes every waiter (they answer 202 and the nodes come back); no new waits park. */
  close(): void {
    this.closed = true;
    this.unwatch();
    for (const name of [...this.waiters.keys()]) this.wake(name);
  }
}
