/**
 * Every received mDNS packet goes through here (after ciao's MDNSServer → PacketHandler split): the
 * link check first (link.ts: RFC 6762 §5.5, §6, §11), then the packet is routed to the publications
 * (conflicts §9, probe tie-breaks §8.2), the browsers, and the responder (answers by multicast, or by
 * unicast for a legacy query, §6.7). No socket here: mdns.ts hands packets in as multicast-dns decoded
 * them and sends what this asks for, so tests and the fuzzer drive it directly.
 *
 * What arrives is untrusted: records that are not objects with a string name and type are dropped
 * before anything looks at them, and a handler that throws is reported, never thrown into the socket's
 * event loop (where it would end the process).
 */
import { legacyResponse } from './legacy.js';
import { packetVerdict, type PacketVerdict } from './link.js';
import type { DnsPacket, DnsQuestion, DnsRecord } from './records.js';
import type { MdnsLogger } from './sink.js';

export interface Source {
  address: string;
  port: number;
}

/** What the receiver needs from the responder that holds it (mdns.ts). */
export interface ReceiverHost {
  readonly log: MdnsLogger;
  /** Whether an address is on the link this socket serves (link.ts, or MdnsOptions.onLink). */
  onLink(address: string): boolean;
  /** One of our own addresses: our announcements come back to us by multicast loopback. */
  isOwnAddress(address: string): boolean;
  publications(): Iterable<{
    onResponse(records: readonly DnsRecord[], from: string, own: boolean): void;
    onProbe(authorities: readonly DnsRecord[], from: string): void;
  }>;
  browsers(): Iterable<{ onResponse(packet: DnsPacket, source: { address: string }): void }>;
  /** Answers a query by multicast from the records we publish (bonjour-service's responder). */
  answer(query: DnsPacket): void;
  /** The records we publish now (for legacy answers). */
  publishedRecords(): readonly DnsRecord[];
  /** Sends one unicast packet to `to`. */
  sendUnicast(packet: DnsPacket, to: Source, what: string): void;
  /** A handler threw (MUSTER_ERR_MDNS_HANDLER through onError). */
  handlerFailed(what: string, err: unknown): void;
}

/** Distinct (reason, source) pairs logged at warn level; past that, drops are only counted. */
const MAX_DROPS_LOGGED = 256;

const isRecord = (r: unknown): r is DnsRecord =>
  typeof r === 'object' &&
  r !== null &&
  typeof (r as DnsRecord).name === 'string' &&
  typeof (r as DnsRecord).type === 'string';

const isQuestion = (q: unknown): q is DnsQuestion =>
  typeof q === 'object' &&
  q !== null &&
  typeof (q as DnsQuestion).name === 'string' &&
  typeof (q as DnsQuestion).type === 'string';

const list = <T>(x: unknown, ok: (v: unknown) => v is T): T[] => (Array.isArray(x) ? x.filter(ok) : []);

export class Receiver {
  /** Packets dropped, by reason (for tests and diagnostics). */
  readonly dropped: Record<Exclude<PacketVerdict, 'accept' | 'legacy-query'>, number> = {
    'off-link': 0,
    'bad-port': 0,
  };
  private readonly logged = new Set<string>();

  constructor(private readonly host: ReceiverHost) {}

  /** One packet as multicast-dns decoded it, with its source. Never throws. */
  onPacket(raw: DnsPacket, source: Source): void {
    try {
      if (typeof raw !== 'object' || raw === null) return;
      if (raw.type !== 'query' && raw.type !== 'response') return;
      if (typeof source?.address !== 'string' || typeof source.port !== 'number') return;
      const packet: DnsPacket = {
        type: raw.type,
        ...(typeof raw.id === 'number' ? { id: raw.id } : {}),
        ...(typeof raw.flags === 'number' ? { flags: raw.flags } : {}),
        questions: list(raw.questions, isQuestion),
        answers: list(raw.answers, isRecord),
        authorities: list(raw.authorities, isRecord),
        additionals: list(raw.additionals, isRecord),
      };
      const verdict = packetVerdict(packet.type!, source, (a) => this.host.onLink(a));
      switch (verdict) {
        case 'off-link':
        case 'bad-port':
          this.drop(verdict, packet, source);
          return;
        case 'legacy-query':
          this.legacy(packet, source);
          return;
        case 'accept':
          if (packet.type === 'response') this.response(packet, source);
          else this.query(packet, source);
      }
    } catch (err) {
      this.host.handlerFailed(`received ${raw?.type ?? 'packet'}`, err);
    }
  }

  private response(packet: DnsPacket, source: Source): void {
    const records = [...(packet.answers ?? []), ...(packet.additionals ?? [])];
    const own = this.host.isOwnAddress(source.address);
    for (const pub of [...this.host.publications()])
      this.guard('publication', () => pub.onResponse(records, source.address, own));
    for (const b of [...this.host.browsers()]) this.guard('browser', () => b.onResponse(packet, source));
  }

  private query(packet: DnsPacket, source: Source): void {
    // RFC 6762 §8.2: another host probing for one of our names at the same time.
    const auth = packet.authorities ?? [];
    if (auth.length > 0)
      for (const pub of [...this.host.publications()])
        this.guard('publication', () => pub.onProbe(auth, source.address));
    this.guard('responder', () => this.host.answer(packet));
  }

  /** RFC 6762 §6.7: answered by unicast only, to the source address and port. */
  private legacy(packet: DnsPacket, source: Source): void {
    const res = legacyResponse(packet, this.host.publishedRecords());
    if (res) this.host.sendUnicast(res, source, 'legacy unicast answer');
  }

  private guard(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.host.handlerFailed(what, err);
    }
  }

  private drop(reason: 'off-link' | 'bad-port', packet: DnsPacket, source: Source): void {
    this.dropped[reason]++;
    const k = `${reason} ${source.address}`;
    const fields = { from: source.address, port: source.port, type: packet.type };
    if (this.logged.has(k) || this.logged.size >= MAX_DROPS_LOGGED) {
      this.host.log.debug(fields, `mdns: dropped a packet (${reason})`);
      return;
    }
    this.logged.add(k);
    this.host.log.warn(
      fields,
      reason === 'off-link'
        ? 'mdns: ignoring mDNS packets from an address off the link (RFC 6762 §11); logged once per source'
        : 'mdns: ignoring mDNS responses from a source port other than 5353 (RFC 6762 §6); logged once per source',
    );
  }
}
