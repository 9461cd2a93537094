/**
 * The registrar's CRL (issue 9, "revocation that bites"): the revocations of the store, signed by the
 * CA (common/crl.ts) and served at GET /v1/crl. The signed CRL is cached; it is re-signed when a node
 * is removed (the removal and its revocation land in one change, so the watcher sees both) and ahead
 * of its nextUpdate, on the injected clock, so relying parties never hold a stale list.
 */
import type { Clock, TimerHandle } from '../common/clock.js';
import { buildCrlAsync } from '../common/crl.js';
import type { Logger } from '../common/log.js';
import type { Registry } from '../store/registry.js';
import type { CertificateAuthority } from './ca.js';

/** How long a CRL is valid (its nextUpdate after thisUpdate). */
export const CRL_VALIDITY_MS = 7 * 86_400_000;
/** A CRL is re-signed this long before its nextUpdate, so a client never sees it expire. */
export const CRL_RESIGN_BEFORE_MS = 86_400_000;

export interface CrlPublisherOptions {
  ca: CertificateAuthority;
  registry: Registry;
  clock: Clock;
  log: Logger;
  validityMs?: number;
}

export interface SignedCrl {
  der: Buffer;
  number: number;
  thisUpdate: Date;
  nextUpdate: Date;
}

export class CrlPublisher {
  private current: Promise<SignedCrl> | undefined;
  private lastNumber = 0;
  private timer: TimerHandle | undefined;
  private unwatch: (() => void) | undefined;
  private closed = false;

  constructor(private readonly o: CrlPublisherOptions) {}

  /** Watches the store for removals and signs the first CRL. */
  start(): void {
    this.unwatch = this.o.registry.watch((ev) => {
      if (ev.type === 'removed') this.refresh();
    });
    this.refresh();
  }

  close(): void {
    this.closed = true;
    this.unwatch?.();
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The current signed CRL (signing one first when there is none yet). */
  async get(): Promise<SignedCrl> {
    if (!this.current) this.refresh();
    return this.current!;
  }

  /**
   * Signs a new CRL after the one in progress (so a later revocation is never overtaken by an
   * earlier signing). A failed signing is logged and forgotten: the next request signs again.
   */
  refresh(): void {
    const prev = this.current;
    const next = (prev ?? Promise.resolve()).catch(() => undefined).then(() => this.sign());
    this.current = next;
    next.catch((err: unknown) => {
      this.o.log.error({ err }, 'could not sign the CRL');
      if (this.current === next) this.current = undefined;
    });
  }

  private async sign(): Promise<SignedCrl> {
    const now = this.o.clock.now();
    const revocations = await this.o.registry.listRevocations();
    // RFC 5280 §5.2.3: the cRLNumber increases with every CRL. Milliseconds of thisUpdate survive a
    // restart without storage; the previous number + 1 covers two CRLs in one millisecond or a clock
    // stepped back while running.
    const number = Math.max(this.lastNumber + 1, now);
    this.lastNumber = number;
    const thisUpdate = new Date(now);
    const nextUpdate = new Date(now + (this.o.validityMs ?? CRL_VALIDITY_MS));
    const der = await buildCrlAsync(this.o.ca.issuer, {
      number,
      thisUpdate,
      nextUpdate,
      revoked: revocations.map((r) => ({ serial: r.serial, revokedAt: new Date(r.at) })),
    });
    if (!this.closed) this.schedule(nextUpdate.getTime() - now);
    this.o.log.debug({ number, revoked: revocations.length }, 'CRL signed');
    return { der, number, thisUpdate, nextUpdate };
  }

  private schedule(validityMs: number): void {
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    const margin = Math.min(CRL_RESIGN_BEFORE_MS, Math.floor(validityMs / 2));
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = undefined;
      this.refresh();
    }, validityMs - margin);
  }
}
