/**
 * Admission of join requests (DESIGN "HTTPS API": the registrar sheds load with 503 + Retry-After).
 * A herd of nodes booting at once asks faster than any registrar signs. Refusing everything beyond a
 * fixed number in flight with `Retry-After: 2` costs each refused node at least 2 s and the registrar
 * another request; a FIFO queue in front of the joins holds the request instead, on the connection it
 * came in on, until a slot frees. The queue is bounded in length (a hostile flood cannot grow memory
 * without bound: a queued join holds its parsed body, a few kB) and in time (a join that would wait
 * longer than `maxWaitMs` is answered 503 now, before the node's own request timeout, 15 s in
 * join-loop.ts, would make it give up on an answer the registrar then computes for nothing).
 *
 * A refused request gets a Retry-After from the measured drain rate and spread over time: each one is
 * given the next free instant after what is queued and what was already sent away, so the nodes come
 * back at the rate the registrar serves them rather than all together (the node adds its own jitter,
 * join-loop.ts retryAfterDelay).
 */
import type { Clock, TimerHandle } from '../common/clock.js';

export interface JoinGateOptions {
  /** Joins running at once (the rest wait in the queue). 0 refuses every join. */
  slots: number;
  /** Joins waiting at most; beyond, 503 at once. */
  maxQueued: number;
  /** A join expected to wait longer than this is refused at once; one that did is refused then. */
  maxWaitMs: number;
  clock: Pick<Clock, 'now' | 'setTimeout' | 'clearTimeout'>;
  /** Joins per second assumed until some have finished (default 50). */
  initialRate?: number;
}

/** Refusal: the registrar is full; come back in `retryAfterS` seconds. */
export class GateFull extends Error {
  constructor(
    readonly retryAfterS: number,
    readonly why: 'queue full' | 'waited too long' | 'no slots' | 'client gone',
  ) {
    super(why);
  }
}

interface Waiter {
  start: () => void;
  fail: (e: Error) => void;
  timer: TimerHandle;
}

/** How many recent completions the drain rate is measured over. */
const RATE_WINDOW = 64;
/** Retry-After bounds, in seconds. */
const MIN_RETRY_S = 1;
const MAX_RETRY_S = 60;

export class JoinGate {
  private running = 0;
  private readonly queue: Waiter[] = [];
  /** Completion instants, oldest first (at most RATE_WINDOW). */
  private readonly done: number[] = [];
  /** The instant until which the queue and the nodes already sent away keep the registrar busy. */
  private promisedUntil = 0;

  constructor(private readonly o: JoinGateOptions) {}

  get stats(): { running: number; queued: number; ratePerS: number } {
    return { running: this.running, queued: this.queue.length, ratePerS: this.rate() };
  }

  /** Joins finished per second over the recent ones, or the initial guess. */
  rate(): number {
    const n = this.done.length;
    if (n >= 8) {
      const span = this.done[n - 1]! - this.done[0]!;
      if (span > 0) return ((n - 1) * 1000) / span;
    }
    return this.o.initialRate ?? 50;
  }

  /** Expected wait, in ms, for a join that joins the queue now. */
  private expectedWaitMs(): number {
    return ((this.queue.length + 1) * 1000) / this.rate();
  }

  /** Retry-After for a refused join: the next free instant after the queue and earlier refusals. */
  private refusal(why: GateFull['why']): GateFull {
    const now = this.o.clock.now();
    const step = 1000 / this.rate();
    const at = Math.max(now + this.queue.length * step, this.promisedUntil) + step;
    this.promisedUntil = at;
    const s = Math.ceil((at - now) / 1000);
    return new GateFull(Math.min(MAX_RETRY_S, Math.max(MIN_RETRY_S, s)), why);
  }

  /**
   * Runs `fn` when a slot is free: now, or after waiting in the queue. Throws GateFull (nothing run)
   * when the queue is full, the wait would be too long, or it was. `gone` (the client closed the
   * connection) takes a waiting join out of the queue.
   */
  async run<T>(fn: () => Promise<T>, gone?: AbortSignal): Promise<T> {
    if (this.o.slots <= 0) {
      // Nothing ever runs: no rate to go by; the old fixed hint.
      throw new GateFull(2, 'no slots');
    }
    if (this.running < this.o.slots && this.queue.length === 0) this.running++;
    else {
      if (this.queue.length >= this.o.maxQueued || this.expectedWaitMs() > this.o.maxWaitMs)
        throw this.refusal('queue full');
      await new Promise<void>((resolve, reject) => {
        const w: Waiter = {
          start: resolve,
          fail: reject,
          timer: this.o.clock.setTimeout(() => {
            this.remove(w);
            reject(this.refusal('waited too long'));
          }, this.o.maxWaitMs),
        };
        this.queue.push(w);
        gone?.addEventListener(
          'abort',
          () => {
            // Nobody reads the answer; the join is dropped without being worked on.
            if (this.remove(w)) reject(new GateFull(MIN_RETRY_S, 'client gone'));
          },
          { once: true },
        );
      });
    }
    // The slot is ours: counted above, or handed over by release() with `running` unchanged.
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Takes a waiting join out of the queue; false when it is no longer there (started or refused). */
  private remove(w: Waiter): boolean {
    const i = this.queue.indexOf(w);
    if (i < 0) return false;
    this.queue.splice(i, 1);
    this.o.clock.clearTimeout(w.timer);
    return true;
  }

  private release(): void {
    const now = this.o.clock.now();
    this.done.push(now);
    if (this.done.length > RATE_WINDOW) this.done.shift();
    const next = this.queue.shift();
    if (next) {
      // Hand the slot over: `running` stays as it is.
      this.o.clock.clearTimeout(next.timer);
      next.start();
    } else this.running--;
  }
}
