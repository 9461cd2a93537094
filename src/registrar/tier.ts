/**
 * A tier registrar's link to its parent (issue 11; seed 004, Eucalyptus: cluster controllers register
 * with the cloud controller, then register their own node controllers).
 *
 * - Join: the tier registers with the parent like any node, through the node's own join code
 *   (node/agent.ts runJoin: key made once, 0600, retried until admitted, the bundle checked before
 *   anything is written), as role `cluster` under its cluster name. The parent answers with an
 *   intermediate CA certificate (pathLen 0) instead of a node certificate. Its key and the bundle live
 *   in `<state-dir>/parent/` like a node's credentials.
 * - `--parent auto`: the parent is the main registrar found by mDNS (`_muster._tcp`, role=main, the
 *   pinned root when one is given). Several mains with different CAs and no pin is an error that lists
 *   them: never a guess (DESIGN "Discovery").
 * - Before it is registered the tier cannot sign (it has no intermediate), so it serves no HTTPS at
 *   all: nodes pinned to the root could not verify any certificate it would show, and they retry a
 *   refused connection. The join advertisements it hears over mDNS meanwhile are kept (bounded) and
 *   recorded once the registrar runs (heardBefore()); the nodes behind them keep retrying and are
 *   decided by the usual rules (token, install mode, approval) when they ask again.
 * - Renewal: a timer renews the intermediate like a node renews (node/renew.ts: from two thirds of
 *   its lifetime), with the same key, so that the certificates already issued still chain to the
 *   renewed intermediate (same subject, same key identifier). Between renewals a check-in (the signed
 *   wait=0 poll, node/checkin.ts) learns when the parent removed the tier.
 * - Removal: `muster nodes remove <tier>` on the parent revokes the intermediate (parent CRL). The tier
 *   learns it at its next check (410 removed) and stops issuing for good (tier_removed).
 */
import { createPrivateKey } from 'node:crypto';
import path from 'node:path';
import {
  createMdns,
  validateNodeTxt,
  validateRegistrarTxt,
  type Discovered,
  type Mdns,
} from '../advertiser/index.js';
import { systemClock, type Clock, type TimerHandle } from '../common/clock.js';
import { isMusterError, MusterError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { parseToken } from '../common/proof.js';
import { runJoin } from '../node/agent.js';
import { checkIn } from '../node/checkin.js';
import type { Backoff } from '../node/join-loop.js';
import { localRegistration, NodeFiles } from '../node/node-files.js';
import { runRenew } from '../node/renew.js';
import { intermediateCa, type CertificateAuthority } from './ca.js';
import { TIER_ROLE } from './issuer.js';

/** How often a registered tier checks on its parent (renewal when due, else a check-in). */
export const DEFAULT_TIER_CHECK_MS = 10 * 60_000;
/** Join advertisements heard before registration, kept at most (they come from anyone on the link). */
export const MAX_HEARD_BEFORE = 1024;
/** How long `--parent auto` listens for a main registrar before it looks again. */
const PARENT_DISCOVERY_MS = 5000;
/** After the first main heard, how long to listen for others (RFC 6762 §6 answer delays). */
const SETTLE_MS = 500;

export interface ParentLinkOptions {
  /** The parent's URL, or 'auto' (mDNS). */
  parent: string;
  /** The registrar's state directory; the link keeps its credentials in `<stateDir>/parent`. */
  stateDir: string;
  /** The tier's name at the parent (its cluster name): the CN of its intermediate. */
  name: string;
  /** Join token for the parent (scoped to role cluster to be admitted without approval). */
  token?: string;
  /** The parent's root CA fingerprint (pin); a token that carries one pins it too. */
  caFingerprint?: string;
  log: Logger;
  clock?: Clock;
  /** mDNS for `auto` and for the join advertisements heard before registration. */
  mdns?: boolean;
  interface?: string;
  /** Registrar id: the mDNS host name while unregistered. */
  registrarId: string;
  checkIntervalMs?: number;
  backoff?: Backoff;
  waitS?: number;
  signal?: AbortSignal;
}

export interface HeardAdvert {
  ad: { name: string; role: string; cluster: string; key: string };
  addresses: string[];
}

export interface ParentLinkEvents {
  /** The intermediate was renewed: `ca` now holds it (the server certificate is to be re-issued). */
  onRenewed?: (ca: CertificateAuthority) => void;
  /** The parent removed this tier: issue nothing more. */
  onRemoved?: (err: MusterError) => void;
}

export class ParentLink {
  private timer: TimerHandle | undefined;
  private events: ParentLinkEvents = {};
  private retiredBy: MusterError | undefined;
  private checking: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly o: ParentLinkOptions,
    private readonly files: NodeFiles,
    /** The tier's CA: mutated in place on renewal, so the issuer and CRL signer see the new one. */
    readonly ca: CertificateAuthority,
    readonly parentUrl: string,
    private readonly heard: HeardAdvert[],
  ) {}

  /**
   * Registers with the parent (or finds the registration already made) and returns once the tier holds
   * its intermediate. Waits as long as the parent's operator takes (pending), retrying like a node's
   * boot job; `signal` stops it. Throws `removed`/`rejected` when the parent removed or rejected it.
   */
  static async register(o: ParentLinkOptions): Promise<ParentLink> {
    const log = o.log.child({ component: 'parent' });
    if (o.token !== undefined && !parseToken(o.token)) {
      throw new MusterError(
        'MUSTER_ERR_USAGE',
        'the parent join token is malformed: expected <id>.<secret> as printed by `muster tokens create`',
      );
    }
    const files = new NodeFiles(path.join(o.stateDir, 'parent'));
    const heard = new Map<string, HeardAdvert>();
    let mdns: Mdns | undefined;
    try {
      if (o.mdns) {
        mdns = createMdns({
          ...(o.interface ? { interface: o.interface } : {}),
          host: `${o.registrarId}.local`,
          logger: log,
          onError: (err) => log.error({ err: err.message }, 'mDNS error'),
        });
        await mdns.ready();
        // "Requests heard before a cluster controller is registered are kept until it is" (seed 004).
        const keep = (s: Discovered): void => {
          const v = validateNodeTxt(s.txt);
          if (!v.ok || v.value.state !== 'ready') return;
          if (!heard.has(v.value.name) && heard.size >= MAX_HEARD_BEFORE) return;
          heard.set(v.value.name, {
            ad: v.value,
            addresses: s.addresses.length ? s.addresses : s.referer ? [s.referer] : [],
          });
        };
        mdns.browse('muster-join', { up: keep, update: keep });
      } else if (o.parent === 'auto') {
        throw new MusterError(
          'MUSTER_ERR_USAGE',
          '--parent auto finds the parent by mDNS: turn --mdns on, or give its URL',
        );
      }
      const url = o.parent === 'auto' ? await findParent(mdns!, o, log) : o.parent;
      log.info({ parent: url, name: o.name }, 'registering with the parent registrar as a tier');
      const joined = await runJoin({
        registrarUrl: url,
        name: o.name,
        role: TIER_ROLE,
        cluster: '', // the parent's own cluster: the tier serves its own below it
        stateDir: files.dir,
        log,
        mdns: false,
        ...(o.token !== undefined ? { token: o.token } : {}),
        ...(o.caFingerprint ? { caFingerprint: o.caFingerprint } : {}),
        ...(o.clock ? { clock: o.clock } : {}),
        ...(o.backoff ? { backoff: o.backoff } : {}),
        ...(o.waitS !== undefined ? { waitS: o.waitS } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      });
      const ca = await loadTierCa(files);
      log.info(
        { parent: url, status: joined.status, serial: joined.serial, root: ca.fingerprint },
        'registered with the parent: signing with the intermediate CA',
      );
      const bundleUrl = await registrarUrlOf(files);
      return new ParentLink(o, files, ca, bundleUrl ?? url, [...heard.values()]);
    } finally {
      await mdns?.close();
    }
  }

  /** The join advertisements heard while unregistered (recorded by the caller once it runs). */
  heardBefore(): HeardAdvert[] {
    return this.heard.splice(0);
  }

  get retired(): MusterError | undefined {
    return this.retiredBy;
  }

  /** Starts the renewal/check-in timer. */
  start(events: ParentLinkEvents): void {
    this.events = events;
    this.schedule();
  }

  close(): void {
    this.closed = true;
    if (this.timer) (this.o.clock ?? systemClock).clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.closed || this.retiredBy) return;
    const clock = this.o.clock ?? systemClock;
    this.timer = clock.setTimeout(() => {
      this.timer = undefined;
      void this.check().finally(() => this.schedule());
    }, this.o.checkIntervalMs ?? DEFAULT_TIER_CHECK_MS);
  }

  /**
   * One look at the parent: renews the intermediate when due, else checks in. Never throws: an
   * unreachable parent is a warning (the tier keeps signing with a valid intermediate).
   */
  check(opts: { renewNow?: boolean } = {}): Promise<'renewed' | 'current' | 'unreachable' | 'removed'> {
    const run = this.checking.then(() => this.checkOnce(opts.renewNow === true));
    this.checking = run.catch(() => undefined);
    return run;
  }

  private async checkOnce(renewNow: boolean): Promise<'renewed' | 'current' | 'unreachable' | 'removed'> {
    if (this.retiredBy) return 'removed';
    const clock = this.o.clock ?? systemClock;
    const log = this.o.log.child({ component: 'parent' });
    try {
      const r = await runRenew({ stateDir: this.files.dir, log, clock, now: renewNow });
      if (r.renewed) {
        Object.assign(this.ca, await loadTierCa(this.files));
        log.info({ serial: r.serial, notAfter: r.notAfter }, 'intermediate CA renewed (same key)');
        this.events.onRenewed?.(this.ca);
        return 'renewed';
      }
      const keyPem = await this.files.read('key');
      const key = keyPem ? createPrivateKey(keyPem) : undefined;
      const reg = await localRegistration(this.files, key, clock.now());
      if (!reg || !key)
        throw new MusterError('not_found', 'the intermediate CA expired or its files are gone');
      const res = await checkIn({ files: this.files, key, bundle: reg.bundle, caPem: reg.caPem, clock, log });
      return res === 'unreachable' ? 'unreachable' : 'current';
    } catch (err) {
      if (isMusterError(err, 'removed') || isMusterError(err, 'rejected')) {
        this.retiredBy = new MusterError(
          'tier_removed',
          `this tier registrar (${this.o.name}) was removed from its parent: its intermediate CA is revoked and it issues no more certificates`,
        );
        log.error(
          { parent: this.parentUrl, err: (err as Error).message },
          'removed by the parent: issuing stops',
        );
        this.events.onRemoved?.(this.retiredBy);
        return 'removed';
      }
      log.warn(
        { parent: this.parentUrl, err: (err as Error).message },
        'could not reach the parent registrar',
      );
      return 'unreachable';
    }
  }
}

/** The tier's CA from its parent credentials: intermediate + key, the root as the anchor. */
async function loadTierCa(files: NodeFiles): Promise<CertificateAuthority> {
  const [keyPem, certPem, rootPem] = await Promise.all([
    files.read('key'),
    files.read('cert'),
    files.read('ca'),
  ]);
  if (!keyPem || !certPem || !rootPem) {
    throw new MusterError('MUSTER_ERR_STATE_DIR', `the tier credentials in ${files.dir} are incomplete`);
  }
  try {
    return intermediateCa(keyPem, certPem, rootPem);
  } catch (err) {
    throw new MusterError(
      'MUSTER_ERR_BUNDLE',
      `the tier credentials in ${files.dir} are not an intermediate CA: ${(err as Error).message}; move the directory away to register again`,
    );
  }
}

async function registrarUrlOf(files: NodeFiles): Promise<string | undefined> {
  try {
    return (JSON.parse((await files.read('bundle')) ?? '{}') as { registrar?: { url?: string } }).registrar
      ?.url;
  } catch {
    return undefined;
  }
}

/**
 * `--parent auto`: the main registrar on the LAN (role=main; the pinned root's when pinned). Listens
 * until one answers (retrying every PARENT_DISCOVERY_MS), then a little longer for others: several
 * with different CAs and no pin is MUSTER_ERR_AMBIGUOUS, listed.
 */
async function findParent(mdns: Mdns, o: ParentLinkOptions, log: Logger): Promise<string> {
  const clock = o.clock ?? systemClock;
  const pin = o.caFingerprint ?? (o.token ? parseToken(o.token)?.ca : undefined);
  for (;;) {
    if (o.signal?.aborted) throw o.signal.reason;
    const found = new Map<string, { id: string; url: string; ca: string }>();
    await new Promise<void>((resolve) => {
      let settle: TimerHandle | undefined;
      const done = (): void => {
        clock.clearTimeout(overall);
        if (settle) clock.clearTimeout(settle);
        o.signal?.removeEventListener('abort', done);
        browser.stop();
        resolve();
      };
      const seen = (s: Discovered): void => {
        const v = validateRegistrarTxt(s.txt);
        if (!v.ok || v.value.role !== 'main') return;
        if (pin && v.value.ca !== pin) return;
        const addr = s.addresses.find((a) => !a.includes(':')) ?? s.addresses[0] ?? s.referer;
        if (!addr || !s.port || found.size >= 64) return;
        const host = addr.includes(':') ? `[${addr}]` : addr;
        found.set(s.name, { id: v.value.id ?? s.name, url: `https://${host}:${s.port}`, ca: v.value.ca });
        settle ??= clock.setTimeout(done, SETTLE_MS);
      };
      const browser = mdns.browse('muster', { up: seen, update: seen });
      const overall = clock.setTimeout(done, PARENT_DISCOVERY_MS);
      o.signal?.addEventListener('abort', done, { once: true });
    });
    const list = [...found.values()];
    const cas = new Set(list.map((c) => c.ca));
    if (cas.size > 1) {
      throw new MusterError(
        'MUSTER_ERR_AMBIGUOUS',
        `several main registrars with different CAs answer on the LAN (${list
          .map((c) => `${c.id} at ${c.url}, CA ${c.ca}`)
          .join('; ')}): pin the parent's CA with --parent-ca-fingerprint or give --parent URL`,
      );
    }
    if (list[0]) {
      log.info(
        { parent: list[0].id, url: list[0].url, ca: list[0].ca },
        'found the parent registrar by mDNS',
      );
      return list[0].url;
    }
    log.info({ after: PARENT_DISCOVERY_MS }, 'no main registrar found by mDNS yet: looking again');
  }
}
