/**
 * What `muster discover` lists (issue 11, item 2): the registrars heard on `_muster._tcp`, one entry
 * per advertisement, from what the browser collected. Pure: no socket, no timer, no file.
 *
 * Everything here comes from packets anyone on the link can send (DESIGN "Discovery": untrusted
 * input). Valid advertisements are listed with the fields the TXT validator accepted; invalid ones are
 * kept apart with the reason, never thrown; the instance name and the addresses are cleaned before a
 * terminal sees them; the number of entries is bounded.
 */
import { isIP } from 'node:net';
import type { Discovered } from './browse-cache.js';
import { validateRegistrarTxt, type RegistrarAdvert } from './txt.js';

/** Entries listed at most (valid and invalid each); the rest are counted in `omitted`. */
export const LISTING_MAX = 256;
/** Characters of an untrusted instance name or reason shown at most. */
const SHOWN_MAX = 80;
/** Characters of the CA fingerprint in the short form (the table; --json has it whole). */
export const CA_SHORT_CHARS = 12;

export interface ListedRegistrar {
  /** The registrar id (TXT `id`, else the instance name). */
  id: string;
  /** The DNS-SD instance name, cleaned for display. */
  instance: string;
  role: RegistrarAdvert['role'];
  cluster: string;
  /** sha256 of the root CA certificate, base64url: as `muster ca` prints it. */
  ca: string;
  mode: RegistrarAdvert['mode'];
  /** IPv4 first, then IPv6; from A/AAAA records, else the packet source. */
  addresses: string[];
  port: number;
  /** The TXT advertisement version (`v`). */
  v: 1;
  /** The registrar's software version (TXT `sw`), when it advertises a valid one. */
  software: string | null;
  /** Source address of the packet that carried the advertisement. */
  heardFrom: string | null;
}

export interface InvalidAdvertisement {
  instance: string;
  heardFrom: string | null;
  reason: string;
}

export interface Listing {
  items: ListedRegistrar[];
  invalid: InvalidAdvertisement[];
  /** Entries beyond LISTING_MAX, not listed. */
  omitted: number;
}

export interface ListingOptions {
  /** Only registrars serving this cluster. */
  cluster?: string;
}

/** Printable ASCII only, bounded: what a terminal may safely show of an untrusted string. */
export function printable(s: string, max = SHOWN_MAX): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

/** The short form of a CA fingerprint, for tables. */
export const caShort = (ca: string): string => ca.slice(0, CA_SHORT_CHARS);

/** Valid IP addresses only (IPv4 first), without duplicates, bounded. */
function cleanAddresses(list: readonly unknown[], fallback: string | undefined): string[] {
  const ips = [...new Set(list.filter((a): a is string => typeof a === 'string' && isIP(a) !== 0))];
  if (ips.length === 0 && fallback !== undefined && isIP(fallback) !== 0) ips.push(fallback);
  const v4 = ips.filter((a) => isIP(a) === 4);
  const v6 = ips.filter((a) => isIP(a) === 6);
  return [...v4, ...v6].slice(0, 8);
}

/** One heard advertisement: listed, or invalid with the reason. */
export function listingEntry(
  s: Discovered,
): { ok: true; value: ListedRegistrar } | { ok: false; value: InvalidAdvertisement } {
  const instance = printable(typeof s.name === 'string' ? s.name : '');
  const heardFrom = typeof s.referer === 'string' && isIP(s.referer) !== 0 ? s.referer : null;
  const invalid = (reason: string) => ({
    ok: false as const,
    value: { instance, heardFrom, reason: printable(reason, 200) },
  });
  const v = validateRegistrarTxt(s.txt instanceof Map ? s.txt : new Map());
  if (!v.ok) return invalid(v.reason);
  if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) return invalid('no valid port (SRV)');
  const addresses = cleanAddresses(Array.isArray(s.addresses) ? s.addresses : [], s.referer);
  if (addresses.length === 0) return invalid('no address');
  return {
    ok: true,
    value: {
      id: v.value.id ?? instance,
      instance,
      role: v.value.role,
      cluster: v.value.cluster,
      ca: v.value.ca,
      mode: v.value.mode,
      addresses,
      port: s.port,
      v: v.value.v,
      software: v.value.sw ?? null,
      heardFrom,
    },
  };
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The listing of everything heard: valid registrars sorted by cluster, id and address (one entry per
 * advertisement: the same id heard from two addresses is listed twice, as a forged copy would be),
 * invalid advertisements apart, at most LISTING_MAX of each.
 */
export function listRegistrars(heard: readonly Discovered[], o: ListingOptions = {}): Listing {
  const items: ListedRegistrar[] = [];
  const invalid: InvalidAdvertisement[] = [];
  const seen = new Set<string>();
  let omitted = 0;
  for (const s of heard) {
    const e = listingEntry(s);
    if (e.ok) {
      if (o.cluster !== undefined && e.value.cluster !== o.cluster) continue;
      const key = JSON.stringify([
        e.value.id,
        e.value.ca,
        e.value.addresses,
        e.value.port,
        e.value.heardFrom,
      ]);
      if (seen.has(key)) continue;
      seen.add(key);
      if (items.length < LISTING_MAX) items.push(e.value);
      else omitted++;
    } else if (invalid.length < LISTING_MAX) invalid.push(e.value);
    else omitted++;
  }
  items.sort(
    (a, b) =>
      byText(a.cluster, b.cluster) ||
      byText(a.id, b.id) ||
      byText(a.addresses[0] ?? '', b.addresses[0] ?? '') ||
      a.port - b.port,
  );
  return { items, invalid, omitted };
}
