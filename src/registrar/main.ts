/**
 * Assembles a registrar: store, CA, policy service, HTTPS API and admin socket. Returns a handle with
 * close() (drain, close store); signal handling belongs to the CLI.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { systemClock, type Clock } from '../common/clock.js';
import { MusterError } from '../common/errors.js';
import { ensureDir, readIfExists, writeFileAtomic } from '../common/files.js';
import { storeEndpoints } from '../common/config.js';
import type { Logger } from '../common/log.js';
import { buildApi, LISTEN_BACKLOG } from '../fallback/api.js';
import { buildAdminApi } from './admin-api.js';
import { issueServerIdentity, loadOrCreateCa, type CertificateAuthority } from './ca.js';
import { checkPolicyCommand } from './admission/policy-hook.js';
import { Metrics } from './metrics.js';
import { hostAddresses, onLinkChecker } from './onlink.js';
import { openRegistry, type Registry } from '../store/index.js';
import type { Autoregister } from './policy.js';
import type { FaultPoint } from './registration.js';
import { RegistrarService } from './service.js';

export interface RegistrarOptions {
  stateDir: string;
  /** host:port; port 0 picks a free one. */
  listen: string;
  cluster: string;
  autoregister: Autoregister;
  adminSocket: string;
  /** IPv4 address of the interface to advertise on and to count as the local link. */
  interface?: string;
  /** Advertise and browse over mDNS (DESIGN "Discovery"); off: the HTTPS endpoint only. */
  mdns?: boolean;
  log: Logger;
  clock?: Clock;
  certLifetimeMs?: number;
  /** Certificate lifetimes by role (--role-lifetime). */
  roleLifetimesMs?: Record<string, number>;
  /** Garbage collection TTLs (registrar/steward.ts); 0: never. */
  heardTtlMs?: number;
  pendingTtlMs?: number;
  unackedTtlMs?: number;
  /** Events kept in the event log (store default: DEFAULT_EVENT_RETENTION). */
  eventRetention?: number;
  /** Refused joins per install-mode window, and bad proofs per token, before lockout (--max-failures). */
  maxFailures?: number;
  /**
   * The registry (--store): 'level' (default, under stateDir) or `etcd://HOST:PORT[,...][/PREFIX]`,
   * one registry shared by several registrars (DESIGN "Store backends").
   */
  store?: string;
  rateLimit?: number;
  maxInFlightJoins?: number;
  nodeConfig?: Record<string, Record<string, string>>;
  fault?: (point: FaultPoint) => void;
  /**
   * Run as a tier registrar (issue 11, registrar/tier.ts): join this parent (URL or 'auto') as role
   * cluster and sign with the intermediate it issues. startRegistrar resolves once registered.
   */
  parent?: {
    url: string;
    token?: string;
    caFingerprint?: string;
    /** Renewal/check-in period (default tier.ts DEFAULT_TIER_CHECK_MS). */
    checkIntervalMs?: number;
    /** Stops waiting for the parent (the CLI's SIGTERM while unregistered). */
    signal?: AbortSignal;
    backoff?: { baseMs: number; maxMs: number };
  };
  /** The policy hook (--policy-exec, --policy-timeout, --policy-concurrency). */
  policyExec?: string;
  policyTimeoutMs?: number;
  policyConcurrency?: number;
  /** --singleton-role. */
  singletonRoles?: string[];
  /** --admin-listen: serve the admin web page on this loopback HOST:PORT (registrar/admin-web.ts). */
  adminListen?: string;
}

export interface RunningRegistrar {
  id: string;
  url: string;
  port: number;
  caFingerprint: string;
  service: RegistrarService;
  api: FastifyInstance;
  metrics: Metrics;
  /**
   * Resolves if the store fails a write (disk full, I/O error): the registrar can serve no more
   * decisions and must be restarted (its unit's Restart= does it; a fresh start reads what is durable).
   */
  fatal: Promise<Error>;
  /** The admin web page, when --admin-listen is set. */
  web?: import('./admin-web.js').AdminWeb;
  /** A tier registrar's link to its parent (issue 11): check() renews when due, else checks in. */
  tier?: {
    parentUrl: string;
    check(opts?: { renewNow?: boolean }): Promise<'renewed' | 'current' | 'unreachable' | 'removed'>;
  };
  close(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535)
    throw new Error(`--listen ${JSON.stringify(listen)} is not HOST:PORT (e.g. 0.0.0.0:8443)`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function urlHost(host: string, iface?: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') {
    if (iface) return iface;
    for (const infos of Object.values(os.networkInterfaces())) {
      for (const i of infos ?? []) if (!i.internal && i.family === 'IPv4') return i.address;
    }
    return '127.0.0.1';
  }
  return host.includes(':') ? `[${host}]` : host;
}

async function prepareSocket(file: string): Promise<void> {
  await ensureDir(path.dirname(file), 0o755);
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(file);
    c.once('connect', () => (c.destroy(), resolve(true)));
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another registrar is already listening on ${file}`);
  await fs.rm(file, { force: true });
}

/** This registrar's id from its state dir, made and stored on its first start. */
async function localIdentity(stateDir: string, make: () => string): Promise<string> {
  const file = path.join(stateDir, 'registrar-id');
  const stored = (await readIfExists(file))?.trim();
  if (stored) return stored;
  const id = make();
  await writeFileAtomic(file, id + '\n');
  return id;
}

export async function startRegistrar(opts: RegistrarOptions): Promise<RunningRegistrar> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log;
  const { host, port } = parseListen(opts.listen);
  // A hook that cannot run is refused before anything is opened or created.
  if (opts.policyExec) await checkPolicyCommand(opts.policyExec);
  await ensureDir(opts.stateDir, 0o700);

  let registry: Registry;
  const shared = opts.store?.startsWith('etcd://') === true;
  let failed!: (err: Error) => void;
  const fatal = new Promise<Error>((resolve) => (failed = resolve));
  try {
    registry = await openRegistry(
      shared
        ? { kind: 'etcd', ...storeEndpoints(opts.store!) }
        : { kind: 'level', dir: path.join(opts.stateDir, 'registry') },
      {
        now: () => clock.now(),
        ...(opts.eventRetention !== undefined ? { eventRetention: opts.eventRetention } : {}),
        log: (level, message, detail) => log[level](detail, message),
        onFatal: (err) => {
          const cause = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
          log.error(
            { err: cause, stateDir: opts.stateDir },
            'the store failed a write; the registrar stops to be restarted',
          );
          failed(
            new MusterError(
              'MUSTER_ERR_STATE_DIR',
              `the store in ${opts.stateDir} failed a write (${cause})`,
            ),
          );
        },
      },
    );
  } catch (err) {
    // etcd unreachable (store_unavailable) says so itself; the unit's Restart= tries again.
    if (err instanceof MusterError) throw err;
    const cause = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
    const locked = /LOCK|lock/.test(cause);
    throw new MusterError(
      'MUSTER_ERR_STATE_DIR',
      `cannot open the registry in ${opts.stateDir} (${cause})${locked ? '; is another registrar using it?' : ''}`,
      { cause: err },
    );
  }
  const cleanup: (() => Promise<unknown>)[] = [() => registry.close()];
  try {
    const makeId = (): string => 'r-' + randomBytes(5).toString('hex');
    // A shared registry serves several registrars, each with an id of its own (its mDNS instance
    // name, its server certificate, the bundles it builds): kept in its state dir, not the store.
    const id = shared ? await localIdentity(opts.stateDir, makeId) : await registry.identity(makeId);
    let ca: CertificateAuthority;
    let link: import('./tier.js').ParentLink | undefined;
    if (opts.parent) {
      // A tier has no root of its own: it waits here until the parent issued its intermediate.
      const { ParentLink } = await import('./tier.js');
      link = await ParentLink.register({
        parent: opts.parent.url,
        stateDir: opts.stateDir,
        name: opts.cluster,
        registrarId: id,
        log,
        clock,
        mdns: opts.mdns === true,
        ...(opts.interface ? { interface: opts.interface } : {}),
        ...(opts.parent.token !== undefined ? { token: opts.parent.token } : {}),
        ...(opts.parent.caFingerprint ? { caFingerprint: opts.parent.caFingerprint } : {}),
        ...(opts.parent.checkIntervalMs ? { checkIntervalMs: opts.parent.checkIntervalMs } : {}),
        ...(opts.parent.signal ? { signal: opts.parent.signal } : {}),
        ...(opts.parent.backoff ? { backoff: opts.parent.backoff } : {}),
      });
      const l = link;
      cleanup.unshift(async () => l.close());
      ca = link.ca;
    } else {
      const made = await loadOrCreateCa(
        path.join(opts.stateDir, 'ca'),
        `muster CA ${opts.cluster} ${id}`,
        new Date(clock.now()),
      );
      ca = made.ca;
      if (made.created) log.info({ ca: ca.fingerprint }, 'created a new certificate authority');
    }
    const now = new Date(clock.now());
    const ips = [
      ...new Set([
        ...hostAddresses(),
        ...(net.isIP(host) && host !== '0.0.0.0' && host !== '::' ? [host] : []),
      ]),
    ];
    const identity = issueServerIdentity(ca, id, ips, now);

    let port0 = 0;
    // Computed when asked: a registrar started before the network (no --interface) learns its
    // address once one appears, instead of handing out https://127.0.0.1 in every bundle.
    const currentUrl = (): string => `https://${urlHost(host, opts.interface)}:${port0}`;
    const service = await RegistrarService.create({
      backgroundWhenServing: true,
      registry,
      ca,
      clock,
      log,
      registrarId: id,
      cluster: opts.cluster,
      role: link ? 'cluster' : 'main',
      url: () => currentUrl(),
      autoregister: opts.autoregister,
      isOnLink: onLinkChecker({
        ...(opts.interface ? { interface: opts.interface } : {}),
        advertising: opts.mdns === true,
      }),
      ...(opts.certLifetimeMs ? { certLifetimeMs: opts.certLifetimeMs } : {}),
      ...(opts.roleLifetimesMs ? { roleLifetimesMs: opts.roleLifetimesMs } : {}),
      ...(opts.heardTtlMs !== undefined ? { heardTtlMs: opts.heardTtlMs } : {}),
      ...(opts.pendingTtlMs !== undefined ? { pendingTtlMs: opts.pendingTtlMs } : {}),
      ...(opts.unackedTtlMs !== undefined ? { unackedTtlMs: opts.unackedTtlMs } : {}),
      ...(opts.maxFailures !== undefined ? { maxFailures: opts.maxFailures } : {}),
      ...(opts.nodeConfig ? { nodeConfig: opts.nodeConfig } : {}),
      ...(opts.fault ? { fault: opts.fault } : {}),
      ...(opts.policyExec ? { policyExec: opts.policyExec } : {}),
      ...(opts.policyTimeoutMs !== undefined ? { policyTimeoutMs: opts.policyTimeoutMs } : {}),
      ...(opts.policyConcurrency !== undefined ? { policyConcurrency: opts.policyConcurrency } : {}),
      ...(opts.singletonRoles?.length ? { singletonRoles: opts.singletonRoles } : {}),
    });
    cleanup.unshift(async () => service.close());

    const metrics = new Metrics({
      counts: () => service.operator.counts(),
      installModeOn: async () => (await service.operator.installModeStatus()).on,
      ...(service.policyHook ? { policyHook: () => service.policyHook! } : {}),
    });
    const api = await buildApi({
      onResponse: (r) => metrics.observe(r),
      service,
      log: log.child({ component: 'api' }),
      https: { key: identity.keyPem, cert: identity.certPem },
      ...(opts.rateLimit ? { rateLimit: opts.rateLimit } : {}),
      ...(opts.maxInFlightJoins ? { maxInFlightJoins: opts.maxInFlightJoins } : {}),
    });
    await api.listen({ host, port, backlog: LISTEN_BACKLOG });
    // Wake long polls first (they answer 202, retry shortly), or close() would wait up to 60 s for them.
    cleanup.unshift(async () => {
      service.close();
      await api.close();
    });
    const bound = api.server.address() as net.AddressInfo;
    port0 = bound.port;
    const url = currentUrl();
    if (link) {
      // What the tier heard while unregistered is recorded now; the nodes are decided when they ask.
      for (const h of link.heardBefore()) await service.heard(h.ad, h.addresses).catch(() => undefined);
      link.start({
        // A renewed intermediate: a server certificate that chains to it (old ones chain too: same key).
        onRenewed: (renewed) => {
          const next = issueServerIdentity(renewed, id, ips, new Date(clock.now()));
          (api.server as unknown as import('node:tls').Server).setSecureContext({
            key: next.keyPem,
            cert: next.certPem,
          });
        },
        onRemoved: (err) => service.issuer.retire(err),
      });
    }

    if (opts.mdns) {
      // The mDNS stack loads only when it is used.
      const { startRegistrarDiscovery } = await import('./discovery.js');
      const discovery = await startRegistrarDiscovery({
        service,
        log,
        registrarId: id,
        cluster: opts.cluster,
        caFingerprint: ca.fingerprint,
        role: link ? 'cluster' : 'main',
        port: bound.port,
        ...(opts.interface ? { interface: opts.interface } : {}),
      });
      // Goodbyes go out first on shutdown (CONVENTIONS 7), before the API drains.
      cleanup.unshift(() => discovery.close());
    }

    let web: import('./admin-web.js').AdminWeb | undefined;
    if (opts.adminListen) {
      // The web page loads only when it is on; it stops before the admin socket (its links die with it).
      const { AdminWeb } = await import('./admin-web.js');
      web = await AdminWeb.start({
        service,
        log: log.child({ component: 'admin-web' }),
        clock,
        listen: opts.adminListen,
      });
      const w = web;
      cleanup.unshift(() => w.close());
    }

    await prepareSocket(opts.adminSocket);
    const admin = await buildAdminApi(service, log.child({ component: 'admin' }), metrics, web);
    // Bound under umask 077 (issue 8): a socket made under the process umask (0755 with 022) would
    // let any local user connect until the chmod below.
    const umask = process.umask(0o077);
    try {
      await admin.listen({ path: opts.adminSocket });
    } finally {
      process.umask(umask);
    }
    await fs.chmod(opts.adminSocket, 0o600);
    cleanup.unshift(async () => {
      await admin.close();
      await fs.rm(opts.adminSocket, { force: true });
    });

    log.info(
      {
        id,
        url,
        cluster: opts.cluster,
        ca: ca.fingerprint,
        autoregister: opts.autoregister,
        adminSocket: opts.adminSocket,
        ...(web ? { adminWeb: web.url } : {}),
        stateDir: opts.stateDir,
      },
      'registrar ready',
    );
    service.startBackground();
    return {
      id,
      url,
      port: bound.port,
      caFingerprint: ca.fingerprint,
      service,
      api,
      metrics,
      fatal,
      ...(link ? { tier: link } : {}),
      ...(web ? { web } : {}),
      async close() {
        for (const step of cleanup.splice(0)) await step();
      },
    };
  } catch (err) {
    for (const step of cleanup.splice(0)) await step().catch(() => undefined);
    throw err;
  }
}
