/**
 * DNS-SD resource records for one publication (RFC 6763 §4–§6, RFC 6762 §10), as plain objects in the
 * shape dns-packet (under multicast-dns, under bonjour-service) encodes. Pure: no sockets or timers.
 */
import { encodeTxt } from './txt.js';

/** A resource record as dns-packet 5 encodes and decodes it. */
export interface DnsRecord {
  name: string;
  type: string;
  ttl?: number;
  class?: string;
  /** RFC 6762 §10.2 cache-flush bit (dns-packet `flush`). */
  flush?: boolean;
  data?: unknown;
}

export interface DnsQuestion {
  name: string;
  type: string;
  class?: string;
}

export interface DnsPacket {
  type?: 'query' | 'response';
  id?: number;
  flags?: number;
  questions?: DnsQuestion[];
  answers?: DnsRecord[];
  authorities?: DnsRecord[];
  additionals?: DnsRecord[];
}

export type ServiceKind = 'muster' | 'muster-join';

/** DNS-SD service type per kind (DESIGN "Discovery"); `.local` per RFC 6762 §3. */
export const SERVICE_TYPES: Readonly<Record<ServiceKind, string>> = {
  muster: '_muster._tcp.local',
  'muster-join': '_muster-join._tcp.local',
};

/** RFC 6763 §9: the meta-query name listing service types. */
export const SERVICES_META = '_services._dns-sd._udp.local';

/** RFC 6762 §10: records with a host name in their name or rdata live 120 s, the others 75 minutes. */
export const TTL_HOST = 120;
export const TTL_OTHER = 4500;

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/** RFC 6763 §4.1.1: an instance name is one label of at most 63 bytes, here without dots or controls. */
export function checkInstanceName(name: string): string | undefined {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes < 1 || bytes > 63) return `instance name must be 1-63 bytes (got ${bytes})`;
  // eslint-disable-next-line no-control-regex
  if (/[.\\\x00-\x1f\x7f]/.test(name))
    return `instance name ${JSON.stringify(name)} must not contain '.', '\\' or control characters`;
  return undefined;
}

/** A host name we publish: one DNS label under `.local` (RFC 6762 §3). */
export function checkHostName(host: string): string | undefined {
  const m = /^(.+)\.local\.?$/i.exec(host);
  if (!m || !LABEL.test(m[1] ?? ''))
    return `host name ${JSON.stringify(host)} must be '<label>.local' with a DNS label`;
  return undefined;
}

export interface PublicationSpec {
  kind: ServiceKind;
  /** The instance name (registrar id or node name). */
  name: string;
  host: string;
  port: number;
  txt: Readonly<Record<string, string>>;
  /** The IPv4 addresses published for `host`. */
  addresses: readonly string[];
}

export interface PublicationRecords {
  fqdn: string;
  ptr: DnsRecord;
  meta: DnsRecord;
  srv: DnsRecord;
  txt: DnsRecord;
  a: DnsRecord[];
}

export function fqdnOf(kind: ServiceKind, name: string): string {
  return `${name}.${SERVICE_TYPES[kind]}`;
}

/**
 * The records of one publication. SRV, TXT and A are unique records and carry the cache-flush bit
 * (RFC 6762 §10.2) so a changed TXT replaces the cached one instead of being added beside it; PTRs are
 * shared records and never do. Throws TxtEncodeError on a bad TXT.
 */
export function buildRecords(spec: PublicationSpec): PublicationRecords {
  const type = SERVICE_TYPES[spec.kind];
  const fqdn = fqdnOf(spec.kind, spec.name);
  return {
    fqdn,
    ptr: { name: type, type: 'PTR', ttl: TTL_OTHER, data: fqdn },
    meta: { name: SERVICES_META, type: 'PTR', ttl: TTL_OTHER, data: type },
    srv: {
      name: fqdn,
      type: 'SRV',
      ttl: TTL_HOST,
      flush: true,
      data: { priority: 0, weight: 0, port: spec.port, target: spec.host },
    },
    txt: { name: fqdn, type: 'TXT', ttl: TTL_OTHER, flush: true, data: encodeTxt(spec.txt) },
    a: spec.addresses.map((addr) => ({ name: spec.host, type: 'A', ttl: TTL_HOST, flush: true, data: addr })),
  };
}

/** A copy of `r` with TTL 0: a goodbye (RFC 6762 §10.1). */
export function goodbye(r: DnsRecord): DnsRecord {
  return { ...r, ttl: 0 };
}

/** A copy without the cache-flush bit: the bit MUST NOT be set in a probe's authority section (§10.2). */
export function withoutFlush(r: DnsRecord): DnsRecord {
  const { flush: _flush, ...rest } = r;
  return rest;
}

export const sameName = (a: string, b: string): boolean =>
  a.replace(/\.$/, '').toLowerCase() === b.replace(/\.$/, '').toLowerCase();

/** Whether two TXT rdata (lists of strings) are the same bytes. */
export function txtEqual(a: unknown, b: unknown): boolean {
  const aa = Array.isArray(a) ? a : [a];
  const bb = Array.isArray(b) ? b : [b];
  if (aa.length !== bb.length) return false;
  return aa.every((x, i) => {
    const y = bb[i];
    const bx = Buffer.isBuffer(x) ? x : Buffer.from(String(x));
    const by = Buffer.isBuffer(y) ? y : Buffer.from(String(y));
    return bx.equals(by);
  });
}

/**
 * A sortable key of a record's rdata for the simultaneous-probe tie-break (RFC 6762 §8.2). Not the
 * exact wire-format comparison, but total and antisymmetric, so of two muster hosts exactly one defers.
 */
export function rdataKey(r: DnsRecord): string {
  const d = r.data as { port?: number; target?: string } | string | Buffer[] | undefined;
  if (r.type === 'A' && typeof d === 'string')
    return d
      .split('.')
      .map((o) => o.padStart(3, '0'))
      .join('.');
  if (r.type === 'SRV' && d && typeof d === 'object' && !Array.isArray(d)) {
    return `${String(d.port ?? 0).padStart(5, '0')} ${String(d.target ?? '').toLowerCase()}`;
  }
  if (r.type === 'TXT')
    return Buffer.concat(
      (Array.isArray(d) ? d : []).map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(String(x)))),
    ).toString('hex');
  return JSON.stringify(d ?? null);
}

/**
 * Whether a received record claims one of our unique names with different data (RFC 6762 §9): an SRV
 * or TXT of our service instance, or an A record of our host for an address that is not ours.
 * Goodbyes (TTL 0) claim nothing.
 */
export function conflictsWith(ours: PublicationRecords, r: DnsRecord): boolean {
  if (r.ttl === 0) return false;
  if (sameName(r.name, ours.fqdn)) {
    if (r.type === 'SRV') {
      const d = r.data as { port?: number; target?: string } | undefined;
      const o = ours.srv.data as { port: number; target: string };
      return !d || d.port !== o.port || !sameName(String(d.target ?? ''), o.target);
    }
    // A TXT alone differing is a conflict too: someone else answers for our instance name.
    if (r.type === 'TXT') return !txtEqual(r.data, ours.txt.data);
    return false;
  }
  const host = ours.srv.data as { target: string };
  if (r.type === 'A' && sameName(r.name, host.target)) return !ours.a.some((a) => a.data === r.data);
  return false;
}
