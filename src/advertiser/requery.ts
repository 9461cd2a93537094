/**
 * Continuous querying for a browser (RFC 6762 §5.2), on an injected Clock and random source.
 *
 * The first query goes out after a random 20-120 ms (so that browsers started together do not query in
 * the same instant); the following ones 1 s, 2 s, 4 s ... after the one before, the interval doubling up
 * to a cap (§5.2: the first two at least one second apart, then at least doubling; a cap below one
 * second is raised to one second). bonjour-service's Browser queries once; a responder such as avahi
 * does not answer a query that comes less than 500 ms after it multicast the same answer, so without
 * repeats a service can stay invisible (CONVENTIONS "Known pitfalls").
 */
import type { Clock, TimerHandle } from '../common/clock.js';
import type { Random } from './sink.js';

/** §5.2: the first query after 20-120 ms. */
export const FIRST_QUERY_MIN_MS = 20;
export const FIRST_QUERY_JITTER_MS = 100;
/** §5.2: one second between the first two queries, then doubling. */
export const REQUERY_FIRST_INTERVAL_MS = 1000;
/** Default cap of the interval. §5.2 suggests stopping the doubling at an hour; a muster node wants
 * a registrar that comes up later to be found within a minute. */
export const REQUERY_DEFAULT_MAX_MS = 60_000;

export class RequerySchedule {
  private timer: TimerHandle | undefined;
  private interval: number;
  private stopped = false;
  private readonly maxIntervalMs: number;

  constructor(
    private readonly deps: { clock: Clock; random: Random },
    /** Sends one query; called at each due time. */
    private readonly query: () => void,
    maxIntervalMs = REQUERY_DEFAULT_MAX_MS,
  ) {
    this.maxIntervalMs = Math.max(maxIntervalMs, REQUERY_FIRST_INTERVAL_MS);
    this.interval = REQUERY_FIRST_INTERVAL_MS;
  }

  /**
   * Starts the schedule. `atOnce`: the first query now instead of after 20-120 ms, for a querier that
   * wants an answer now (§5.1 lets a one-shot query go at once; §5.2's delay is there so that hosts
   * started together by a power cut do not query in the same instant). The rest of the series keeps
   * its 1 s, 2 s, 4 s ... intervals from that first query.
   */
  start(atOnce = false): void {
    if (this.stopped || this.timer) return;
    if (atOnce) this.fire();
    else this.arm(FIRST_QUERY_MIN_MS + this.deps.random() * FIRST_QUERY_JITTER_MS);
  }

  /**
   * Starts the schedule over: the next query after 20-120 ms, then 1 s, 2 s ... again. For a link that
   * just came up (an address appeared): what was asked before went nowhere.
   */
  restart(): void {
    if (this.stopped) return;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.interval = REQUERY_FIRST_INTERVAL_MS;
    this.start();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number): void {
    this.timer = this.deps.clock.setTimeout(() => this.fire(), ms);
  }

  private fire(): void {
    this.timer = undefined;
    if (this.stopped) return;
    const next = this.interval;
    this.interval = Math.min(this.interval * 2, this.maxIntervalMs);
    this.arm(next); // armed first, so the schedule holds whatever query() does
    this.query();
  }
}
