/**
 * A node finds its registrar on the LAN (DESIGN "Discovery"): browse `_muster._tcp`, keep the
 * advertisements that validate, match the wanted cluster and the CA the node trusts (its pin, or the
 * CA it holds from an earlier registration). Several candidates with different CAs or clusters and
 * nothing pinned are a choice for the operator, never a silent pick (choice.ts).
 *
 * What it returns are hints (issue 8, hole 4): anyone on the link can advertise anything, so the
 * caller tries each candidate, checks it by TLS against the CA, and skips one that fails.
 */
import { validateRegistrarTxt, type Discovered, type Mdns } from '../advertiser/index.js';
import type { Clock, TimerHandle } from '../common/clock.js';
import type { Logger } from '../common/log.js';
import { nodeClock } from './clock.js';

export interface Candidate {
  id: string;
  url: string;
  /** `main`, or `cluster` for a tier registrar (DESIGN "Roles"). */
  role: string;
  cluster: string;
  /** The CA fingerprint the registrar advertises (untrusted until TLS shows the same CA). */
  ca: string;
  mode: string;
  addresses: string[];
}

export interface DiscoverOptions {
  mdns: Mdns;
  log: Logger;
  cluster?: string;
  /** The CA fingerprint the operator pinned (--ca-fingerprint, or the join token's). */
  pin?: string;
  /**
   * The CA this node holds from an earlier registration (its ca.crt), used like a pin when there is
   * none: after its first registration a node keeps its CA and refuses any other (README).
   */
  held?: string;
  timeoutMs: number;
  /**
   * How long after our first query to listen for other registrars before deciding (ambiguity check).
   * Responders delay answers to a shared PTR question by 20-120 ms (RFC 6762 §6), so 150 ms after
   * the query hears them all. The first query goes out at once (no §5.2 random delay: this caller
   * waits on the answer), so a registrar that answers at once is taken 150 ms after the browse
   * started, not 150 ms after its answer; one first heard later (a lost query, a registrar that came
   * up meanwhile) is taken 150 ms after it was heard.
   */
  settleMs?: number;
  signal?: AbortSignal;
  /** Time for the timeout and the settle delay (default: the real clock). */
  clock?: Clock;
  /**
   * Called with each matching registrar as it is first heard, before the decision (the agent opens a
   * connection to the first one meanwhile, agent.ts). What is decided is unchanged by it.
   */
  onFound?: (c: Candidate) => void;
  /**
   * When it resolves, decide at once with what was heard (if anything), without waiting out the
   * window. Only for a caller that knows no second choice can come (agent.ts: a pinned CA and a
   * cluster, and the first registrar checked against them).
   */
  decideWhen?: Promise<unknown>;
}

/** RFC 6762 §6: answers to a shared question come within 120 ms; 30 ms more for the link and a busy host. */
export const DEFAULT_SETTLE_MS = 150;

/** Candidates kept at most: the list comes from packets anyone on the link can send. */
const MAX_FOUND = 64;

function toCandidate(s: Discovered): Candidate | { reason: string } {
  const v = validateRegistrarTxt(s.txt);
  if (!v.ok) return { reason: v.reason };
  const addr = s.addresses.find((a) => !a.includes(':')) ?? s.addresses[0] ?? s.referer;
  if (!addr || !s.port) return { reason: 'no address or port' };
  const host = addr.includes(':') ? `[${addr}]` : addr;
  return {
    id: v.value.id ?? s.name,
    url: `https://${host}:${s.port}`,
    role: v.value.role,
    cluster: v.value.cluster,
    ca: v.value.ca,
    mode: v.value.mode,
    addresses: s.addresses,
  };
}

/**
 * Resolves with the matching registrars in the order they were heard (empty when none matched within
 * the timeout). Whether they leave a choice to make (several CAs or clusters, nothing pinned) is
 * choice.ts's to decide: never a silent pick (DESIGN "Discovery").
 */
export function discoverRegistrar(o: DiscoverOptions): Promise<Candidate[]> {
  return new Promise((resolve, reject) => {
    const found = new Map<string, Candidate>();
    const ignored = new Set<string>();
    const clock = o.clock ?? nodeClock;
    const settleMs = o.settleMs ?? DEFAULT_SETTLE_MS;
    const startedAt = clock.now();
    let settleTimer: TimerHandle | undefined;
    let finished = false;
    const finish = (fn: () => void): void => {
      if (finished) return;
      finished = true;
      clock.clearTimeout(deadline);
      if (settleTimer) clock.clearTimeout(settleTimer);
      browser.stop();
      o.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const trusted = o.pin ?? o.held;
    const decide = (): void => finish(() => resolve([...found.values()]));
    const seen = (s: Discovered): void => {
      const c = toCandidate(s);
      if ('reason' in c) {
        if (!ignored.has(s.name))
          o.log.warn(
            { instance: s.name.slice(0, 80), reason: c.reason },
            'ignoring an invalid registrar advertisement',
          );
        ignored.add(s.name);
        return;
      }
      if (o.cluster && c.cluster !== o.cluster) {
        if (!ignored.has(c.id))
          o.log.info({ registrar: c.id, cluster: c.cluster }, 'ignoring a registrar of another cluster');
        ignored.add(c.id);
        return;
      }
      if (trusted && c.ca !== trusted) {
        if (!ignored.has(c.id)) {
          if (o.pin)
            o.log.info({ registrar: c.id, ca: c.ca }, 'ignoring a registrar whose CA is not the pinned one');
          else
            o.log.warn(
              { registrar: c.id, ca: c.ca, held: o.held },
              'ignoring a registrar whose CA is not the one this node holds from an earlier registration ' +
                '(to register with another registrar, move the state directory away first)',
            );
        }
        ignored.add(c.id);
        return;
      }
      // Keyed by id and address: a forged advertisement that reuses a registrar's id must not push
      // the real one out of the list (both are tried; TLS tells them apart).
      const key = `${c.id} ${c.url}`;
      if (!found.has(key) && found.size >= MAX_FOUND) return;
      const isNew = !found.has(key);
      found.set(key, c);
      if (isNew) o.onFound?.(c);
      o.log.debug({ registrar: c.id, url: c.url, ca: c.ca }, 'found a registrar');
      if (!settleTimer) {
        const sinceQuery = clock.now() - startedAt;
        settleTimer = clock.setTimeout(decide, sinceQuery < settleMs ? settleMs - sinceQuery : settleMs);
      }
    };
    const onAbort = (): void => finish(() => reject(o.signal!.reason));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const deadline = clock.setTimeout(() => (found.size ? decide() : finish(() => resolve([]))), o.timeoutMs);
    let browser: ReturnType<Mdns['browse']>;
    try {
      browser = o.mdns.browse('muster', { up: seen, update: seen }, { queryAtOnce: true });
    } catch (err) {
      // The stack cannot browse (closed, broken socket): nothing to stop, the caller decides.
      clock.clearTimeout(deadline);
      o.signal?.removeEventListener('abort', onAbort);
      return reject(err);
    }
    for (const s of browser.list()) seen(s);
    o.decideWhen?.then(
      () => {
        if (found.size > 0) decide();
      },
      () => undefined,
    );
  });
}

export interface BrowseForOptions {
  mdns: Mdns;
  timeoutMs: number;
  signal?: AbortSignal;
  clock?: Clock;
}

/** Advertisements kept at most by browseRegistrars (one per instance and source). */
const MAX_HEARD = 1024;

/**
 * Everything heard on `_muster._tcp` for `timeoutMs` (`muster discover`): one entry per instance and
 * packet source, the latest of each, invalid ones included (listing.ts sorts them out). Resolves early
 * with what was heard when the signal aborts.
 */
export function browseRegistrars(o: BrowseForOptions): Promise<Discovered[]> {
  return new Promise((resolve, reject) => {
    const clock = o.clock ?? nodeClock;
    const heard = new Map<string, Discovered>();
    const keep = (s: Discovered): void => {
      const key = `${s.fqdn.toLowerCase()}|${s.referer ?? ''}`;
      if (!heard.has(key) && heard.size >= MAX_HEARD) return;
      heard.set(key, s);
    };
    let browser: ReturnType<Mdns['browse']>;
    try {
      browser = o.mdns.browse('muster', { up: keep, update: keep });
    } catch (err) {
      return reject(err);
    }
    const done = (): void => {
      clock.clearTimeout(timer);
      o.signal?.removeEventListener('abort', done);
      for (const s of browser.list()) keep(s);
      browser.stop();
      resolve([...heard.values()]);
    };
    const timer = clock.setTimeout(done, o.timeoutMs);
    if (o.signal?.aborted) return done();
    o.signal?.addEventListener('abort', done, { once: true });
  });
}
