/**
 * DNS-SD publish and browse over mDNS (DESIGN "Discovery"), bonjour-service behind a small interface.
 *
 * What bonjour-service 1.4.4 gives us, and what we do ourselves (CONVENTIONS "Known pitfalls"):
 * - The socket and the query responder: `new Bonjour(opts, errorCallback)` opens a multicast-dns socket
 *   and its `Server` (dist/lib/mdns-server.js) answers queries from a record registry. We bind by
 *   interface address with `bind: '0.0.0.0'` (without it Linux delivers no multicast) and reuseAddr
 *   (5353 is shared with avahi). Its errorCallback covers only failed answers: socket errors such as
 *   EADDRINUSE are emitted on the multicast-dns emitter, where nobody listens and they would be thrown,
 *   so we listen there too.
 * - Publishing is ours, on that responder, because bonjour's `publish` (dist/lib/registry.js) cannot
 *   do what DESIGN needs: it publishes A records for every interface and `os.hostname()` without
 *   `.local` as host; never sets the cache-flush bit; re-announces the packet it built at first (stale
 *   TXT after any change); has no TXT update; on a name conflict it `console.log`s, then calls
 *   `service.stop()`, which multicasts a goodbye for the *other* host's service name; and its
 *   `Server.unregister` removes records by name only, so stopping one of two services on a host
 *   removes the host's A records for both.
 *   We probe (RFC 6762 §8.1, with the §8.2 tie-break), announce three times (§8.3), update TXT by
 *   re-announcing with cache-flush and no goodbye (§8.4, §10.2), report conflicts (§9) through
 *   onError, and send goodbyes (§10.1) that close() awaits before it closes the socket.
 * - Browsing is ours too (browse-cache.ts says why): continuous querying with back-off 1 s, 2 s, 4 s …
 *   capped (§5.2; bonjour's Browser queries once), known-answer lists (§7.1), TXT through our codec,
 *   addresses from A records or else the packet's source.
 *
 * Only IPv4 (udp4) is used; no AAAA is published.
 */
import os from 'node:os';
import BonjourService from 'bonjour-service';
import { BrowseCache, type BrowseEvent, type Discovered } from './browse-cache.js';
import { MdnsError } from './errors.js';
import {
  SERVICE_TYPES,
  buildRecords,
  checkHostName,
  checkInstanceName,
  conflictsWith,
  goodbye,
  rdataKey,
  sameName,
  withoutFlush,
  type DnsPacket,
  type DnsQuestion,
  type DnsRecord,
  type PublicationRecords,
  type ServiceKind,
} from './records.js';

export type { Discovered } from './browse-cache.js';
export type { ServiceKind } from './records.js';

type LogFn = (obj: Record<string, unknown>, msg: string) => void;
/** pino-compatible. */
export interface MdnsLogger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

export interface MdnsOptions {
  /** IPv4 address of the interface to use (DESIGN `--interface ADDR`); all interfaces when absent. */
  interface?: string;
  /** Default host name for publications, e.g. `node1.local`; default `<instance name>.local`. */
  host?: string;
  logger?: MdnsLogger;
  /** Conflicts, socket errors, failing handlers. Without it they are logged at error level only. */
  onError?: (err: Error) => void;
  /** Probe names before announcing (RFC 6762 §8.1). Default true. */
  probe?: boolean;
  /** Cap of the browse re-query interval (RFC 6762 §5.2). Default 60 s. */
  maxQueryIntervalMs?: number;
}

export interface PublishSpec {
  type: ServiceKind;
  /** Instance name: the registrar id or the node name. */
  name: string;
  port: number;
  txt: Record<string, string>;
  /** SRV target and A record name, `<label>.local`. Default: MdnsOptions.host, else `<name>.local`. */
  host?: string;
}

export type PublicationState = 'probing' | 'announced' | 'conflict' | 'stopped';

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

export interface BrowseHandlers {
  up(s: Discovered): void;
  /** TXT, SRV or addresses of a known instance changed. */
  update?(s: Discovered): void;
  /** Goodbye received (after the 1 s grace of RFC 6762 §10.1) or the PTR expired. */
  down?(s: Discovered): void;
}

export interface BrowseHandle {
  stop(): void;
  list(): Discovered[];
}

export interface Mdns {
  /** Resolves when the socket is bound; rejects with MUSTER_ERR_MDNS_SOCKET if it cannot be. */
  ready(): Promise<void>;
  publish(svc: PublishSpec): Publication;
  browse(type: ServiceKind, handlers: BrowseHandlers): BrowseHandle;
  /** Goodbyes for every publication, awaited, then the socket is closed. Idempotent. */
  close(): Promise<void>;
}

/** The parts of multicast-dns (7.2) we use. */
interface MulticastDns {
  on(
    ev: 'response' | 'query',
    fn: (packet: DnsPacket, rinfo: { address: string; port: number }) => void,
  ): void;
  on(ev: 'error' | 'warning', fn: (err: Error) => void): void;
  on(ev: 'ready', fn: () => void): void;
  removeListener(ev: string, fn: (...args: never[]) => void): void;
  respond(packet: DnsPacket, cb: (err?: Error | null) => void): void;
  query(packet: DnsPacket, cb?: (err?: Error | null) => void): void;
}
/** bonjour-service's Server (private in its types). */
interface BonjourServer {
  mdns: MulticastDns;
  register(records: DnsRecord[]): void;
  unregister(records: DnsRecord[]): void;
}

const ANNOUNCE_COUNT = 3; // RFC 6762 §8.3: at least two, one second apart, intervals doubling
const UPDATE_ANNOUNCE_COUNT = 2; // §8.4: the same rules as for the first announcements
const PROBE_COUNT = 3; // §8.1: three probes 250 ms apart
const PROBE_INTERVAL_MS = 250;
const PROBE_DEFER_MS = 1000; // §8.2: the loser of a tie-break waits one second and probes again
const RESOLVE_MIN_INTERVAL_MS = 1000;

const noop: LogFn = () => undefined;
const silentLogger: MdnsLogger = { debug: noop, info: noop, warn: noop, error: noop };

function unrefTimer(fn: () => void, ms: number): NodeJS.Timeout {
  const t = setTimeout(fn, ms);
  t.unref();
  return t;
}

function localIPv4Addresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((a) => a.family === 'IPv4' && !a.internal)
    .map((a) => a.address);
}

export function createMdns(opts: MdnsOptions = {}): Mdns {
  return new MdnsImpl(opts);
}

class MdnsImpl implements Mdns {
  readonly log: MdnsLogger;
  readonly server: BonjourServer;
  private readonly bonjour: { destroy(cb?: () => void): void };
  private readonly pubs = new Set<PublicationImpl>();
  private readonly browsers = new Set<BrowserImpl>();
  private registered: DnsRecord[] = [];
  private closing: Promise<void> | undefined;
  private readonly readyPromise: Promise<void>;

  constructor(readonly opts: MdnsOptions) {
    this.log = opts.logger ?? silentLogger;
    if (opts.host !== undefined) {
      const bad = checkHostName(opts.host);
      if (bad) throw new TypeError(bad);
    }
    const socketOpts = {
      interface: opts.interface,
      bind: '0.0.0.0', // pitfall: bound to the interface address, Linux delivers no multicast
      reuseAddr: true, // 5353 is shared with avahi-daemon and any other responder on the host
    };
    const bonjour = new BonjourService(socketOpts as never, (err: Error) =>
      this.report(
        new MdnsError('MUSTER_ERR_MDNS_SOCKET', `mDNS send failed: ${err.message}`, { cause: err }),
      ),
    );
    this.bonjour = bonjour;
    this.server = (bonjour as unknown as { server: BonjourServer }).server;
    const mdns = this.server.mdns;
    this.readyPromise = new Promise<void>((resolve, reject) => {
      mdns.on('ready', () => resolve());
      mdns.on('error', (err: Error) => {
        const e = new MdnsError(
          'MUSTER_ERR_MDNS_SOCKET',
          `mDNS socket on ${opts.interface ?? 'all interfaces'} UDP 5353: ${err.message}` +
            ((err as NodeJS.ErrnoException).code === 'EADDRINUSE'
              ? ' (another process holds 5353 without SO_REUSEADDR)'
              : ''),
          { cause: err },
        );
        reject(e);
        this.report(e);
      });
    });
    this.readyPromise.catch(() => undefined); // reported through onError; ready() callers get it too
    mdns.on('warning', (err: Error) => this.log.debug({ err: err.message }, 'mdns: socket warning'));
    mdns.on('response', (packet, rinfo) => this.onResponse(packet, rinfo));
    mdns.on('query', (packet, rinfo) => this.onQuery(packet, rinfo));
  }

  get mdns(): MulticastDns {
    return this.server.mdns;
  }

  ready(): Promise<void> {
    return this.readyPromise;
  }

  report(err: Error): void {
    this.log.error({ err: err.message, code: (err as MdnsError).code }, `mdns: ${err.message}`);
    if (this.opts.onError) {
      try {
        this.opts.onError(err);
      } catch (e) {
        this.log.error({ err: String(e) }, 'mdns: onError handler threw');
      }
    }
  }

  publish(svc: PublishSpec): Publication {
    if (this.closing) throw new MdnsError('MUSTER_ERR_MDNS_CLOSED', 'mdns: publish() after close()');
    const badName = checkInstanceName(svc.name);
    if (badName) throw new TypeError(badName);
    if (!Number.isInteger(svc.port) || svc.port < 1 || svc.port > 65535)
      throw new TypeError(`port must be 1-65535 (got ${svc.port})`);
    // Never the machine's host name by accident (pitfall: in netns every node shares it).
    const host = svc.host ?? this.opts.host ?? `${svc.name}.local`;
    const badHost = checkHostName(host);
    if (badHost) throw new TypeError(`${badHost}; pass host explicitly`);
    const addresses = this.opts.interface ? [this.opts.interface] : localIPv4Addresses();
    if (addresses.length === 0)
      throw new MdnsError('MUSTER_ERR_MDNS_SOCKET', 'mdns: no IPv4 address to publish');
    const pub = new PublicationImpl(this, {
      kind: svc.type,
      name: svc.name,
      host,
      port: svc.port,
      txt: { ...svc.txt },
      addresses,
    });
    this.pubs.add(pub);
    if (this.opts.probe === false) pub.announce();
    else pub.startProbing(Math.random() * PROBE_INTERVAL_MS); // §8.1: random 0–250 ms first delay
    return pub;
  }

  browse(type: ServiceKind, handlers: BrowseHandlers): BrowseHandle {
    if (this.closing) throw new MdnsError('MUSTER_ERR_MDNS_CLOSED', 'mdns: browse() after close()');
    const b = new BrowserImpl(this, SERVICE_TYPES[type], handlers, this.opts.maxQueryIntervalMs ?? 60_000);
    this.browsers.add(b);
    b.start();
    return b;
  }

  forgetBrowser(b: BrowserImpl): void {
    this.browsers.delete(b);
  }

  forgetPublication(p: PublicationImpl): void {
    this.pubs.delete(p);
  }

  livePublications(): PublicationImpl[] {
    return [...this.pubs].filter((p) => p.state === 'announced');
  }

  /**
   * Makes the responder's registry hold exactly the records of the announced publications. bonjour's
   * Server.unregister removes by name, so we remove all we ever put there and add back what is live.
   */
  syncRegistry(): void {
    const current = this.livePublications().flatMap((p) => p.allRecords());
    if (this.registered.length > 0) this.server.unregister(this.registered);
    if (current.length > 0) this.server.register(current);
    this.registered = current;
  }

  send(packet: DnsPacket, what: string): Promise<void> {
    return new Promise((resolve) => {
      const cb = (err?: Error | null): void => {
        if (err)
          this.report(
            new MdnsError('MUSTER_ERR_MDNS_SOCKET', `mDNS ${what} not sent: ${err.message}`, { cause: err }),
          );
        resolve();
      };
      if (packet.type === 'query') this.mdns.query(packet, cb);
      else this.mdns.respond(packet, cb);
    });
  }

  private ownAddresses(): Set<string> {
    return new Set(this.opts.interface ? [this.opts.interface] : localIPv4Addresses());
  }

  private onResponse(packet: DnsPacket, rinfo: { address: string; port: number }): void {
    const records = [...(packet.answers ?? []), ...(packet.additionals ?? [])];
    // Conflicts (RFC 6762 §9). While probing, any differing answer counts (our own records are not in
    // the responder yet); once announced, ignore our own looped-back packets.
    const own = this.ownAddresses().has(rinfo.address);
    for (const pub of [...this.pubs]) {
      if (pub.state !== 'probing' && (pub.state !== 'announced' || own)) continue;
      const hit = records.find((r) => conflictsWith(pub.records, r));
      if (hit) pub.conflict(hit, rinfo.address);
    }
    for (const b of [...this.browsers]) b.onResponse(packet, rinfo);
  }

  /** RFC 6762 §8.2: another host probing for one of our names at the same time. */
  private onQuery(packet: DnsPacket, rinfo: { address: string; port: number }): void {
    const auth = packet.authorities ?? [];
    if (auth.length === 0) return;
    for (const pub of [...this.pubs]) if (pub.state === 'probing') pub.tieBreak(auth, rinfo.address);
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      for (const b of [...this.browsers]) b.stop();
      await Promise.all([...this.pubs].map((p) => p.stop()));
      // Goodbyes are on the wire (their send callbacks ran); only now close the socket.
      await new Promise<void>((resolve) => {
        try {
          this.bonjour.destroy(() => resolve());
        } catch (err) {
          this.log.debug({ err: String(err) }, 'mdns: socket already closed');
          resolve();
        }
      });
    })();
    return this.closing;
  }
}

class PublicationImpl implements Publication {
  state: PublicationState = 'probing';
  records: PublicationRecords;
  private readonly timers = new Set<NodeJS.Timeout>();
  private probesSent = 0;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private stopping: Promise<void> | undefined;
  private failure: Error | undefined;
  private announcedOnce = false;

  constructor(
    private readonly core: MdnsImpl,
    private spec: Parameters<typeof buildRecords>[0],
  ) {
    this.records = buildRecords(spec); // throws TxtEncodeError before anything is sent
  }

  get name(): string {
    return this.spec.name;
  }
  get host(): string {
    return this.spec.host;
  }
  get fqdn(): string {
    return this.records.fqdn;
  }

  allRecords(): DnsRecord[] {
    return [this.records.ptr, this.records.srv, this.records.txt, ...this.records.a, this.records.meta];
  }

  private later(fn: () => void, ms: number): void {
    const t = unrefTimer(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  startProbing(delayMs: number): void {
    this.clearTimers();
    this.probesSent = 0;
    this.later(() => this.sendProbe(), delayMs);
  }

  private sendProbe(): void {
    if (this.state !== 'probing') return;
    // §8.1: a query of type ANY for each name we want, our proposed records in the authority section.
    const { fqdn, srv, txt, a } = this.records;
    void this.core.send(
      {
        type: 'query',
        questions: [
          { name: fqdn, type: 'ANY' },
          { name: this.spec.host, type: 'ANY' },
        ],
        authorities: [srv, txt, ...a].map(withoutFlush),
      },
      'probe',
    );
    this.probesSent++;
    this.later(() => (this.probesSent < PROBE_COUNT ? this.sendProbe() : this.announce()), PROBE_INTERVAL_MS);
  }

  /** §8.2: compare our records for a name with theirs; if ours sort earlier we defer and re-probe. */
  tieBreak(authorities: DnsRecord[], from: string): void {
    for (const name of [this.records.fqdn, this.spec.host]) {
      const theirs = authorities.filter((r) => sameName(r.name, name));
      if (theirs.length === 0) continue;
      const ours = [this.records.srv, this.records.txt, ...this.records.a].filter((r) =>
        sameName(r.name, name),
      );
      const key = (rs: DnsRecord[]): string =>
        rs
          .map((r) => `${r.type} ${rdataKey(r)}`)
          .sort()
          .join('|');
      const [o, t] = [key(ours), key(theirs)];
      if (o === t) continue; // our own probe looped back, or an identical claim
      if (o < t) {
        this.core.log.info({ name, from }, 'mdns: simultaneous probe, deferring one second (RFC 6762 §8.2)');
        this.startProbing(PROBE_DEFER_MS);
        return;
      }
    }
  }

  announce(): void {
    if (this.state !== 'probing') return;
    this.state = 'announced';
    this.core.syncRegistry(); // answer queries from now on
    this.announceSeries(ANNOUNCE_COUNT, true);
    this.core.log.info({ fqdn: this.fqdn, host: this.spec.host, port: this.spec.port }, 'mdns: published');
  }

  /** Unsolicited responses, 1 s apart and doubling (§8.3); each sends the *current* records. */
  private announceSeries(count: number, first: boolean): void {
    this.clearTimers();
    let sent = 0;
    let interval = 1000;
    const send = (): void => {
      if (this.state !== 'announced') return;
      const isFirst = first && sent === 0;
      void this.core.send({ type: 'response', answers: this.allRecords() }, 'announcement').then(() => {
        if (isFirst) this.settle();
      });
      if (++sent < count) {
        this.later(send, interval);
        interval *= 2;
      }
    };
    send();
  }

  updateTxt(txt: Record<string, string>): void {
    if (this.state === 'stopped' || this.state === 'conflict') {
      this.core.log.debug(
        { fqdn: this.fqdn, state: this.state },
        'mdns: updateTxt on a withdrawn publication ignored',
      );
      return;
    }
    const records = buildRecords({ ...this.spec, txt: { ...txt } }); // validates before changing anything
    this.spec = { ...this.spec, txt: { ...txt } };
    this.records = records;
    if (this.state !== 'announced') return; // the probe and the first announcement use the new TXT
    this.core.syncRegistry();
    // §8.4: announce the changed record with cache-flush (§10.2) so caches replace it; no goodbye, so
    // browsers see an update, not the service leaving and coming back. The PTR, SRV and A go along so
    // browsers that only build services from complete packets (bonjour-service's) see it too.
    this.announceSeries(UPDATE_ANNOUNCE_COUNT, false);
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

  conflict(hit: DnsRecord, from: string): void {
    const prev = this.state;
    this.state = 'conflict';
    this.clearTimers();
    this.core.forgetPublication(this);
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
    const wasAnnounced = this.state === 'announced';
    if (this.state !== 'conflict') this.state = 'stopped';
    this.clearTimers();
    this.core.forgetPublication(this);
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
    const records = [this.records.ptr, this.records.srv, this.records.txt];
    if (!others.some((p) => sameName(p.host, this.spec.host))) records.push(...this.records.a);
    if (!others.some((p) => p.records.ptr.name === this.records.ptr.name)) records.push(this.records.meta);
    this.stopping = this.core
      .send({ type: 'response', answers: records.map(goodbye) }, 'goodbye')
      .then(() => {
        this.core.log.info({ fqdn: this.fqdn }, 'mdns: withdrawn (goodbye sent)');
      });
    return this.stopping;
  }
}

class BrowserImpl implements BrowseHandle {
  private readonly cache: BrowseCache;
  private queryTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private interval = 1000;
  private readonly asked = new Map<string, number>();
  private stopped = false;

  constructor(
    private readonly core: MdnsImpl,
    private readonly type: string,
    private readonly handlers: BrowseHandlers,
    private readonly maxInterval: number,
  ) {
    this.cache = new BrowseCache(type);
  }

  start(): void {
    // RFC 6762 §5.2: the first query after a random 20–120 ms, then intervals of 1 s, 2 s, 4 s …
    this.queryTimer = unrefTimer(() => this.query(), 20 + Math.random() * 100);
  }

  private query(): void {
    if (this.stopped) return;
    void this.core.send(
      {
        type: 'query',
        questions: [{ name: this.type, type: 'PTR' }],
        answers: this.cache.knownAnswers(Date.now()),
      },
      'browse query',
    );
    this.queryTimer = unrefTimer(() => this.query(), this.interval);
    this.interval = Math.min(this.interval * 2, this.maxInterval);
  }

  onResponse(packet: DnsPacket, rinfo: { address: string }): void {
    if (this.stopped) return;
    const now = Date.now();
    const { events, questions } = this.cache.ingest(packet, rinfo, now);
    this.emit(events);
    this.ask(questions, now);
    this.armExpiry();
  }

  /** Completes partial knowledge (SRV/TXT, or A of the target), at most once a second per question. */
  private ask(questions: DnsQuestion[], now: number): void {
    const fresh = questions.filter((q) => {
      const k = `${q.type} ${q.name.toLowerCase()}`;
      const last = this.asked.get(k);
      if (last !== undefined && now - last < RESOLVE_MIN_INTERVAL_MS) return false;
      this.asked.set(k, now);
      return true;
    });
    if (this.asked.size > 4096) this.asked.clear();
    if (fresh.length > 0) void this.core.send({ type: 'query', questions: fresh }, 'resolve query');
  }

  private armExpiry(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const next = this.cache.nextExpiry();
    if (next === undefined || this.stopped) return;
    this.expiryTimer = unrefTimer(
      () => {
        this.emit(this.cache.expire(Date.now()));
        this.armExpiry();
      },
      Math.min(Math.max(next - Date.now(), 50), 2 ** 31 - 1),
    );
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
    if (this.queryTimer) clearTimeout(this.queryTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.core.forgetBrowser(this);
  }

  list(): Discovered[] {
    return this.cache.list();
  }
}
