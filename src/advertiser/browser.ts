/**
 * One DNS-SD browse (RFC 6763 §4, RFC 6762 §5.2, §7.1): continuous PTR queries on a back-off schedule
 * (requery.ts), responses into the BrowseCache, up/update/down events out, questions to complete what
 * a response left out, and expiry on the injected Clock. No socket here: queries go out through the
 * PacketSink, responses come in from mdns.ts.
 */
import type { Clock, TimerHandle } from '../common/clock.js';
import { BrowseCache, type BrowseEvent, type Discovered } from './browse-cache.js';
import { MdnsError } from './errors.js';
import type { DnsPacket, DnsQuestion } from './records.js';
import { RequerySchedule } from './requery.js';
import type { PacketSink, Random } from './sink.js';

export interface BrowseHandlers {
  up(s: Discovered): void;
  /** TXT, SRV or addresses of a known instance changed. */
  update?(s: Discovered): void;
  /** Goodbye received (after the 1 s grace of RFC 6762 §10.1) or the PTR expired. */
  down?(s: Discovered): void;
}

export interface BrowseOptions {
  /**
   * Send the first query at once rather than after RFC 6762 §5.2's random 20-120 ms: for a browse
   * whose caller waits on the answer (a node looking for its registrar, node/discovery.ts). §5.1
   * allows a one-shot query to go at once; the series goes on 1 s, 2 s, 4 s ... after it.
   */
  queryAtOnce?: boolean;
}

export interface BrowseHandle {
  stop(): void;
  list(): Discovered[];
}

/** What a browser needs from the responder that holds it (mdns.ts). */
export interface BrowserHost {
  readonly clock: Clock;
  readonly random: Random;
  readonly sink: PacketSink;
  /** A handler threw (MdnsOptions.onError). */
  report(err: Error): void;
  /** The browser stopped: drop it. */
  forgetBrowser(b: Browser): void;
}

/** A question for the same record is asked at most once a second (§5.2's spirit, for resolves too). */
export const RESOLVE_MIN_INTERVAL_MS = 1000;
/** Expiry checks no more often than this, even when many records expire close together. */
const EXPIRY_MIN_DELAY_MS = 50;
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Bounds the resolve throttle's memory; forgetting it only allows one early repeat. */
const MAX_ASKED = 4096;

export class Browser implements BrowseHandle {
  private readonly cache: BrowseCache;
  private readonly schedule: RequerySchedule;
  private expiryTimer: TimerHandle | undefined;
  private readonly asked = new Map<string, number>();
  private stopped = false;

  constructor(
    private readonly core: BrowserHost,
    /** The service type, e.g. `_muster._tcp.local`. */
    private readonly type: string,
    private readonly handlers: BrowseHandlers,
    maxIntervalMs?: number,
    private readonly opts: BrowseOptions = {},
  ) {
    this.cache = new BrowseCache(type);
    this.schedule = new RequerySchedule(core, () => this.query(), maxIntervalMs);
  }

  start(): void {
    this.schedule.start(this.opts.queryAtOnce === true);
  }

  /** The link came up or changed (mdns.ts): query again from the start of the schedule (§5.2). */
  relink(): void {
    this.schedule.restart();
  }

  /** §5.2 continuous querying, with the answers we already hold as known answers (§7.1). */
  private query(): void {
    if (this.stopped) return;
    void this.core.sink.send(
      {
        type: 'query',
        questions: [{ name: this.type, type: 'PTR' }],
        answers: this.cache.knownAnswers(this.core.clock.now()),
      },
      'browse query',
    );
  }

  onResponse(packet: DnsPacket, rinfo: { address: string }): void {
    if (this.stopped) return;
    const now = this.core.clock.now();
    const { events, questions } = this.cache.ingest(packet, rinfo, now);
    this.emit(events);
    this.ask(questions, now);
    this.armExpiry();
  }

  /** Completes partial knowledge (SRV/TXT, or A of the target), at most once a second per question. */
  private ask(questions: DnsQuestion[], now: number): void {
    if (this.stopped) return;
    const fresh = questions.filter((q) => {
      const k = `${q.type} ${q.name.toLowerCase()}`;
      const last = this.asked.get(k);
      if (last !== undefined && now - last < RESOLVE_MIN_INTERVAL_MS) return false;
      this.asked.set(k, now);
      return true;
    });
    if (this.asked.size > MAX_ASKED) this.asked.clear();
    if (fresh.length > 0) void this.core.sink.send({ type: 'query', questions: fresh }, 'resolve query');
  }

  private armExpiry(): void {
    if (this.expiryTimer) this.core.clock.clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const next = this.cache.nextExpiry();
    if (next === undefined || this.stopped) return;
    const delay = Math.min(Math.max(next - this.core.clock.now(), EXPIRY_MIN_DELAY_MS), MAX_TIMER_MS);
    this.expiryTimer = this.core.clock.setTimeout(() => {
      this.expiryTimer = undefined;
      this.emit(this.cache.expire(this.core.clock.now()));
      this.armExpiry();
    }, delay);
  }

  private emit(events: BrowseEvent[]): void {
    for (const ev of events) {
      if (this.stopped) return;
      try {
        const fn =
          ev.kind === 'up'
            ? this.handlers.up
            : ev.kind === 'update'
              ? this.handlers.update
              : this.handlers.down;
        fn?.call(this.handlers, ev.service);
      } catch (err) {
        this.core.report(
          new MdnsError('MUSTER_ERR_MDNS_HANDLER', `mdns: browse ${ev.kind} handler threw: ${String(err)}`, {
            cause: err,
          }),
        );
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.schedule.stop();
    if (this.expiryTimer) this.core.clock.clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.core.forgetBrowser(this);
  }

  list(): Discovered[] {
    return this.cache.list();
  }
}
