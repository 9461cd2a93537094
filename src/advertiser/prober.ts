/**
 * Probing for one publication's unique names (RFC 6762 §8.1, §8.2), as one small state machine on an
 * injected Clock and random source that emits packets through a PacketSink (after ciao's Prober.ts).
 *
 *   idle --start()--> waiting (random 0-250 ms) --> probe 1 --250 ms--> probe 2 --250 ms--> probe 3
 *        --250 ms--> won;  a conflicting answer at any point --> conflict;  stop() --> stopped.
 *   A simultaneous probe that wins the tie-break (§8.2) restarts the sequence one second later.
 */
import type { Clock, TimerHandle } from '../common/clock.js';
import {
  conflictsWith,
  rdataKey,
  sameName,
  withoutFlush,
  type DnsRecord,
  type PublicationRecords,
} from './records.js';
import type { PacketSink, Random } from './sink.js';

/** §8.1: three probe queries, 250 ms apart. */
export const PROBE_COUNT = 3;
export const PROBE_INTERVAL_MS = 250;
/** §8.1: the first probe waits a random 0-250 ms, so that hosts powered on together do not collide. */
export const PROBE_FIRST_DELAY_MAX_MS = 250;
/** §8.2: the loser of a simultaneous-probe tie-break waits one second and probes again. */
export const PROBE_DEFER_MS = 1000;

/** What is being claimed: read at each probe, so a TXT changed while probing is probed as changed. */
export interface ProbeClaim {
  records: PublicationRecords;
  /** The host name the A records are for (the SRV target). */
  host: string;
}

export interface ProberEvents {
  /** Every probe went out and nobody objected: the names are ours, announce (§8.3). */
  won(): void;
  /** Another responder answered for one of our names with different data (§8.1, §9). */
  conflict(hit: DnsRecord, from: string): void;
  /** Another host probes for the same name and its data sorts later: we defer (§8.2). */
  deferred?(name: string, from: string): void;
}

export type ProberState = 'idle' | 'probing' | 'won' | 'conflict' | 'stopped';

export class Prober {
  private st: ProberState = 'idle';
  private timer: TimerHandle | undefined;
  private sent = 0;

  constructor(
    private readonly deps: { clock: Clock; random: Random; sink: PacketSink },
    private readonly claim: () => ProbeClaim,
    private readonly events: ProberEvents,
  ) {}

  get state(): ProberState {
    return this.st;
  }

  /** Probes sent in the current sequence (a §8.2 deferral starts a new one). */
  get probesSent(): number {
    return this.sent;
  }

  start(): void {
    if (this.st !== 'idle') return;
    this.st = 'probing';
    this.restart(this.deps.random() * PROBE_FIRST_DELAY_MAX_MS);
  }

  stop(): void {
    this.cancel();
    if (this.st === 'idle' || this.st === 'probing') this.st = 'stopped';
  }

  /**
   * A response heard while probing. Any record that claims one of our names with other data is a
   * conflict, whoever sent it: our own records are not in the responder yet, so they cannot loop back.
   */
  onResponse(records: readonly DnsRecord[], from: string): void {
    if (this.st !== 'probing') return;
    const { records: ours } = this.claim();
    const hit = records.find((r) => conflictsWith(ours, r));
    if (!hit) return;
    this.cancel();
    this.st = 'conflict';
    this.events.conflict(hit, from);
  }

  /**
   * §8.2: another host's probe (a query with an authority section) for one of our names. Compare our
   * proposed records for that name with theirs; if ours sort earlier we lost: wait one second and
   * probe again. Identical data is our own probe looped back.
   */
  onProbe(authorities: readonly DnsRecord[], from: string): void {
    if (this.st !== 'probing') return;
    const { records, host } = this.claim();
    for (const name of [records.fqdn, host]) {
      const theirs = authorities.filter((r) => sameName(r.name, name));
      if (theirs.length === 0) continue;
      const ours = [records.srv, records.txt, ...records.a].filter((r) => sameName(r.name, name));
      const key = (rs: DnsRecord[]): string =>
        rs
          .map((r) => `${r.type} ${rdataKey(r)}`)
          .sort()
          .join('|');
      const [o, t] = [key(ours), key(theirs)];
      if (o === t) continue;
      if (o < t) {
        this.events.deferred?.(name, from);
        this.restart(PROBE_DEFER_MS);
        return;
      }
    }
  }

  private restart(delayMs: number): void {
    this.cancel();
    this.sent = 0;
    this.timer = this.deps.clock.setTimeout(() => this.probe(), delayMs);
  }

  private cancel(): void {
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** §8.1: a query of type ANY for each name we want, our proposed records in the authority section. */
  private probe(): void {
    this.timer = undefined;
    if (this.st !== 'probing') return;
    const { records, host } = this.claim();
    void this.deps.sink.send(
      {
        type: 'query',
        questions: [
          { name: records.fqdn, type: 'ANY' },
          { name: host, type: 'ANY' },
        ],
        // §10.2: the cache-flush bit MUST NOT be set in a probe's authority section.
        authorities: [records.srv, records.txt, ...records.a].map(withoutFlush),
      },
      'probe',
    );
    this.sent++;
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      if (this.st !== 'probing') return;
      if (this.sent < PROBE_COUNT) {
        this.probe();
        return;
      }
      this.st = 'won';
      this.events.won();
    }, PROBE_INTERVAL_MS);
  }
}
