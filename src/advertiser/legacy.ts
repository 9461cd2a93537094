/**
 * Legacy unicast responses (RFC 6762 §6.7): a query that comes from a port other than 5353 is a simple
 * resolver's one-shot query (§5.1, e.g. `dig -p 5353 @224.0.0.251`). It gets a conventional unicast DNS
 * answer to its source address and port: the query ID and the questions repeated, no cache-flush bit,
 * TTLs of at most ten seconds. bonjour-service's responder answers every query by multicast to 5353,
 * which such a resolver never hears. Pure: the records are passed in, the socket layer sends.
 */
import { sameName, type DnsPacket, type DnsQuestion, type DnsRecord } from './records.js';

/** §6.7: legacy unicast answers SHOULD NOT carry TTLs longer than ten seconds. */
export const LEGACY_TTL_MAX_S = 10;
/** A packet of at most 9000 bytes holds a few hundred questions; we answer the first few. */
export const LEGACY_MAX_QUESTIONS = 16;

const key = (r: DnsRecord): string => `${r.type} ${r.name.toLowerCase()} ${JSON.stringify(r.data ?? null)}`;

function legacyCopy(r: DnsRecord): DnsRecord {
  const { flush: _flush, ...rest } = r;
  return { ...rest, ttl: Math.min(typeof r.ttl === 'number' ? r.ttl : 0, LEGACY_TTL_MAX_S) };
}

/**
 * The unicast answer to a legacy query from `records` (what we publish), or undefined when we have
 * nothing to say (§6: a responder stays silent rather than answer "no such record").
 */
export function legacyResponse(query: DnsPacket, records: readonly DnsRecord[]): DnsPacket | undefined {
  const questions: DnsQuestion[] = (query.questions ?? [])
    .filter((q) => q && typeof q.name === 'string' && typeof q.type === 'string')
    .slice(0, LEGACY_MAX_QUESTIONS);
  // Goodbyes (TTL 0) are for mDNS caches (publication.ts); a one-shot resolver gets the live records.
  const find = (name: string, type: string): DnsRecord[] =>
    records.filter((r) => r.ttl !== 0 && (type === 'ANY' || r.type === type) && sameName(r.name, name));

  const answers = new Map<string, DnsRecord>();
  for (const q of questions) for (const r of find(q.name, q.type)) answers.set(key(r), r);
  if (answers.size === 0) return undefined;

  // The additional records a DNS-SD client needs next (RFC 6763 §12): SRV and TXT of each instance a
  // PTR names, and the addresses of each SRV target.
  const additionals = new Map<string, DnsRecord>();
  const add = (r: DnsRecord): void => {
    const k = key(r);
    if (!answers.has(k)) additionals.set(k, r);
  };
  for (const r of answers.values())
    if (r.type === 'PTR' && typeof r.data === 'string') {
      for (const x of find(r.data, 'SRV')) add(x);
      for (const x of find(r.data, 'TXT')) add(x);
    }
  for (const r of [...answers.values(), ...additionals.values()]) {
    const target = (r.data as { target?: unknown } | undefined)?.target;
    if (r.type === 'SRV' && typeof target === 'string') for (const x of find(target, 'A')) add(x);
  }

  return {
    type: 'response',
    id: typeof query.id === 'number' ? query.id : 0,
    questions,
    answers: [...answers.values()].map(legacyCopy),
    additionals: [...additionals.values()].map(legacyCopy),
  };
}
