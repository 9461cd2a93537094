/**
 * The browser's cache for one service type: received mDNS responses in, up/update/down events out.
 * Pure (time is passed in, no sockets or timers), so the RFC rules are unit-tested with synthetic packets.
 *
 * Why our own and not bonjour-service's Browser (1.4.4, dist/lib/browser.js): it only builds a service
 * from a packet that carries the PTR *and* the SRV/TXT together, so a TXT-only update (what avahi sends,
 * RFC 6762 §8.4) is never seen; it decodes TXT with its lossy decoder; it takes addresses only from the
 * same packet (often none); and it never expires anything unless someone calls `expire()`.
 */
import { decodeTxt, type TxtMap } from './txt.js';
import { sameName, type DnsPacket, type DnsQuestion, type DnsRecord } from './records.js';

export interface Discovered {
  /** The service type, e.g. `_muster._tcp.local`. */
  type: string;
  /** The instance name (registrar id or node name). Untrusted. */
  name: string;
  fqdn: string;
  /** The SRV target host name. */
  host: string;
  port: number;
  /** IPv4/IPv6 addresses of `host` from A/AAAA records; the packet source when there are none. */
  addresses: string[];
  /** Decoded TXT (RFC 6763 §6); validate with validateRegistrarTxt / validateNodeTxt. */
  txt: TxtMap;
  rawTxt: Buffer[];
  /** Source address of the packet that carried the SRV record. */
  referer?: string;
}

export interface BrowseEvent {
  kind: 'up' | 'update' | 'down';
  service: Discovered;
}

interface Entry {
  fqdn: string;
  firstSeen: number;
  /** When the PTR expires; undefined until a PTR names this instance. */
  ptrExpires?: number;
  ptrTtl?: number;
  srv?: { target: string; port: number; expires: number };
  txt?: { raw: Buffer[]; expires: number };
  referer?: string;
  emitted?: Discovered;
}

/** Bounds: an advertisement is untrusted input (DESIGN "Discovery"); a flood must not grow us without end. */
export const MAX_ENTRIES = 1024;
export const MAX_ADDRESSES_PER_HOST = 16;
/** Records heard for an instance that no PTR ever named are dropped after this long. */
const ORPHAN_MS = 10_000;

const addrKey = (addrs: readonly string[]): string => [...addrs].sort().join(',');
const txtKey = (raw: readonly Buffer[]): string => raw.map((b) => b.toString('hex')).join('.');

function toBuffers(data: unknown): Buffer[] {
  const list = Array.isArray(data) ? data : [data];
  return list
    .filter((x): x is Buffer | string => Buffer.isBuffer(x) || typeof x === 'string')
    .map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x)));
}

export class BrowseCache {
  private readonly entries = new Map<string, Entry>();
  private readonly hosts = new Map<string, Map<string, { expires: number; received: number }>>();

  constructor(readonly type: string) {}

  /**
   * Takes one response. Returns the events it causes and the questions worth asking to complete what
   * it knows (SRV/TXT of an instance named by a PTR alone, A of an SRV target without addresses).
   */
  ingest(
    packet: DnsPacket,
    source: { address: string },
    now: number,
  ): { events: BrowseEvent[]; questions: DnsQuestion[] } {
    const records: DnsRecord[] = [...(packet.answers ?? []), ...(packet.additionals ?? [])];
    const touched = new Set<Entry>();
    const touchedHosts = new Set<string>();

    // RFC 6762 §10.2: a cache-flush record replaces same-name same-type records received more than one
    // second earlier. Do that for A before adding this packet's addresses.
    for (const rr of records) {
      if ((rr.type === 'A' || rr.type === 'AAAA') && rr.flush) {
        const map = this.hosts.get(rr.name.toLowerCase());
        if (map) for (const [addr, v] of map) if (v.received < now - 1000) map.delete(addr);
      }
    }
    for (const rr of records) {
      const ttl = typeof rr.ttl === 'number' ? rr.ttl : 0;
      if ((rr.type === 'A' || rr.type === 'AAAA') && typeof rr.data === 'string') {
        const key = rr.name.toLowerCase();
        let map = this.hosts.get(key);
        if (ttl === 0) {
          map?.delete(rr.data);
        } else {
          if (!map) {
            if (this.hosts.size >= MAX_ENTRIES) continue;
            this.hosts.set(key, (map = new Map()));
          }
          if (map.size < MAX_ADDRESSES_PER_HOST || map.has(rr.data))
            map.set(rr.data, { expires: now + ttl * 1000, received: now });
        }
        touchedHosts.add(key);
      } else if (rr.type === 'PTR' && sameName(rr.name, this.type) && typeof rr.data === 'string') {
        const e = this.entry(rr.data, now);
        if (!e) continue;
        if (ttl === 0) {
          // RFC 6762 §10.1: a goodbye sets the TTL to one second rather than deleting at once.
          if (e.ptrExpires !== undefined) e.ptrExpires = Math.min(e.ptrExpires, now + 1000);
        } else {
          e.ptrExpires = now + ttl * 1000;
          e.ptrTtl = ttl;
        }
        touched.add(e);
      } else if (rr.type === 'SRV' && this.isInstanceName(rr.name)) {
        const e = this.entry(rr.name, now);
        const d = rr.data as { port?: unknown; target?: unknown } | undefined;
        if (!e || !d || typeof d.target !== 'string' || typeof d.port !== 'number') continue;
        if (ttl === 0) e.srv = undefined;
        else if (d.port > 0 && d.port < 65536 && d.target.length > 0 && d.target.length <= 255) {
          e.srv = { target: d.target, port: d.port, expires: now + ttl * 1000 };
          e.referer = source.address;
        }
        touched.add(e);
      } else if (rr.type === 'TXT' && this.isInstanceName(rr.name)) {
        const e = this.entry(rr.name, now);
        if (!e) continue;
        if (ttl > 0) e.txt = { raw: toBuffers(rr.data), expires: now + ttl * 1000 };
        touched.add(e);
      }
    }
    if (touchedHosts.size > 0) {
      for (const e of this.entries.values())
        if (e.srv && touchedHosts.has(e.srv.target.toLowerCase())) touched.add(e);
    }

    const events: BrowseEvent[] = [];
    const questions: DnsQuestion[] = [];
    for (const e of touched) {
      if (e.ptrExpires === undefined || e.ptrExpires <= now) continue;
      if (!e.srv) questions.push({ name: e.fqdn, type: 'SRV' });
      if (!e.txt) questions.push({ name: e.fqdn, type: 'TXT' });
      if (e.srv && this.addressesOf(e.srv.target, now).length === 0)
        questions.push({ name: e.srv.target, type: 'A' });
      const ev = this.evaluate(e, now);
      if (ev) events.push(ev);
    }
    return { events, questions };
  }

  /** Drops what has expired; a known instance whose PTR expired (or got a goodbye) goes `down`. */
  expire(now: number): BrowseEvent[] {
    const events: BrowseEvent[] = [];
    for (const [key, e] of this.entries) {
      if (e.ptrExpires === undefined) {
        if (e.firstSeen + ORPHAN_MS <= now) this.entries.delete(key);
        continue;
      }
      if (e.ptrExpires <= now) {
        this.entries.delete(key);
        if (e.emitted) events.push({ kind: 'down', service: e.emitted });
        continue;
      }
      if (e.srv && e.srv.expires <= now) e.srv = undefined;
      if (e.txt && e.txt.expires <= now) e.txt = undefined;
    }
    for (const [host, map] of this.hosts) {
      for (const [addr, v] of map) if (v.expires <= now) map.delete(addr);
      if (map.size === 0) this.hosts.delete(host);
    }
    return events;
  }

  /** The earliest time at which expire() has something to do. */
  nextExpiry(): number | undefined {
    let next: number | undefined;
    const at = (t: number | undefined): void => {
      if (t !== undefined && (next === undefined || t < next)) next = t;
    };
    for (const e of this.entries.values()) {
      at(e.ptrExpires ?? e.firstSeen + ORPHAN_MS);
      at(e.srv?.expires);
      at(e.txt?.expires);
    }
    for (const map of this.hosts.values()) for (const v of map.values()) at(v.expires);
    return next;
  }

  /**
   * Known answers for our next query (RFC 6762 §7.1): PTRs with more than half their TTL left, so
   * responders need not repeat them; the others get refreshed by the answers.
   */
  knownAnswers(now: number): DnsRecord[] {
    const out: DnsRecord[] = [];
    for (const e of this.entries.values()) {
      if (e.ptrExpires === undefined || e.ptrTtl === undefined) continue;
      const left = (e.ptrExpires - now) / 1000;
      if (left > e.ptrTtl / 2)
        out.push({ name: this.type, type: 'PTR', ttl: Math.floor(left), data: e.fqdn });
    }
    return out;
  }

  list(): Discovered[] {
    return [...this.entries.values()].flatMap((e) => (e.emitted ? [e.emitted] : []));
  }

  private isInstanceName(name: string): boolean {
    const n = name.toLowerCase().replace(/\.$/, '');
    return n.length <= 255 && n.endsWith(`.${this.type.toLowerCase()}`) && n.length > this.type.length + 1;
  }

  private entry(fqdn: string, now: number): Entry | undefined {
    if (!this.isInstanceName(fqdn)) return undefined;
    const key = fqdn.toLowerCase().replace(/\.$/, '');
    let e = this.entries.get(key);
    if (!e) {
      if (this.entries.size >= MAX_ENTRIES) return undefined;
      e = { fqdn: fqdn.replace(/\.$/, ''), firstSeen: now };
      this.entries.set(key, e);
    }
    return e;
  }

  private addressesOf(host: string, now: number): string[] {
    const map = this.hosts.get(host.toLowerCase());
    if (!map) return [];
    return [...map].filter(([, v]) => v.expires > now).map(([addr]) => addr);
  }

  private evaluate(e: Entry, now: number): BrowseEvent | undefined {
    if (!e.srv || !e.txt) return undefined;
    let addresses = this.addressesOf(e.srv.target, now);
    // No A record (yet): the packet's source is where the responder lives (CONVENTIONS pitfalls).
    if (addresses.length === 0 && e.referer) addresses = [e.referer];
    const service: Discovered = {
      type: this.type,
      name: e.fqdn.slice(0, e.fqdn.length - this.type.length - 1),
      fqdn: e.fqdn,
      host: e.srv.target,
      port: e.srv.port,
      addresses,
      txt: decodeTxt(e.txt.raw),
      rawTxt: e.txt.raw,
      referer: e.referer,
    };
    const prev = e.emitted;
    e.emitted = service;
    if (!prev) return { kind: 'up', service };
    const changed =
      prev.port !== service.port ||
      !sameName(prev.host, service.host) ||
      txtKey(prev.rawTxt) !== txtKey(service.rawTxt) ||
      addrKey(prev.addresses) !== addrKey(service.addresses);
    if (!changed) {
      e.emitted = prev; // keep identity stable when nothing a caller sees changed
      return undefined;
    }
    return { kind: 'update', service };
  }
}
