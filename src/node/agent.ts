/**
 * The node agent (`muster join`, DESIGN "Roles"): creates its key once, finds the registrar, asks to
 * join, waits by long poll, validates the whole bundle, writes it atomically, acknowledges, runs the
 * on-registered hook. The loop itself is join-loop.ts; this module wires it to the real mDNS stack,
 * HTTPS client, bundle checks and files. Errors are MusterErrors whose codes the CLI maps to
 * documented exit codes.
 */
import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import os from 'node:os';
import type { Clock } from '../common/clock.js';
import { isMusterError, MusterError } from '../common/errors.js';
import { ensureDir, readIfExists } from '../common/files.js';
import type { Logger } from '../common/log.js';
import {
  joinProofMac,
  nodeSignedPayload,
  parseToken,
  signNode,
  type Bundle,
  type ParsedToken,
} from '../common/proof.js';
import { buildCsr, certFingerprint, keyFingerprint } from '../common/x509.js';
import { RegistrarClient } from '../fallback/client.js';
import { nodeTxt, type Mdns, type MdnsOptions } from '../advertiser/index.js';
import { checkBundle } from './bundle-check.js';
import { checkIn } from './checkin.js';
import { nodeClock } from './clock.js';
import { chooseRegistrar, type AskChoice } from './choice.js';
import { discoverRegistrar, type Candidate } from './discovery.js';
import { createNodeMdns, type EarlyDiscovery } from './early-discovery.js';
import { WarmContact } from './warm-contact.js';
import { hookEnvironment, runHook } from './hook.js';
import {
  acknowledge,
  ACK_BUDGET_MS,
  JoinLoop,
  type Backoff,
  type JoinClient,
  type JoinIo,
  type RegistrarTarget,
} from './join-loop.js';
import {
  localRegistration,
  loadOrCreateKey,
  markAcknowledged,
  NodeFiles,
  readCredentials,
  serialOf,
  writeBundle,
} from './node-files.js';
import { nodeSpki, parseNodeKey } from './node-key.js';
import { deriveNodeName, type NameFrom } from './node-name.js';

export { FILES, NodeFiles, loadOrCreateKey } from './node-files.js';

/**
 * How long a registrar heard in one discovery round of a run still counts in the next ones (the TTL
 * RFC 6762 §10 gives records that name a host): see recentlyHeard in runJoin.
 */
const HEARD_MEMORY_MS = 120_000;

export interface JoinOptions {
  registrarUrl?: string;
  token?: string;
  name: string;
  role: string;
  cluster: string;
  /**
   * The registrar's CA to trust (--ca-fingerprint). A token that carries a CA pins it too; both given
   * and different is a usage error.
   */
  caFingerprint?: string;
  stateDir: string;
  onRegistered?: string;
  /** Run when the boot check-in of a registered node rewrote config.json (checkin.ts). */
  onChanged?: string;
  /** Cap of that check-in (default CHECKIN_TIMEOUT_MS). */
  checkInTimeoutMs?: number;
  log: Logger;
  /**
   * Give up after this long (default: never, as a boot job that retries until registered). Bounds
   * everything up to the written credentials, long polls included (MUSTER_ERR_TIMEOUT).
   */
  timeoutMs?: number;
  /** Seconds the registrar may hold one long poll. */
  waitS?: number;
  keyType?: 'ec' | 'rsa';
  /** Backoff bounds for retries after errors (ms). */
  backoff?: Backoff;
  signal?: AbortSignal;
  /** Find the registrar and advertise "ready to register" over mDNS (DESIGN "Discovery"). */
  mdns?: boolean;
  /** How long to look for a registrar by mDNS before using registrarUrl (default 5 s). */
  discoveryTimeoutMs?: number;
  /** IPv4 address of the interface for mDNS. */
  interface?: string;
  /**
   * Asks the person at the terminal which registrar to join when mDNS found several (different CAs or
   * clusters) and nothing pins one (choice.ts). The CLI passes it only when stdin and stderr are
   * terminals: without it (a boot job) the node never picks one.
   */
  choose?: AskChoice;
  /** Time and randomness for the loop (tests); default the real clock and Math.random. */
  clock?: Clock;
  random?: () => number;
  /** The mDNS stack (tests); default the advertiser's. */
  createMdns?: (o: MdnsOptions) => Mdns;
  /**
   * Derive the name instead of `name` (--name-from, when --name is not set; node-name.ts): from the
   * host name, /etc/machine-id or the node key (created first when missing).
   */
  nameFrom?: NameFrom;
  /** The host name and machine-id file the name is derived from (tests); default the machine's. */
  hostName?: string;
  machineIdFile?: string;
  /**
   * A browse the CLI started before loading the agent (early-discovery.ts): used as the first
   * discovery when it asked for what this run asks for, else closed. Released on every way out.
   */
  early?: EarlyDiscovery;
}

export interface JoinResult {
  status: 'registered' | 'already-registered';
  name: string;
  serial: string;
  certFile: string;
  caFile: string;
  fingerprint: string;
}

export async function runJoin(given: JoinOptions): Promise<JoinResult> {
  try {
    return await join(given);
  } finally {
    await given.early?.release();
  }
}

async function join(given: JoinOptions): Promise<JoinResult> {
  const log = given.log;
  const clock = given.clock ?? nodeClock;
  const startedAt = clock.now(); // --timeout counts from here: key, mDNS start and all
  const files = new NodeFiles(given.stateDir);
  // Usage errors first: nothing is made, written or sent before the options hold together.
  let token: ParsedToken | undefined;
  if (given.token !== undefined) {
    token = parseToken(given.token);
    if (!token) {
      throw new MusterError(
        'MUSTER_ERR_USAGE',
        'the join token is malformed: expected <id>.<secret> as printed by `muster tokens create`',
      );
    }
  }
  let pinned = pinOf(given.caFingerprint, token);
  let pin = pinned?.fp;
  // The cluster asked for (empty: any); a choice at the terminal sets it for the rest of this run.
  let cluster = given.cluster;
  try {
    await ensureDir(given.stateDir, 0o700);
  } catch (err) {
    throw new MusterError(
      'MUSTER_ERR_STATE_DIR',
      `cannot create ${given.stateDir}: ${(err as Error).message}`,
    );
  }
  const o = given.nameFrom ? { ...given, name: await derivedName(given, given.nameFrom, files) } : given;

  // The key and the credentials are read (and the key parsed) once, for every use below.
  const [existingKeyPem, held] = await Promise.all([files.read('key'), readCredentials(files)]);
  const existingKey = existingKeyPem ? parseNodeKey(existingKeyPem) : undefined;
  const local = await localRegistration(files, existingKey, clock.now(), held);
  if (local) {
    if (local.bundle.node !== o.name) {
      throw new MusterError(
        'MUSTER_ERR_BUNDLE',
        `this node is registered as ${local.bundle.node}, not ${o.name}; to register it anew, move ${o.stateDir} away first`,
      );
    }
    // A pin that is not the CA this node holds is a security question, not "already registered": the
    // operator means another registrar (DESIGN "HTTPS API": the pinned CA fingerprint).
    const held = certFingerprint(local.caPem);
    if (pinned && held !== pinned.fp) {
      throw new MusterError(
        'MUSTER_ERR_CA_PIN',
        `this node is registered with CA ${held} (${files.path('ca')}), not the pinned ${pinned.fp} (${pinned.from}); ` +
          `to register it with another registrar, move ${o.stateDir} away first`,
      );
    }
    const result = resultFor('already-registered', files, local.cert, local.bundle);
    if (!(await files.read('acked'))) {
      // The ack failed, or a crash came between writing the files and the ack: finish both steps now.
      const acked = await ackAgain(o, existingKey!, local.bundle, clock, startedAt);
      await finish(o, files, local.bundle, acked);
    }
    // One cheap authenticated contact with the registrar of the bundle (issue 9, items 4 and 5): a
    // changed config reaches the node at boot, a removed node learns of it (exit 3), lastSeen moves.
    // Whatever else happens there is a warning: boot never depends on the registrar.
    await checkIn({
      files,
      key: existingKey!,
      bundle: local.bundle,
      caPem: local.caPem,
      clock,
      log,
      ...(o.onChanged ? { onChanged: o.onChanged } : {}),
      ...(o.checkInTimeoutMs !== undefined ? { timeoutMs: o.checkInTimeoutMs } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
    });
    log.info({ node: o.name, serial: result.serial }, 'already registered');
    return result;
  }

  if (!o.registrarUrl && !o.mdns) {
    throw new MusterError(
      'MUSTER_ERR_USAGE',
      'no registrar: pass --registrar https://HOST:PORT, or turn mDNS on to find it on the LAN',
    );
  }
  const key = await loadOrCreateKey(files, o.keyType ?? 'ec', log, existingKey);
  const spki = nodeSpki(key);
  const fp = keyFingerprint(spki);
  const csr = buildCsr(o.name, key);
  // The certificate as checkBundle parsed it, for the log line, the ack and the result: a parse costs
  // ~0.7 ms of CPU (node:crypto, OpenSSL 3), several per node in a herd (issue 12, target 3).
  const parsed = new WeakMap<Bundle, X509Certificate>();
  const certOf = (bundle: Bundle): X509Certificate => {
    let cert = parsed.get(bundle);
    if (!cert) parsed.set(bundle, (cert = new X509Certificate(bundle.certificate)));
    return cert;
  };
  const localCaPem = held.ca;
  let heldCa: string | undefined;
  try {
    heldCa = localCaPem ? certFingerprint(localCaPem) : undefined;
  } catch {
    heldCa = undefined; // an unreadable ca.crt: the connect step refuses it with a clear message
  }
  const localBundle = held.bundle;
  let localCluster: string | undefined;
  try {
    localCluster = localBundle ? (JSON.parse(localBundle) as Bundle).cluster : undefined;
  } catch {
    localCluster = undefined;
  }

  let mdns: Mdns | undefined;
  // The browse the CLI started early is this run's first discovery when it asked for the same thing
  // (the cluster, the pin, and no CA held from an earlier registration); otherwise it is closed.
  const early =
    o.mdns && o.early?.matches({ cluster, pin, held: heldCa, localCluster }) ? o.early : undefined;
  if (o.mdns) {
    if (early) early.adopt();
    else await o.early?.release();
    mdns = await startNodeMdns(o, fp, log, early);
    if (!mdns && !o.registrarUrl) {
      throw new MusterError(
        'MUSTER_ERR_MDNS',
        'mDNS is unavailable (see the log) and no --registrar URL is set',
      );
    }
  }
  let browsing = mdns !== undefined;
  let pendingEarly = mdns ? early : undefined;

  const firstContact = (target: RegistrarTarget, signal: AbortSignal): Promise<RegistrarClient> =>
    RegistrarClient.connect(target.url, {
      ...(pin ? { pin } : {}),
      ...(localCaPem ? { localCa: localCaPem } : {}),
      ...(target.advertisedCa ? { advertisedCa: target.advertisedCa } : {}),
      signal,
    });
  // The first registrar heard is contacted while discovery listens for others (warm-contact.ts).
  const warm = new WarmContact(firstContact);
  // A node that trusts one CA (a pin, or the CA it holds) and asks for one cluster keeps only
  // registrars of that CA and cluster: no second choice can come, so once the first one heard has
  // checked out against that CA, the window need not be waited out. A forged advertisement heard
  // first fails that check, and the node listens the whole window as before (DESIGN "Discovery").
  const hear = (signal: AbortSignal, decideNow: () => void) => (c: Candidate) => {
    const contact = warm.heard({ url: c.url, advertisedCa: c.ca }, pin, signal);
    if (!contact || !(pin ?? heldCa) || !(cluster || localCluster)) return;
    contact.then(
      (client) => {
        if (client.info.cluster !== (cluster || localCluster)) return; // connect() will refuse it
        log.debug({ registrar: c.id, url: c.url }, 'the first registrar heard checked out: deciding now');
        decideNow();
      },
      () => undefined,
    );
  };

  const discover = async (signal: AbortSignal): Promise<RegistrarTarget[]> => {
    warm.drop(); // a contact left from an earlier round
    try {
      const targets = await discoverTargets(signal);
      warm.keepFor(targets[0], pin);
      return targets;
    } catch (err) {
      warm.drop();
      throw err;
    }
  };

  // The registrars heard in the rounds of this run, and when. Each round browses anew, and a
  // responder may stay silent to a query that comes within a second of its last answer (RFC 6762 §6)
  // or lose one to the link: a round that hears only one of two registrars with different CAs must
  // not make the choice an earlier round refused to make (DESIGN "Discovery": never a silent pick).
  // One heard within HEARD_MEMORY_MS still counts; one that went away stops counting then.
  const recentlyHeard = new Map<string, { c: Candidate; at: number }>();
  const withRecentlyHeard = (heard: Candidate[], wanted: string | undefined): Candidate[] => {
    const now = clock.now();
    const key = (c: Candidate): string => `${c.id} ${c.url}`;
    const trusted = pin ?? heldCa;
    const earlier: Candidate[] = [];
    for (const [k, { c, at }] of recentlyHeard) {
      if (now - at > HEARD_MEMORY_MS) recentlyHeard.delete(k);
      else if ((!wanted || c.cluster === wanted) && (!trusted || c.ca === trusted)) earlier.push(c);
    }
    for (const c of heard) recentlyHeard.set(key(c), { c, at: now });
    return [...heard, ...earlier.filter((c) => !heard.some((h) => key(h) === key(c)))];
  };

  // mDNS candidates are hints (issue 8, hole 4): all of them are returned, each checked by TLS on
  // connecting and skipped by the loop when it fails; the --registrar URL comes last.
  const discoverTargets = async (signal: AbortSignal): Promise<RegistrarTarget[]> => {
    const discoveryTimeoutMs = o.discoveryTimeoutMs ?? 5000;
    const url: RegistrarTarget[] = o.registrarUrl ? [{ url: o.registrarUrl }] : [];
    if (!mdns || !browsing) return url;
    let found: Candidate[] = [];
    // A node that held credentials looks for its own cluster unless told otherwise (its bundle check
    // would refuse another one anyway).
    const wanted = cluster || localCluster;
    try {
      // The first round takes what the early browse heard (it asked for the same); later rounds,
      // after a failed attempt, browse anew.
      const first = pendingEarly;
      pendingEarly = undefined;
      first?.onFound(hear(signal, () => first.decideNow()));
      let decideNow = (): void => undefined;
      const decideWhen = new Promise<void>((resolve) => (decideNow = resolve));
      const heard = first
        ? await first.candidates(signal)
        : await discoverRegistrar({
            mdns,
            log,
            clock,
            timeoutMs: discoveryTimeoutMs,
            signal,
            onFound: hear(signal, () => decideNow()),
            decideWhen,
            ...(wanted ? { cluster: wanted } : {}),
            ...(pin ? { pin } : {}),
            ...(heldCa ? { held: heldCa } : {}),
          });
      // Several CAs or clusters: a choice for a person at a terminal, never a silent pick. With a
      // --registrar URL to go on with, nobody is asked: that URL is the operator's choice.
      const picked = await chooseRegistrar(withRecentlyHeard(heard, wanted), {
        ...((pin ?? heldCa) ? { trusted: pin ?? heldCa } : {}),
        ...(o.choose && !o.registrarUrl ? { ask: o.choose } : {}),
        signal,
      });
      found = picked.candidates;
      if (picked.chosen) {
        const c = picked.chosen;
        pinned = { fp: c.ca, from: 'the choice at the terminal' };
        pin = c.ca;
        cluster ||= c.cluster;
        log.info(
          { registrar: c.id, url: c.url, ca: c.ca, cluster: c.cluster, role: c.role },
          'registrar chosen at the terminal: joining it, its CA pinned for this run',
        );
      }
    } catch (err) {
      if (signal.aborted) throw err;
      if (isMusterError(err, 'MUSTER_ERR_AMBIGUOUS')) {
        // Never a silent pick (DESIGN "Discovery"); with a URL to go on with, that is the way.
        if (!o.registrarUrl) throw err;
        log.warn(
          { err: err.message, url: o.registrarUrl },
          'skipping the registrars found by mDNS: using --registrar',
        );
        return url;
      }
      if (isMusterError(err)) throw err;
      // The mDNS stack itself failed (a closed or broken socket): with a URL that is a warning.
      if (!o.registrarUrl)
        throw new MusterError('MUSTER_ERR_MDNS', `mDNS browsing failed: ${(err as Error).message}`);
      log.warn({ err: (err as Error).message }, 'mDNS browsing failed: using --registrar');
      browsing = false;
      return url;
    }
    for (const c of found) {
      log.info({ registrar: c.id, url: c.url, ca: c.ca, cluster: c.cluster }, 'found the registrar by mDNS');
    }
    if (found.length === 0 && o.registrarUrl) {
      log.info(
        { url: o.registrarUrl, after: discoveryTimeoutMs },
        'no registrar found by mDNS: using --registrar',
      );
    }
    return [...found.map((c) => ({ url: c.url, advertisedCa: c.ca, discovered: c.id })), ...url];
  };

  const io: JoinIo = {
    discover,

    connect: async (target, signal): Promise<JoinClient> => {
      const client = await (warm.take(target, pin) ?? firstContact(target, signal));
      const { info, trust } = client;
      if (cluster && info.cluster !== cluster) {
        client.close();
        throw new MusterError(
          'wrong_cluster',
          `the registrar at ${client.base.origin} serves cluster ${info.cluster}, not ${cluster}`,
        );
      }
      if (trust === 'tofu') {
        log.warn(
          { registrar: info.id, ca: info.ca, authenticatedBy: token ? 'join token (bundle MAC)' : 'nothing' },
          token
            ? 'trusting the registrar CA on first use; the join token will authenticate it'
            : 'TRUST ON FIRST USE: neither a pinned CA (--ca-fingerprint) nor a token authenticates this registrar',
        );
      } else {
        log.info(
          {
            registrar: info.id,
            ca: info.ca,
            trust,
            ...(trust === 'pinned' ? { pinnedBy: pinned!.from } : {}),
          },
          'registrar verified',
        );
      }
      return client;
    },

    joinBody: () => {
      const ts = Math.floor(clock.now() / 1000);
      const proof = token
        ? {
            id: token.id,
            ts,
            hmac: joinProofMac(token.secret, { name: o.name, role: o.role, cluster, key: fp, ts }),
          }
        : undefined;
      return { name: o.name, role: o.role, cluster, csr, ...(proof ? { proof } : {}) };
    },

    // The long poll proves possession of the key (DESIGN "HTTPS API": a fingerprint alone is public):
    // signed per request, as the time is part of what is signed.
    pollPath: (waitS) => {
      const ts = Math.floor(clock.now() / 1000);
      const sig = signNode(key, nodeSignedPayload('poll', o.name, fp, ts));
      return `/v1/join/${o.name}?key=${fp}&wait=${waitS}&ts=${ts}&sig=${sig}`;
    },

    validate: (body, client) => {
      const checked = checkBundle(body, {
        name: o.name,
        role: o.role,
        cluster,
        spki,
        sessionCaPem: client.caPem,
        sessionCa: client.ca,
        registrarId: client.info.id,
        now: clock.now(),
        ...(pin ? { pin } : {}),
        ...(localCaPem ? { localCaPem } : {}),
        ...(localCluster ? { localCluster } : {}),
        ...(token ? { tokenSecret: token.secret } : {}),
      });
      if (!checked.ok) {
        throw new MusterError(
          'MUSTER_ERR_BUNDLE',
          `refusing the credentials, nothing was written: ${checked.problems.join('; ')}`,
        );
      }
      parsed.set(checked.bundle, checked.cert);
      return checked.bundle;
    },

    write: async (bundle) => {
      await writeBundle(files, bundle);
      const cert = certOf(bundle);
      log.info(
        { node: o.name, serial: cert.serialNumber, registrar: bundle.registrar.id },
        'credentials written',
      );
    },

    ack: (bundle) => ackRequest(key, bundle, clock, fp, certOf(bundle)),

    finish: (bundle, acked) => finish(o, files, bundle, acked),
  };

  try {
    const bundle = await new JoinLoop({
      io,
      clock,
      random: o.random ?? Math.random,
      log,
      logFields: { node: o.name, key: fp },
      startedAt,
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      ...(o.waitS !== undefined ? { waitS: o.waitS } : {}),
      ...(o.backoff ? { backoff: o.backoff } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
    }).run();
    return resultFor('registered', files, certOf(bundle), bundle);
  } finally {
    warm.drop();
    // The join advertisement is withdrawn (goodbye, awaited) whether registered, refused or stopped.
    await mdns?.close();
  }
}

/** The name --name-from derives, logged (the operator sees it in `nodes list`, the node in its log). */
async function derivedName(o: JoinOptions, from: NameFrom, files: NodeFiles): Promise<string> {
  const host = o.hostName ?? os.hostname();
  let machineId: string | undefined;
  let fingerprint: string | undefined;
  if (from === 'machine-id') machineId = await readIfExists(o.machineIdFile ?? '/etc/machine-id');
  if (from === 'key') {
    const key = await loadOrCreateKey(files, o.keyType ?? 'ec', o.log);
    fingerprint = keyFingerprint(createPublicKey(key));
  }
  const name = deriveNodeName(from, { host, machineId, keyFingerprint: fingerprint });
  o.log.info({ node: name, nameFrom: from, host }, 'node name derived');
  return name;
}

/**
 * Advertises "ready to register as X" with the node's own host name (never the machine's), on the
 * stack the early discovery opened or on a new one. Returns undefined when the mDNS stack cannot be
 * used (logged; a warning when a --registrar URL is there to go on with, issue 14).
 */
async function startNodeMdns(
  o: JoinOptions,
  fp: string,
  log: Logger,
  early: EarlyDiscovery | undefined,
): Promise<Mdns | undefined> {
  const mdns = early
    ? early.mdns
    : await createNodeMdns({
        log,
        ...(o.interface ? { interface: o.interface } : {}),
        ...(o.registrarUrl !== undefined ? { registrarUrl: o.registrarUrl } : {}),
        ...(o.createMdns ? { createMdns: o.createMdns } : {}),
      });
  if (!mdns) return undefined;
  try {
    mdns.publish({
      type: 'muster-join',
      name: o.name,
      host: `${o.name}.local`,
      port: 9, // DNS-SD needs a port; the node serves nothing (RFC 6763 §6: the TXT carries the meaning)
      txt: nodeTxt({ v: 1, name: o.name, role: o.role, cluster: o.cluster, key: fp, state: 'ready' }),
    });
    return mdns;
  } catch (err) {
    const mlog = log.child({ component: 'mdns' });
    const msg = (err as Error).message;
    if (o.registrarUrl !== undefined)
      mlog.warn({ err: msg, url: o.registrarUrl }, 'mDNS is unavailable: going on with --registrar only');
    else mlog.error({ err: msg }, 'mDNS is unavailable');
    await mdns.close().catch(() => undefined);
    return undefined;
  }
}

/** The CA pin in force and where it came from; both given and different is a usage error. */
function pinOf(
  flag: string | undefined,
  token: ParsedToken | undefined,
): { fp: string; from: string } | undefined {
  if (flag !== undefined && token?.ca !== undefined && flag !== token.ca) {
    throw new MusterError(
      'MUSTER_ERR_USAGE',
      `the join token pins CA ${token.ca} but --ca-fingerprint is ${flag}: give one of them, or both the same`,
    );
  }
  if (flag !== undefined) return { fp: flag, from: '--ca-fingerprint' };
  // After kubeadm's discovery hash: the token that admits the node also names the registrar it trusts.
  if (token?.ca !== undefined) return { fp: token.ca, from: 'the join token' };
  return undefined;
}

/** POST /v1/join/:name/ack, signed with the node key over ('ack', name, serial, ts). */
/** `fp` and `cert`: the key's fingerprint and the parsed certificate, when the caller has them. */
function ackRequest(
  key: KeyObject,
  bundle: Bundle,
  clock: Clock,
  fp = keyFingerprint(createPublicKey(key)),
  cert = new X509Certificate(bundle.certificate),
): { path: string; body: unknown } {
  const serial = serialOf(cert);
  const ts = Math.floor(clock.now() / 1000);
  return {
    path: `/v1/join/${bundle.node}/ack`,
    body: {
      key: fp,
      serial,
      ts,
      sig: signNode(key, nodeSignedPayload('ack', bundle.node, serial, ts)),
    },
  };
}

/**
 * A registered node whose ack did not go through (a registrar down, or a crash before it): ack now, at
 * the registrar of its bundle, trusted by the CA the node holds; retried as in the join loop.
 */
async function ackAgain(
  o: JoinOptions,
  key: KeyObject,
  bundle: Bundle,
  clock: Clock,
  startedAt: number,
): Promise<boolean> {
  let client: RegistrarClient | undefined;
  const left = o.timeoutMs === undefined ? Infinity : startedAt + o.timeoutMs - clock.now();
  try {
    return await acknowledge({
      send: async (timeoutMs, signal) => {
        client ??= await RegistrarClient.connect(bundle.registrar.url, {
          localCa: bundle.ca,
          timeoutMs,
          ...(signal ? { signal } : {}),
        });
        const { path, body } = ackRequest(key, bundle, clock);
        return client.call('POST', path, body, timeoutMs, signal);
      },
      clock,
      random: o.random ?? Math.random,
      log: o.log,
      logFields: { node: bundle.node },
      budgetMs: Math.max(0, Math.min(ACK_BUDGET_MS, left)),
      ...(o.backoff ? { backoff: o.backoff } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
    });
  } finally {
    client?.close();
  }
}

/**
 * Runs the hook once the credentials are written (acknowledged or not: they are valid); the
 * `acknowledged` file marks both done, so a run whose ack failed is finished by the next run.
 */
async function finish(o: JoinOptions, files: NodeFiles, bundle: Bundle, acked: boolean): Promise<void> {
  const clock = o.clock ?? nodeClock;
  if (o.onRegistered) {
    await runHook(o.onRegistered, hookEnvironment(process.env, files, bundle));
    o.log.info({ node: bundle.node }, 'on-registered command done');
  }
  if (acked) await markAcknowledged(files, new Date(clock.now()).toISOString() + '\n');
}

function resultFor(
  status: JoinResult['status'],
  files: NodeFiles,
  cert: X509Certificate,
  bundle: Bundle,
): JoinResult {
  return {
    status,
    name: bundle.node,
    serial: serialOf(cert),
    certFile: files.path('cert'),
    caFile: files.path('ca'),
    fingerprint: certFingerprint(bundle.ca),
  };
}
