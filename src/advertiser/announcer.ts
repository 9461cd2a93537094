/**
 * Announcing one publication (RFC 6762 §8.3, §8.4) and withdrawing it (§10.1), as one small state
 * machine on an injected Clock that emits packets through a PacketSink (after ciao's Announcer.ts).
 *
 * - announce(): unsolicited responses now, then 1 s, 2 s, ... apart (§8.3: at least two, one second
 *   apart, the interval at least doubling). Each carries the records *current at that moment*, so an
 *   update made during a series is never followed by a stale repeat.
 * - update(): a changed record is announced the same way (§8.4). The unique records carry the
 *   cache-flush bit (records.ts, §10.2), so caches replace the old TXT; no goodbye is sent first, so
 *   browsers see one change instead of the service leaving and coming back.
 * - goodbye(): the given records once with TTL 0 (§10.1); any running series is cancelled first.
 */
import type { Clock, TimerHandle } from '../common/clock.js';
import { goodbye, type DnsRecord } from './records.js';
import type { PacketSink } from './sink.js';

/** §8.3 allows two to eight; three rides out one lost packet and stays quiet. */
export const ANNOUNCE_COUNT = 3;
/** §8.4: an update follows the rules of the first announcements; two suffice for one changed record. */
export const UPDATE_ANNOUNCE_COUNT = 2;
/** §8.3: one second between the first two, then doubling. */
export const ANNOUNCE_FIRST_INTERVAL_MS = 1000;

export class Announcer {
  private timer: TimerHandle | undefined;
  private withdrawn = false;

  constructor(
    private readonly deps: { clock: Clock; sink: PacketSink },
    /** The records to announce, read at each send. */
    private readonly records: () => DnsRecord[],
  ) {}

  /** Whether announcements of a series are still due. */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /**
   * Starts a series of `count` announcements, the first at once; replaces a series still running.
   * Resolves when the first has been sent.
   */
  announce(count = ANNOUNCE_COUNT): Promise<void> {
    this.cancel();
    if (this.withdrawn) return Promise.resolve();
    let sent = 0;
    let interval = ANNOUNCE_FIRST_INTERVAL_MS;
    const send = (): Promise<void> => {
      this.timer = undefined;
      const done = this.deps.sink.send({ type: 'response', answers: this.records() }, 'announcement');
      if (++sent < count) {
        this.timer = this.deps.clock.setTimeout(() => void send(), interval);
        interval *= 2;
      }
      return done;
    };
    return send();
  }

  /** §8.4: re-announce after a record changed (the cache-flush bit replaces it; no goodbye). */
  update(): Promise<void> {
    return this.announce(UPDATE_ANNOUNCE_COUNT);
  }

  /** Cancels what is still due of a series. */
  cancel(): void {
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * §10.1: sends `records` with TTL 0, once, and announces nothing after it. Resolves when it has been
   * sent, so that a caller can close the socket only then.
   */
  goodbye(records: readonly DnsRecord[]): Promise<void> {
    this.cancel();
    this.withdrawn = true;
    if (records.length === 0) return Promise.resolve();
    return this.deps.sink.send({ type: 'response', answers: records.map(goodbye) }, 'goodbye');
  }
}
