/**
 * One DNS-SD publication's life (RFC 6762 §8, §9, §10): the Prober, then the Announcer, then either a
 * goodbye or a conflict. No socket and no real timer here: packets go out through the PacketSink and
 * time comes from the Clock that mdns.ts (or a test) passes in.
 *
 *   waiting --an address--> probing   (no IPv4 address yet: nothing is sent until one appears)
 *   probing --won--> announced --updateTxt/setAddresses--> announced (re-announced, §8.4)
 *      |                 |--stop()--> stopped (goodbye, §10.1)
 *      |                 '--conflict (§9)--> conflict (no goodbye: the name is the other host's)
 *      |--conflict--> conflict
 *      '--stop()--> stopped (nothing was announced, nothing to withdraw)
 */
import type { Clock } from '../common/clock.js';
import { Announcer } from './announcer.js';
import { MdnsError } from './errors.js';
import { Prober } from './prober.js';
import {
  buildRecords,
  conflictsWith,
  goodbye,
  txtEqual,
  withoutFlush,
  rdataKey,
  sameName,
  type DnsRecord,
  type PublicationRecords,
  type PublicationSpec,
} from './records.js';
import type { MdnsLogger, PacketSink, Random } from './sink.js';

export type PublicationState = 'waiting' | 'probing' | 'announced' | 'conflict' | 'stopped';

export interface Publication {
  readonly name: string;
  readonly fqdn: string;
  readonly host: string;
  readonly state: PublicationState;
  /** Replaces the TXT: one new announcement with cache-flush, no goodbye (RFC 6762 §8.4). */
  updateTxt(txt: Record<string, string>): void;
  /** Resolves once the first announcement is sent; rejects on a name conflict or stop(). */
  whenAnnounced(): Promise<void>;
  /** Withdraws the advertisement: goodbye (TTL 0) sent before the promise resolves. Idempotent. */
  stop(): Promise<void>;
}

/** What a publication needs from the responder that holds it (mdns.ts); it calls upward only here. */
export interface PublicationHost {
  readonly clock: Clock;
  readonly random: Random;
  readonly sink: PacketSink;
  readonly log: MdnsLogger;
  /** The responder must now answer queries from exactly the announced publications' records. */
  syncRegistry(): void;
  /** The publications still announced, to keep the host's A records and the shared PTRs alive. */
  livePublications(): readonly PublicationMachine[];
  /** The publication is over (stopped or lost its name): drop it. */
  forget(p: PublicationMachine): void;
  /** A conflict or another failure for the operator (MdnsOptions.onError). */
  report(err: Error): void;
}

/** Old TXT rdata given a goodbye in each update (muster's TXT takes a handful of values: its modes). */
const MAX_RETIRED_TXT = 4;

export class PublicationMachine implements Publication {
  private st: PublicationState = 'probing';
  private recs: PublicationRecords;
  private readonly prober: Prober;
  private readonly announcer: Announcer;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private stopping: Promise<void> | undefined;
  private failure: Error | undefined;
  private announcedOnce = false;
  /** TXT rdata announced before and since replaced (announcementRecords). */
  private readonly retiredTxt: DnsRecord[] = [];
  private probe = true;

  /** Throws TxtEncodeError (before anything is sent) when the TXT cannot be encoded. */
  constructor(
    private readonly core: PublicationHost,
    private spec: PublicationSpec,
  ) {
    this.recs = buildRecords(spec);
    this.prober = new Prober(core, () => ({ records: this.recs, host: this.spec.host }), {
      won: () => this.announce(),
      conflict: (hit, from) => this.conflict(hit, from),
      deferred: (name, from) =>
        core.log.info({ name, from }, 'mdns: simultaneous probe, deferring one second (RFC 6762 §8.2)'),
    });
    this.announcer = new Announcer(core, () => this.answerRecords());
  }

  get state(): PublicationState {
    return this.st;
  }
  get name(): string {
    return this.spec.name;
  }
  get host(): string {
    return this.spec.host;
  }
  get fqdn(): string {
    return this.recs.fqdn;
  }
  get records(): PublicationRecords {
    return this.recs;
  }

  /**
   * Probes first (§8.1), or announces at once when `probe` is false. Without an address to publish it
   * waits (state `waiting`, nothing sent) until setAddresses() brings one: a registrar started before
   * the network is up must not fail (issue 8 bugs).
   */
  start(probe: boolean): void {
    this.probe = probe;
    if (this.spec.addresses.length === 0) {
      this.st = 'waiting';
      return;
    }
    this.begin();
  }

  private begin(): void {
    this.st = 'probing';
    if (this.probe) this.prober.start();
    else this.announce();
  }

  /**
   * The host's addresses changed (link.ts). Waiting: the first address starts probing. Probing: the
   * remaining probes claim the new A records. Announced: the new A records are announced with
   * cache-flush (§8.4, §10.2), which replaces the old ones in every cache, without a goodbye. No address
   * left: nothing can be sent, so the records stay as they were until one comes back.
   */
  setAddresses(addresses: readonly string[]): void {
    if (this.st === 'stopped' || this.st === 'conflict' || addresses.length === 0) return;
    const same =
      addresses.length === this.spec.addresses.length &&
      addresses.every((a, i) => a === this.spec.addresses[i]);
    if (same) return;
    this.spec = { ...this.spec, addresses: [...addresses] };
    this.recs = buildRecords(this.spec);
    this.core.log.info({ fqdn: this.fqdn, addresses }, 'mdns: host addresses changed');
    if (this.st === 'waiting') this.begin();
    else if (this.st === 'announced') {
      this.core.syncRegistry();
      void this.announcer.update();
    }
  }

  /**
   * What we announce and answer queries with (the responder's registry, mdns.ts): the records, and a
   * goodbye (TTL 0, RFC 6762 §10.1) for each TXT rdata this publication announced before and no longer
   * has. The cache-flush bit alone does not always replace an old TXT (§10.2): a cache keeps what it
   * received less than a second before the flushing record, so an update soon after an announcement
   * or an answer leaves both TXTs in it for 75 minutes; and python-zeroconf keeps a flushed record a
   * while and revives it, reporting no change, when the same rdata comes back (`install-mode off`
   * unannounced, issue 8). A goodbye for that exact rdata removes it wherever it is, and names only the
   * old TXT data: the service itself stays, browsers see one update, never the service leaving. Sent
   * in answers too, so that a cache that missed the announcements still drops it.
   */
  answerRecords(): DnsRecord[] {
    // Without the cache-flush bit: this goodbye removes one rdata and must flush nothing else (§10.2).
    const stale = this.retiredTxt
      .filter((r) => !txtEqual(r.data, this.recs.txt.data))
      .map((r) => withoutFlush(goodbye(r)));
    return [...this.allRecords(), ...stale];
  }

  allRecords(): DnsRecord[] {
    return [this.recs.ptr, this.recs.srv, this.recs.txt, ...this.recs.a, this.recs.meta];
  }

  /** A response from the link. `own`: it came from one of our addresses (our announcements loop back). */
  onResponse(records: readonly DnsRecord[], from: string, own: boolean): void {
    if (this.st === 'probing') {
      this.prober.onResponse(records, from);
      return;
    }
    // §9: once announced, a differing answer for our unique names from another host is a conflict.
    if (this.st !== 'announced' || own) return;
    const hit = records.find((r) => conflictsWith(this.recs, r));
    if (hit) this.conflict(hit, from);
  }

  /** Another host's probe (a query with authorities): the §8.2 tie-break while we probe. */
  onProbe(authorities: readonly DnsRecord[], from: string): void {
    if (this.st === 'probing') this.prober.onProbe(authorities, from);
  }

  private announce(): void {
    if (this.st !== 'probing') return;
    this.st = 'announced';
    this.core.syncRegistry(); // answer queries from now on
    void this.announcer.announce().then(() => this.settle());
    this.core.log.info({ fqdn: this.fqdn, host: this.spec.host, port: this.spec.port }, 'mdns: published');
  }

  updateTxt(txt: Record<string, string>): void {
    if (this.st === 'stopped' || this.st === 'conflict') {
      this.core.log.debug(
        { fqdn: this.fqdn, state: this.st },
        'mdns: updateTxt on a withdrawn publication ignored',
      );
      return;
    }
    const next = { ...this.spec, txt: { ...txt } };
    const old = this.recs.txt;
    this.recs = buildRecords(next); // validates before changing anything
    this.spec = next;
    if (this.st === 'announced' && !this.retiredTxt.some((r) => txtEqual(r.data, old.data))) {
      this.retiredTxt.push(old);
      if (this.retiredTxt.length > MAX_RETIRED_TXT) this.retiredTxt.shift();
    }
    if (this.st !== 'announced') return; // the remaining probes and the first announcement use the new TXT
    this.core.syncRegistry();
    // §8.4: announce the changed record with cache-flush (§10.2) so caches replace it, and a goodbye
    // for the old TXT data only (answerRecords); never for the service, so browsers see an update, not
    // the service leaving and coming back. The PTR, SRV and A go along so browsers that only build
    // services from complete packets (bonjour-service's) see it too.
    void this.announcer.update();
  }

  whenAnnounced(): Promise<void> {
    if (this.announcedOnce) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Settles whenAnnounced(): resolved by the first announcement, or rejected if none will come. */
  private settle(err?: Error): void {
    if (this.announcedOnce || this.failure) return;
    if (err) this.failure = err;
    else this.announcedOnce = true;
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  private conflict(hit: DnsRecord, from: string): void {
    const prev = this.st;
    this.st = 'conflict';
    this.prober.stop();
    this.announcer.cancel();
    this.core.forget(this);
    if (prev === 'announced') this.core.syncRegistry();
    // No goodbye: the name belongs to the other responder, and a goodbye for the shared PTR would make
    // every browser drop *its* service.
    const what = sameName(hit.name, this.fqdn)
      ? `the service instance name ${this.fqdn}`
      : `the host name ${this.spec.host}`;
    const err = new MdnsError(
      'MUSTER_ERR_MDNS_NAME_CONFLICT',
      `mDNS name conflict: ${from} already uses ${what} (${hit.type} ${rdataKey(hit)}); ` +
        `this advertisement is withdrawn. Give this machine its own name (DESIGN "Node names").`,
    );
    this.settle(err);
    this.core.report(err);
  }

  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    const wasAnnounced = this.st === 'announced';
    if (this.st !== 'conflict') this.st = 'stopped';
    this.prober.stop();
    this.announcer.cancel();
    this.core.forget(this);
    this.settle(
      new MdnsError('MUSTER_ERR_MDNS_CLOSED', `mdns: ${this.fqdn} stopped before it was announced`),
    );
    if (!wasAnnounced) {
      this.stopping = Promise.resolve();
      return this.stopping;
    }
    this.core.syncRegistry();
    // §10.1: goodbye = the records with TTL 0. The A records and the meta PTR only when no other live
    // publication still needs them.
    const others = this.core.livePublications();
    const records = [this.recs.ptr, this.recs.srv, this.recs.txt];
    if (!others.some((p) => sameName(p.host, this.spec.host))) records.push(...this.recs.a);
    if (!others.some((p) => p.records.ptr.name === this.recs.ptr.name)) records.push(this.recs.meta);
    this.stopping = this.announcer.goodbye(records).then(() => {
      this.core.log.info({ fqdn: this.fqdn }, 'mdns: withdrawn (goodbye sent)');
    });
    return this.stopping;
  }
}
