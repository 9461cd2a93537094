/**
 * Rate limits on failures, not on herds (issue 8, hole 7). A rack of machines behind one NAT address
 * joining at once is the product working; a client guessing tokens, replaying proofs or squatting
 * names is not. So what is counted is refusals (4xx answers: bad proofs, wrong clusters, taken
 * names, malformed requests), per source (an IPv4 address or an IPv6 /64) and in total; successful
 * joins, pending answers and long polls never count. A source over its budget, or any source that
 * has failed while the total is over the global budget, gets 429 with Retry-After until the window
 * turns.
 */

export interface FailureLimitOptions {
  /** Refusals per source per window. */
  perSource: number;
  /** Refusals of all sources per window. */
  global: number;
  windowMs: number;
  now: () => number;
  /** Sources tracked at most per window (memory bound under a spoofed-source flood). */
  maxSources?: number;
}

export class FailureLimiter {
  private windowStart = -Infinity;
  private bySource = new Map<string, number>();
  private total = 0;

  constructor(private readonly o: FailureLimitOptions) {}

  private roll(): number {
    const now = this.o.now();
    if (now - this.windowStart >= this.o.windowMs) {
      this.windowStart = now;
      this.bySource = new Map();
      this.total = 0;
    }
    return now;
  }

  /** Seconds to wait when `source` may not be heard now; undefined when it may. */
  blocked(source: string): number | undefined {
    const now = this.roll();
    const n = this.bySource.get(source) ?? 0;
    if (n >= this.o.perSource || (this.total >= this.o.global && n > 0)) {
      return Math.max(1, Math.ceil((this.windowStart + this.o.windowMs - now) / 1000));
    }
    return undefined;
  }

  /** Counts one refusal answered to `source`. */
  record(source: string): void {
    this.roll();
    this.total++;
    const n = this.bySource.get(source);
    if (n !== undefined) this.bySource.set(source, n + 1);
    else if (this.bySource.size < (this.o.maxSources ?? 100_000)) this.bySource.set(source, 1);
  }
}
