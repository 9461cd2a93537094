/**
 * A fresh node starts listening for its registrar before the rest of `muster join` has loaded (issue
 * 12, target 4: node start to certificate). The node decides which registrars it heard 150 ms after
 * its query (discovery.ts: RFC 6762 §6 lets responders answer a shared question up to 120 ms late,
 * and the node must hear a second registrar to never pick blindly between two CAs). That window is
 * waiting, not work: started early, it runs while the agent's modules load and the node key and CSR
 * are made, instead of after them.
 *
 * Only the mDNS stack and the browse start here; what is heard stays a hint, decided on exactly as
 * before (discovery.ts, choice.ts), and nothing about the node (name, key, advertisement) is sent:
 * the node's own "ready to register" advertisement needs its key and is published by the agent once
 * the key exists. runJoin adopts the head start only when it asked for what runJoin would ask for
 * (the cluster, the pinned CA, no CA held from an earlier registration); otherwise it closes it and
 * browses as it always did. A node whose state directory holds credentials gets no head start: it is
 * most likely registered already, and a registered node sends no query at boot.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createMdns, type Mdns, type MdnsOptions } from '../advertiser/index.js';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/log.js';
import { parseToken } from '../common/proof.js';
import { nodeClock } from './clock.js';
import { discoverRegistrar, type Candidate } from './discovery.js';
import { FILES } from './node-files.js';

export interface NodeMdnsOptions {
  /** IPv4 address of the interface for mDNS. */
  interface?: string;
  /** A --registrar URL to go on with: mDNS failures are then warnings (issue 14). */
  registrarUrl?: string;
  log: Logger;
  /** The mDNS stack (tests); default the advertiser's. */
  createMdns?: (o: MdnsOptions) => Mdns;
}

/**
 * The node's mDNS stack, its socket bound; undefined (logged) when it cannot be used. With a
 * --registrar URL to go on with, that and any later mDNS socket error is a warning (issue 14: the node
 * must not fail for want of multicast).
 */
export async function createNodeMdns(o: NodeMdnsOptions): Promise<Mdns | undefined> {
  const mlog = o.log.child({ component: 'mdns' });
  const fallback = o.registrarUrl !== undefined;
  const logger = fallback
    ? {
        debug: (obj: Record<string, unknown>, msg: string) => mlog.debug(obj, msg),
        info: (obj: Record<string, unknown>, msg: string) => mlog.info(obj, msg),
        warn: (obj: Record<string, unknown>, msg: string) => mlog.warn(obj, msg),
        error: (obj: Record<string, unknown>, msg: string) => mlog.warn(obj, msg),
      }
    : mlog;
  let mdns: Mdns | undefined;
  try {
    mdns = (o.createMdns ?? createMdns)({
      ...(o.interface ? { interface: o.interface } : {}),
      logger,
      onError: (err) => mlog.warn({ err: err.message, code: (err as { code?: string }).code }, 'mDNS error'),
    });
    await mdns.ready();
    return mdns;
  } catch (err) {
    const msg = (err as Error).message;
    if (fallback)
      mlog.warn({ err: msg, url: o.registrarUrl }, 'mDNS is unavailable: going on with --registrar only');
    else mlog.error({ err: msg }, 'mDNS is unavailable');
    await mdns?.close().catch(() => undefined);
    return undefined;
  }
}

export interface EarlyDiscoveryOptions extends NodeMdnsOptions {
  stateDir: string;
  /** The cluster asked for (empty: any). */
  cluster: string;
  /** --ca-fingerprint, and the join token (whose CA, when it carries one, pins too). */
  caFingerprint?: string;
  token?: string;
  /** How long the browse may wait for a first registrar (JoinOptions.discoveryTimeoutMs). */
  timeoutMs: number;
  clock?: Clock;
}

/** What the head start asked for: runJoin adopts it only when it would ask for the same. */
export interface DiscoveryAsk {
  cluster: string;
  pin: string | undefined;
}

/**
 * A browse that began before runJoin. runJoin either adopts it (takes its stack, and awaits its
 * candidates as its first discovery) or leaves it; either way it releases it on every way out.
 */
export class EarlyDiscovery {
  private readonly ctl = new AbortController();
  private adopted = false;
  private released: Promise<void> | undefined;
  /** The candidates of the first discovery; rejects only when stopped. */
  private readonly found: Promise<Candidate[]> | undefined;
  /** Registrars heard so far, before the decision, and who wants to hear of the next ones. */
  private readonly heard: Candidate[] = [];
  private onHeard: ((c: Candidate) => void) | undefined;
  private decideNowFn: (() => void) | undefined;

  constructor(
    /** The stack; undefined when it could not be used (already logged as "mDNS is unavailable"). */
    readonly mdns: Mdns | undefined,
    readonly ask: DiscoveryAsk,
    o: EarlyDiscoveryOptions,
  ) {
    if (mdns) {
      o.log.debug(
        { cluster: ask.cluster || undefined, pin: ask.pin },
        'looking for the registrar by mDNS while the agent loads',
      );
      this.found = discoverRegistrar({
        mdns,
        log: o.log,
        clock: o.clock ?? nodeClock,
        timeoutMs: o.timeoutMs,
        signal: this.ctl.signal,
        ...(ask.cluster ? { cluster: ask.cluster } : {}),
        ...(ask.pin ? { pin: ask.pin } : {}),
        onFound: (c) => {
          this.heard.push(c);
          this.onHeard?.(c);
        },
        decideWhen: new Promise<void>((resolve) => (this.decideNowFn = resolve)),
      });
      this.found.catch(() => undefined); // awaited by runJoin when adopted; a stop is no error here
    }
  }

  /** Whether runJoin, asking for `want` with no CA held, may use this head start. */
  matches(want: DiscoveryAsk & { held: string | undefined; localCluster: string | undefined }): boolean {
    return (
      !this.released &&
      !this.adopted &&
      want.held === undefined &&
      want.localCluster === undefined &&
      want.cluster === this.ask.cluster &&
      want.pin === this.ask.pin
    );
  }

  /** runJoin takes the stack (and closes it itself); the browse goes on until its first decision. */
  adopt(): void {
    this.adopted = true;
  }

  /**
   * The registrars heard, as discoverRegistrar resolves them (once: later rounds browse anew).
   * Aborting `signal` stops the browse and rejects with its reason.
   */
  candidates(signal: AbortSignal): Promise<Candidate[]> {
    if (!this.found) return Promise.resolve([]);
    const stop = (): void => this.ctl.abort(signal.reason);
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
    return this.found.finally(() => signal.removeEventListener('abort', stop));
  }

  /**
   * `fn` hears each matching registrar as it is first heard, before the decision: those heard so far
   * at once, then the others (DiscoverOptions.onFound).
   */
  onFound(fn: (c: Candidate) => void): void {
    this.onHeard = fn;
    for (const c of this.heard) fn(c);
  }

  /** Decide at once with what was heard (DiscoverOptions.decideWhen). */
  decideNow(): void {
    this.decideNowFn?.();
  }

  /**
   * Stops the browse if it still runs, and closes the stack unless runJoin adopted it (runJoin closes
   * an adopted one itself, after its goodbyes). Idempotent; runJoin calls it on every way out.
   */
  release(): Promise<void> {
    this.released ??= (async () => {
      this.ctl.abort(new Error('early discovery released'));
      if (!this.adopted) await this.mdns?.close().catch(() => undefined);
    })();
    return this.released;
  }
}

/**
 * Starts browsing for the registrar at once (the caller, with mDNS on, then loads the agent and calls
 * runJoin with the result), or returns undefined when a head start does not apply: a state directory
 * that holds credentials or a CA from an earlier registration, or a pin that runJoin will refuse as a
 * usage error (--ca-fingerprint and a token that pins another CA).
 */
export async function startEarlyDiscovery(o: EarlyDiscoveryOptions): Promise<EarlyDiscovery | undefined> {
  // Any of these files: registered, or part-way through writing credentials (writeBundle writes ca.crt
  // first): runJoin reads them and decides; it browses itself if it must.
  if ([FILES.cert, FILES.ca, FILES.bundle].some((f) => existsSync(path.join(o.stateDir, f))))
    return undefined;
  const tokenCa = o.token !== undefined ? parseToken(o.token)?.ca : undefined;
  if (o.caFingerprint !== undefined && tokenCa !== undefined && o.caFingerprint !== tokenCa) return undefined;
  const ask: DiscoveryAsk = { cluster: o.cluster, pin: o.caFingerprint ?? tokenCa };
  return new EarlyDiscovery(await createNodeMdns(o), ask, o);
}
