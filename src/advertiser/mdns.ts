/**
 * DNS-SD publish and browse over mDNS (DESIGN "Discovery"), bonjour-service behind a small interface.
 *
 * What bonjour-service 1.4.4 gives us, and what we do ourselves (CONVENTIONS "Known pitfalls"):
 * - The socket and the query responder: bonjour's `Server` (dist/lib/mdns-server.js, what
 *   `new Bonjour(opts, errorCallback)` makes) opens a multicast-dns socket and answers queries from a
 *   record registry. We bind by interface address with `bind: '0.0.0.0'` (without it Linux delivers
 *   no multicast) and reuseAddr
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
 * - Received packets are checked before anyone sees them (issue 8 hole 1): only from the link the socket
 *   serves, responses only from port 5353 (RFC 6762 §5.5, §6, §11, link.ts); queries from other ports
 *   get a unicast legacy answer (§6.7, legacy.ts). So bonjour's responder hears queries through us: we
 *   take its 'query' listener off the socket and call it for the queries that pass.
 * - No address yet (the network is not up at boot) is not an error: publications wait, the interfaces
 *   are polled every 2 s (link.ts), and they probe and announce once an address appears (issue 8 bugs).
 *
 * This file is only the composition over the socket (after ciao's MDNSServer): it implements the
 * PacketSink the state machines send through, hands received packets to the Receiver (receiver.ts),
 * and keeps bonjour's responder registry in step. The protocol lives in small machines on an injected
 * Clock and random source, unit-tested without a socket: prober.ts (§8.1, §8.2), announcer.ts (§8.3,
 * §8.4, §10.1), publication.ts (one publication's life, §9), requery.ts (§5.2), browser.ts,
 * receiver.ts and link.ts.
 *
 * Only IPv4 (udp4) is used; no AAAA is published.
 */
import dgram from 'node:dgram';
import os from 'node:os';
// Only bonjour-service's responder (its Server: the multicast-dns socket and a record registry), not
// the package's index: its Bonjour class adds the publish registry and browser this module replaces,
// whose loading was a third of the package's on every `muster join` start (issue 12, target 4).
import { Server as BonjourResponder } from 'bonjour-service/dist/lib/mdns-server.js';
import { systemClock, type Clock } from '../common/clock.js';
import { Browser, type BrowseHandle, type BrowseHandlers, type BrowseOptions } from './browser.js';
import { MdnsError } from './errors.js';
import { LinkWatch, type InterfaceTable } from './link.js';
import { PublicationMachine, type Publication, type PublicationHost } from './publication.js';
import {
  SERVICE_TYPES,
  checkHostName,
  checkInstanceName,
  type DnsPacket,
  type DnsRecord,
  type ServiceKind,
} from './records.js';
import { Receiver, type ReceiverHost, type Source } from './receiver.js';
import { silentLogger, type MdnsLogger, type PacketSink, type Random } from './sink.js';

export type { Discovered } from './browse-cache.js';
export type { BrowseHandle, BrowseHandlers, BrowseOptions } from './browser.js';
export type { Publication, PublicationState } from './publication.js';
export type { ServiceKind } from './records.js';
export type { MdnsLogger } from './sink.js';

export interface MdnsOptions {
  /** IPv4 address of the interface to use (DESIGN `--interface ADDR`); all interfaces when absent. */
  interface?: string;
  /**
   * Whether a packet from `address` comes from the link (RFC 6762 §11). Default: the address is on a
   * subnet of `interface`, or of any non-loopback IPv4 interface when none is given, as the interfaces
   * are now (re-read every 2 s).
   */
  onLink?: (address: string) => boolean;
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

export interface Mdns {
  /** Resolves when the socket is bound; rejects with MUSTER_ERR_MDNS_SOCKET if it cannot be. */
  ready(): Promise<void>;
  publish(svc: PublishSpec): Publication;
  browse(type: ServiceKind, handlers: BrowseHandlers, opts?: BrowseOptions): BrowseHandle;
  /** Goodbyes for every publication, awaited, then the socket is closed. Idempotent. */
  close(): Promise<void>;
}

/** The parts of multicast-dns (7.2) we use. */
interface MulticastDns {
  on(ev: 'response' | 'query', fn: (packet: DnsPacket, rinfo: Source) => void): void;
  on(ev: 'error' | 'warning', fn: (err: Error) => void): void;
  on(ev: 'ready', fn: () => void): void;
  removeListener(ev: string, fn: (...args: never[]) => void): void;
  removeAllListeners(ev: string): void;
  respond(packet: DnsPacket, cb: (err?: Error | null) => void): void;
  respond(packet: DnsPacket, to: Source, cb: (err?: Error | null) => void): void;
  query(packet: DnsPacket, cb?: (err?: Error | null) => void): void;
  /** Adds the group membership on interfaces that gained an address (it also runs every 5 s). */
  update(): void;
  destroy(cb?: () => void): void;
}
/** bonjour-service's Server (private in its types). */
interface BonjourServer {
  mdns: MulticastDns;
  register(records: DnsRecord[]): void;
  unregister(records: DnsRecord[]): void;
  /** Its query listener: answers by multicast from the registry. */
  respondToQuery(query: DnsPacket): void;
}

/**
 * The socket's receive buffer (SO_RCVBUF; Linux caps it at net.core.rmem_max, and doubles it). The
 * default (rmem_default, 208 KiB) holds a few hundred small datagrams: when a rack boots, every node
 * probes three times and announces three times (RFC 6762 §8.1, §8.3) within a second or two, and a
 * registrar whose event loop is busy for a moment lost most of them (the adverts bench: 849 datagrams
 * dropped for 200 nodes advertising within a second, 61 of them only heard 15 s later at a re-query).
 * The memory is only taken while datagrams wait.
 */
export const RECV_BUFFER_BYTES = 4 * 1024 * 1024;

export function createMdns(opts: MdnsOptions = {}): Mdns {
  return new MdnsImpl(opts);
}

class MdnsImpl implements Mdns, PacketSink, PublicationHost, ReceiverHost {
  readonly log: MdnsLogger;
  readonly clock: Clock = systemClock;
  readonly random: Random = Math.random;
  readonly sink: PacketSink = this;
  private readonly server: BonjourServer;
  private readonly pubs = new Set<PublicationMachine>();
  private readonly browserSet = new Set<Browser>();
  private registered: DnsRecord[] = [];
  private readonly link: LinkWatch;
  private readonly receiver: Receiver;
  private closing: Promise<void> | undefined;
  private readonly readyPromise: Promise<void>;

  constructor(readonly opts: MdnsOptions) {
    this.log = opts.logger ?? silentLogger;
    if (opts.host !== undefined) {
      const bad = checkHostName(opts.host);
      if (bad) throw new TypeError(bad);
    }
    this.link = new LinkWatch(
      this,
      () => os.networkInterfaces() as InterfaceTable,
      opts.interface,
      (addresses) => this.addressesChanged(addresses),
      undefined,
      (err) => this.log.warn({ err: String(err) }, 'mdns: cannot read the network interfaces'),
    );
    this.receiver = new Receiver(this);
    const socketOpts = {
      // Our own socket, made as multicast-dns would make it, for its larger receive buffer.
      socket: dgram.createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: RECV_BUFFER_BYTES }),
      interface: opts.interface,
      bind: '0.0.0.0', // pitfall: bound to the interface address, Linux delivers no multicast
      reuseAddr: true, // 5353 is shared with avahi-daemon and any other responder on the host
    };
    const responder = new BonjourResponder(socketOpts as never, (err: Error) =>
      this.report(
        new MdnsError('MUSTER_ERR_MDNS_SOCKET', `mDNS send failed: ${err.message}`, { cause: err }),
      ),
    );
    this.server = responder as unknown as BonjourServer;
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
    // bonjour's Server listens for queries itself and would answer every one, from anywhere: it gets
    // them from the Receiver instead, after the link check (link.ts).
    mdns.removeAllListeners('query');
    mdns.on('response', (packet, rinfo) => this.receiver.onPacket(packet, rinfo));
    mdns.on('query', (packet, rinfo) => this.receiver.onPacket(packet, rinfo));
    this.link.start();
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
    const addresses = [...this.link.addresses];
    if (addresses.length === 0)
      this.log.warn(
        { fqdn: `${svc.name}.${SERVICE_TYPES[svc.type]}`, interface: this.opts.interface ?? 'any' },
        'mdns: no IPv4 address yet (is the network up?); publishing as soon as one appears',
      );
    const pub = new PublicationMachine(this, {
      kind: svc.type,
      name: svc.name,
      host,
      port: svc.port,
      txt: { ...svc.txt },
      addresses,
    });
    this.pubs.add(pub);
    pub.start(this.opts.probe !== false);
    return pub;
  }

  browse(type: ServiceKind, handlers: BrowseHandlers, opts?: BrowseOptions): BrowseHandle {
    if (this.closing) throw new MdnsError('MUSTER_ERR_MDNS_CLOSED', 'mdns: browse() after close()');
    const b = new Browser(this, SERVICE_TYPES[type], handlers, this.opts.maxQueryIntervalMs, opts);
    this.browserSet.add(b);
    b.start();
    return b;
  }

  forgetBrowser(b: Browser): void {
    this.browserSet.delete(b);
  }

  forget(p: PublicationMachine): void {
    this.pubs.delete(p);
  }

  livePublications(): PublicationMachine[] {
    return [...this.pubs].filter((p) => p.state === 'announced');
  }

  /**
   * Makes the responder's registry hold exactly the records of the announced publications. bonjour's
   * Server.unregister removes by name, so we remove all we ever put there and add back what is live.
   */
  syncRegistry(): void {
    const current = this.livePublications().flatMap((p) => p.answerRecords());
    if (this.registered.length > 0) this.server.unregister(this.registered);
    if (current.length > 0) this.server.register(current);
    this.registered = current;
  }

  /**
   * PacketSink: multicast-dns sends to 224.0.0.251:5353 on the bound interface. With no address on the
   * link there is nowhere to send (a send would fail with ENETUNREACH at every re-query while the
   * network is down): the packet is skipped, and the browsers start over when an address appears.
   */
  send(packet: DnsPacket, what: string): Promise<void> {
    if (this.link.addresses.length === 0) {
      this.log.debug({ what }, 'mdns: no IPv4 address on the link yet; not sent');
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const cb = (err?: Error | null): void => {
        if (err)
          this.report(
            new MdnsError('MUSTER_ERR_MDNS_SOCKET', `mDNS ${what} not sent: ${err.message}`, { cause: err }),
          );
        resolve();
      };
      if (packet.type === 'query') this.server.mdns.query(packet, cb);
      else this.server.mdns.respond(packet, cb);
    });
  }

  /** The interfaces changed (link.ts): join the group where we can now, then (re)publish. */
  private addressesChanged(addresses: readonly string[]): void {
    try {
      this.server.mdns.update();
    } catch (err) {
      this.log.debug({ err: String(err) }, 'mdns: group membership update failed');
    }
    if (addresses.length > 0 && [...this.pubs].some((p) => p.state === 'waiting'))
      this.log.info({ addresses }, 'mdns: an IPv4 address appeared; publishing');
    for (const pub of [...this.pubs]) pub.setAddresses(addresses);
    if (addresses.length > 0) for (const b of [...this.browserSet]) b.relink();
  }

  // ---- ReceiverHost ----

  onLink(address: string): boolean {
    return this.opts.onLink ? this.opts.onLink(address) : this.link.onLink(address);
  }

  /** Our announcements loop back to us: the publications tell them apart by this (RFC 6762 §9). */
  isOwnAddress(address: string): boolean {
    return this.opts.interface ? address === this.opts.interface : this.link.addresses.includes(address);
  }

  publications(): Iterable<PublicationMachine> {
    return this.pubs;
  }

  browsers(): Iterable<Browser> {
    return this.browserSet;
  }

  answer(query: DnsPacket): void {
    this.server.respondToQuery(query);
  }

  publishedRecords(): readonly DnsRecord[] {
    return this.registered;
  }

  sendUnicast(packet: DnsPacket, to: Source, what: string): void {
    this.server.mdns.respond(packet, { address: to.address, port: to.port }, (err) => {
      if (err) this.log.debug({ err: err.message, to: to.address }, `mdns: ${what} not sent`);
    });
  }

  handlerFailed(what: string, err: unknown): void {
    this.report(
      new MdnsError('MUSTER_ERR_MDNS_HANDLER', `mdns: ${what} failed on a received packet: ${String(err)}`, {
        cause: err,
      }),
    );
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      for (const b of [...this.browserSet]) b.stop();
      this.link.stop();
      await Promise.all([...this.pubs].map((p) => p.stop()));
      // Goodbyes are on the wire (their send callbacks ran); only now close the socket.
      await new Promise<void>((resolve) => {
        try {
          this.server.mdns.destroy(() => resolve());
        } catch (err) {
          this.log.debug({ err: String(err) }, 'mdns: socket already closed');
          resolve();
        }
      });
    })();
    return this.closing;
  }
}
