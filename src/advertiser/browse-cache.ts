/**
 * The browser's cache for one service type: received mDNS responses in, up/update/down events out.
 * Pure (time is passed in, no sockets or timers), so the RFC rules are unit-tested with synthetic packets.
 *
 * Why our own and not bonjour-service's Browser (1.4.4, dist/lib/browser.js): it only builds a service
 * from a packet that carries the PTR *and* the SRV/TXT together, so a TXT-only update (what avahi sends,
 * RFC 6762 §8.4) is never seen; it decodes TXT with its lossy decoder; it takes addresses only from the
 * same packet (often none); and it never expires anything unless someone calls `expire()`.
 */
import { parseIPv4 } from './link.js';
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
  /** The cache key (lower-cased fqdn). */
  key: string;
  fqdn: string;
  firstSeen: number;
  /** The address of the packet that first named this instance: the per-source bound counts by it. */
  source: string;
  /** When the PTR expires; undefined until a PTR names this instance. */
  ptrExpires?: number;
  ptrTtl?: number;
  srv?: { target: string; port: number; expires: number };
  txt?: { raw: Buffer[]; expires: number };
  referer?: string;
  emitted?: Discovered;
}

/**
 * Bounds (issue 8 hole 4): an advertisement is untrusted input (DESIGN "Discovery"); a flood must not
 * grow us without end, and must not lock out the services heard after it either. So beyond a bound
 * the entry heard least recently is evicted (a live service is heard again at the next query answer
 * and comes back), never the newcomer refused; one source address can hold only a few entries, so a
 * single host cannot push everyone else out; and no record lives longer than 75 minutes, whatever TTL
 * it claims.
 */
export const MAX_ENTRIES = 1024;
/** Instances, and host names, that one source address may hold at a time. */
export const MAX_ENTRIES_PER_SOURCE = 32;
export const MAX_ADDRESSES_PER_HOST = 16;
/** RFC 6762 §10: 75 minutes is the longest TTL an mDNS record is given; longer claims are cut to it. */
export const MAX_TTL_S = 4500;
/** Records heard for an instance that no PTR ever named are dropped after this long. */
const ORPHAN_MS = 10_000;

const addrKey = (addrs: readonly string[]): string => [...addrs].sort().join(',');
const txtKey = (raw: readonly Buffer[]): string => raw.map((b) => b.toString('hex')).join('.');

/**
 * An A record's data is a dotted quad, an AAAA record's an IPv6 address (dns-packet decodes them so):
 * anything else never becomes one of a service's addresses, which callers put into URLs.
 */
function isAddress(type: 'A' | 'AAAA', data: unknown): data is string {
  if (typeof data !== 'string') return false;
  if (type === 'A') return parseIPv4(data) !== undefined;
  return data.length >= 2 && data.length <= 45 && /^[0-9a-f:.]+$/i.test(data) && data.includes(':');
}

function toBuffers(data: unknown): Buffer[] {
  const list = Array.isArray(data) ? data : [data];
  return list
    .filter((x): x is Buffer | string => Buffer.isBuffer(x) || typeof x === 'string')
    .map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x)));
}

interface HostEntry {
  key: string;
  /** The address of the packet that first gave an address for this host name. */
  source: string;
  addrs: Map<string, { expires: number; received: number }>;
}

/**
 * A map bounded overall and per source address, in least-recently-heard order: touch() moves an item to
 * the end, add() evicts from the front (of its source's items first, then of all) to make room.
 */
class BoundedIndex<T extends { key: string; source: string }> {
  private readonly items = new Map<string, T>();
  private readonly bySource = new Map<string, Map<string, T>>();

  constructor(
    private readonly max: number,
    private readonly maxPerSource: number,
  ) {}

  get size(): number {
    return this.items.size;
  }
  get(key: string): T | undefined {
    return this.items.get(key);
  }
  has(item: T): boolean {
    return this.items.get(item.key) === item;
  }
  values(): IterableIterator<T> {
    return this.items.values();
  }

  touch(item: T): void {
    if (!this.has(item)) return;
    this.items.delete(item.key);
    this.items.set(item.key, item);
    const mine = this.bySource.get(item.source);
    mine?.delete(item.key);
    mine?.set(item.key, item);
  }

  /** Adds a new item; returns the items evicted to make room for it. */
  add(item: T): T[] {
    const evicted: T[] = [];
    let mine = this.bySource.get(item.source);
    while (mine && mine.size >= this.maxPerSource) {
      const oldest = mine.values().next().value as T;
      this.delete(oldest);
      evicted.push(oldest);
      mine = this.bySource.get(item.source);
    }
    while (this.items.size >= this.max) {
      const oldest = this.items.values().next().value as T;
      this.delete(oldest);
      evicted.push(oldest);
    }
    this.items.set(item.key, item);
    if (!mine) this.bySource.set(item.source, (mine = new Map()));
    mine.set(item.key, item);
    return evicted;
  }

  delete(item: T): void {
    if (!this.has(item)) return;
    this.items.delete(item.key);
    const mine = this.bySource.get(item.source);
    mine?.delete(item.key);
    if (mine?.size === 0) this.bySource.delete(item.source);
  }
}

export class BrowseCache {
  private readonly entries = new BoundedIndex<Entry>(MAX_ENTRIES, MAX_ENTRIES_PER_SOURCE);
  private readonly hosts = new BoundedIndex<HostEntry>(MAX_ENTRIES, MAX_ENTRIES_PER_SOURCE);

  constructor(readonly type: string) {}

  /** How many instances and host names are held (bounded: MAX_ENTRIES, MAX_ENTRIES_PER_SOURCE). */
  sizes(): { instances: number; hosts: number } {
    return { instances: this.entries.size, hosts: this.hosts.size };
  }

  /**
   * Takes one response. Returns the events it causes (an eviction can take a known service down) and
   * the questions worth asking to complete what it knows (SRV/TXT of an instance named by a PTR alone,
   * A of an SRV target without addresses).
   */
  ingest(
    packet: DnsPacket,
    source: { address: string },
    now: number,
  ): { events: BrowseEvent[]; questions: DnsQuestion[] } {
    const records: DnsRecord[] = [...(packet.answers ?? []), ...(packet.additionals ?? [])];
    const touched = new Set<Entry>();
    const touchedHosts = new Set<string>();
    const events: BrowseEvent[] = [];
    const from = source.address;

    // RFC 6762 §10.2: a cache-flush record replaces same-name same-type records received more than one
    // second earlier. Do that for A before adding this packet's addresses.
    for (const rr of records) {
      if ((rr.type === 'A' || rr.type === 'AAAA') && rr.flush) {
        const h = this.hosts.get(rr.name.toLowerCase());
        if (h) for (const [addr, v] of h.addrs) if (v.received < now - 1000) h.addrs.delete(addr);
      }
    }
    for (const rr of records) {
      // Issue 8 hole 4: no claimed TTL keeps a record beyond 75 minutes.
      const ttl = typeof rr.ttl === 'number' && rr.ttl > 0 ? Math.min(rr.ttl, MAX_TTL_S) : 0;
      if ((rr.type === 'A' || rr.type === 'AAAA') && isAddress(rr.type, rr.data)) {
        const key = rr.name.toLowerCase();
        if (key.length > 255) continue;
        let h = this.hosts.get(key);
        if (ttl === 0) {
          h?.addrs.delete(rr.data);
        } else {
          if (h) this.hosts.touch(h);
          else this.hosts.add((h = { key, source: from, addrs: new Map() }));
          if (h.addrs.size < MAX_ADDRESSES_PER_HOST || h.addrs.has(rr.data))
            h.addrs.set(rr.data, { expires: now + ttl * 1000, received: now });
        }
        touchedHosts.add(key);
      } else if (rr.type === 'PTR' && sameName(rr.name, this.type) && typeof rr.data === 'string') {
        const e = this.entry(rr.data, from, now, events);
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
        const e = this.entry(rr.name, from, now, events);
        const d = rr.data as { port?: unknown; target?: unknown } | undefined;
        if (!e || !d || typeof d.target !== 'string' || typeof d.port !== 'number') continue;
        if (ttl === 0) e.srv = undefined;
        else if (
          Number.isInteger(d.port) &&
          d.port > 0 &&
          d.port < 65536 &&
          d.target.length > 0 &&
          d.target.length <= 255
        ) {
          e.srv = { target: d.target, port: d.port, expires: now + ttl * 1000 };
          e.referer = from;
        }
        touched.add(e);
      } else if (rr.type === 'TXT' && this.isInstanceName(rr.name)) {
        const e = this.entry(rr.name, from, now, events);
        if (!e) continue;
        if (ttl > 0) e.txt = { raw: toBuffers(rr.data), expires: now + ttl * 1000 };
        touched.add(e);
      }
    }
    if (touchedHosts.size > 0) {
      for (const e of this.entries.values())
        if (e.srv && touchedHosts.has(e.srv.target.toLowerCase())) touched.add(e);
    }

    const questions: DnsQuestion[] = [];
    for (const e of touched) {
      if (!this.entries.has(e)) continue; // evicted by a later record of the same packet
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
    for (const e of [...this.entries.values()]) {
      if (e.ptrExpires === undefined) {
        if (e.firstSeen + ORPHAN_MS <= now) this.entries.delete(e);
        continue;
      }
      if (e.ptrExpires <= now) {
        this.entries.delete(e);
        if (e.emitted) events.push({ kind: 'down', service: e.emitted });
        continue;
      }
      if (e.srv && e.srv.expires <= now) e.srv = undefined;
      if (e.txt && e.txt.expires <= now) e.txt = undefined;
    }
    for (const h of [...this.hosts.values()]) {
      for (const [addr, v] of h.addrs) if (v.expires <= now) h.addrs.delete(addr);
      if (h.addrs.size === 0) this.hosts.delete(h);
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
    for (const h of this.hosts.values()) for (const v of h.addrs.values()) at(v.expires);
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

  /** `<instance>.<type>`, the instance one DNS label of at most 63 bytes (RFC 6763 §4.1.1). */
  private isInstanceName(name: string): boolean {
    const n = name.toLowerCase().replace(/\.$/, '');
    const suffix = `.${this.type.toLowerCase()}`;
    if (n.length > 255 || !n.endsWith(suffix) || n.length <= suffix.length) return false;
    return Buffer.byteLength(n.slice(0, n.length - suffix.length), 'utf8') <= 63;
  }

  /** The entry of an instance, made (evicting the least recently heard if need be) or refreshed. */
  private entry(fqdn: string, source: string, now: number, events: BrowseEvent[]): Entry | undefined {
    if (!this.isInstanceName(fqdn)) return undefined;
    const key = fqdn.toLowerCase().replace(/\.$/, '');
    let e = this.entries.get(key);
    if (e) {
      this.entries.touch(e);
      return e;
    }
    e = { key, fqdn: fqdn.replace(/\.$/, ''), firstSeen: now, source };
    for (const old of this.entries.add(e))
      if (old.emitted) events.push({ kind: 'down', service: old.emitted });
    return e;
  }

  private addressesOf(host: string, now: number): string[] {
    const h = this.hosts.get(host.toLowerCase());
    if (!h) return [];
    return [...h.addrs].filter(([, v]) => v.expires > now).map(([addr]) => addr);
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
