/**
 * Pending records by source (issue 8: anyone who reaches the API could fill the pending queue for
 * everyone). Counts, per client (an IPv4 address or an IPv6 /64, common/net.ts sourceKey), the
 * records that wait for approval, from the store's events: a `pending` event names its address; any
 * later event about that name means it no longer waits (accepted, rejected, removed, archived).
 */
import { sourceKey } from '../../common/net.js';
import type { Registry } from '../../store/registry.js';
import type { MusterEvent } from '../../store/types.js';

export class PendingSources {
  private readonly byName = new Map<string, string>();
  private readonly counts = new Map<string, number>();
  private readonly unwatch: () => void;
  private loaded: Promise<void> | undefined;
  private closed = false;

  private constructor(private readonly registry: Registry) {
    this.unwatch = registry.watch((ev) => this.onEvent(ev));
  }

  /**
   * Follows the store's events from now; the pending records there already are get read by load(),
   * which the registrar calls once it is ready (issue 12 target 2: the read shares the one thread
   * with the start, so it waits until the registrar serves), or by the first count(), whichever comes
   * first.
   */
  static open(registry: Registry): PendingSources {
    return new PendingSources(registry);
  }

  /** Reads the stored pending records (paged, the state index's entries), once; count() waits for it. */
  load(): Promise<void> {
    if (this.loaded) return this.loaded;
    this.loaded = (async () => {
      let after: string | undefined;
      while (!this.closed) {
        // The state index's entries, not the records (issue 12 target 2: store/level.ts listWaiting).
        const page = await this.registry.listWaiting({
          state: 'pending',
          limit: 1000,
          ...(after ? { after } : {}),
        });
        for (const e of page) if (!this.byName.has(e.name) && e.address) this.add(e.name, e.address);
        if (page.length < 1000) break;
        after = page[page.length - 1]!.name;
      }
    })();
    // A failed load fails the count() calls that wait for it; closing stops it (the store closes next).
    this.loaded.catch(() => undefined);
    return this.loaded;
  }

  async count(address: string): Promise<number> {
    await this.load();
    // The store delivers the events of a durable change on a later turn of the event loop
    // (store/common.ts EventDelivery): let those queued now arrive first, so that a decision made right
    // after a change (this registrar's last pending record, an operator's rejection) counts it.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return this.counts.get(sourceKey(address)) ?? 0;
  }

  close(): void {
    this.closed = true;
    this.unwatch();
  }

  private onEvent(ev: MusterEvent): void {
    if (!ev.name) return;
    if (ev.type === 'pending') {
      const address = typeof ev.detail?.address === 'string' ? ev.detail.address : undefined;
      this.drop(ev.name);
      if (address) this.add(ev.name, address);
    } else if (ev.type !== 'heard') {
      this.drop(ev.name);
    }
  }

  private add(name: string, address: string): void {
    const k = sourceKey(address);
    this.byName.set(name, k);
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }

  private drop(name: string): void {
    const k = this.byName.get(name);
    if (k === undefined) return;
    this.byName.delete(name);
    const n = (this.counts.get(k) ?? 1) - 1;
    if (n > 0) this.counts.set(k, n);
    else this.counts.delete(k);
  }
}
