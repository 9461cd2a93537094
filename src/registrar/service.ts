/**
 * The registrar assembled: admission (authorizer and provisioners), the exactly-once core
 * (registration), the issuer, delivery (long polls) and operator actions over one registry. It is
 * what the HTTPS routes (RegistrationEndpoint), the admin API and mDNS discovery talk to; it knows no
 * fastify and no sockets.
 */
import type { Clock } from '../common/clock.js';
import { MusterError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { assertLabel } from '../common/names.js';
import type { Bundle } from '../common/proof.js';
import { VERSION } from '../common/version.js';
import type {
  JoinOutcome,
  JoinRequest,
  PollProof,
  RegistrarInfoReply,
  RegistrationEndpoint,
  RenewRequest,
  SignedRequest,
} from '../fallback/wire.js';
import type { Registry } from '../store/registry.js';
import type { Channel } from '../store/types.js';
import { Authorizer } from './admission/authorizer.js';
import { ClusterRule } from './admission/cluster.js';
import { InstallModeProvisioner } from './admission/install-mode.js';
import { BanRule, PreapprovalProvisioner } from './admission/preapproval.js';
import { PendingSources } from './admission/pending-sources.js';
import { PolicyHook } from './admission/policy-hook.js';
import { SingletonRoleRule } from './admission/singleton.js';
import { INSTALL_MODE_KEY, Reservations, tokenKey } from './admission/reservations.js';
import { TierScreen } from './admission/tier-role.js';
import { TokenProvisioner } from './admission/token.js';
import type { CertificateAuthority } from './ca.js';
import { CrlPublisher } from './crl.js';
import { Delivery, MAX_WAIT_MS } from './delivery.js';
import { Issuer } from './issuer.js';
import { Operator } from './operator.js';
import { Steward } from './steward.js';
import { effectiveInstallMode, tokenState, type Autoregister } from './policy.js';
import { PENDING_RETRY_S, Registration, type FaultPoint } from './registration.js';
import { RefusalRecorder } from './refusals.js';

export { MAX_WAIT_MS } from './delivery.js';

/** A NAT'd rack of machines waiting for approval fits; one client cannot fill the queue for everyone. */
export const DEFAULT_MAX_PENDING_PER_SOURCE = 100;
export { DEFAULT_CERT_LIFETIME_MS } from './issuer.js';

export interface RegistrarServiceOptions {
  /** The caller starts the background work with startBackground() once it serves (default: create does). */
  backgroundWhenServing?: boolean;
  registry: Registry;
  ca: CertificateAuthority;
  clock: Clock;
  log: Logger;
  registrarId: string;
  cluster: string;
  role: 'main' | 'cluster';
  /** The registrar's own URL, once it listens. */
  url: () => string;
  autoregister: Autoregister;
  /** Is this client address on the local link (subnet of an advertised interface)? */
  isOnLink: (address: string) => boolean;
  certLifetimeMs?: number;
  roleLifetimesMs?: Record<string, number>;
  /** Pending (and heard) records kept at most. */
  maxPending?: number;
  /** Pending records from one source (IPv4 address, IPv6 /64) at most. */
  maxPendingPerSource?: number;
  nodeConfig?: Record<string, Record<string, string>>;
  /** Garbage collection TTLs (registrar/steward.ts); 0: never. */
  heardTtlMs?: number;
  pendingTtlMs?: number;
  unackedTtlMs?: number;
  fault?: (point: FaultPoint) => void;
  /** Refused joins per install-mode window, and bad proofs per token, before lockout (--max-failures). */
  maxFailures?: number;
  /** The policy hook's command line (--policy-exec; admission/policy-hook.ts). */
  policyExec?: string;
  policyTimeoutMs?: number;
  policyConcurrency?: number;
  /** Roles only one node may hold at a time (--singleton-role; admission/singleton.ts). */
  singletonRoles?: string[];
}

export class RegistrarService implements RegistrationEndpoint {
  readonly registration: Registration;
  readonly operator!: Operator;
  readonly delivery: Delivery;
  readonly issuer: Issuer;
  readonly authorizer: Authorizer;
  private readonly crls: CrlPublisher;
  readonly steward: Steward;
  private pendingSources!: PendingSources;
  private backgroundStarted = false;
  /** The policy hook, with --policy-exec. */
  readonly policyHook: PolicyHook | undefined;
  private readonly singletons: SingletonRoleRule | undefined;

  private constructor(private readonly o: RegistrarServiceOptions) {
    const reservations = new Reservations();
    this.policyHook = o.policyExec
      ? new PolicyHook({
          command: o.policyExec,
          log: o.log.child({ component: 'policy-hook' }),
          ...(o.policyTimeoutMs !== undefined ? { timeoutMs: o.policyTimeoutMs } : {}),
          ...(o.policyConcurrency !== undefined ? { concurrency: o.policyConcurrency } : {}),
        })
      : undefined;
    this.singletons = o.singletonRoles?.length
      ? new SingletonRoleRule(o.singletonRoles, o.registry, o.clock)
      : undefined;
    const singletons = this.singletons;
    this.authorizer = new Authorizer(
      [
        new ClusterRule(o.cluster),
        // Tiers (issue 11): no tier below a tier, and nothing once the parent removed this one.
        new TierScreen({ isTier: () => (o.ca.chain ?? []).length > 0, retired: () => this.issuer.retired }),
        new BanRule((kind, value) => o.registry.getBan(kind, value)),
        new PreapprovalProvisioner((name) => o.registry.getPreapproval(name)),
        new TokenProvisioner({
          token: (id) => o.registry.getToken(id),
          inflight: (id) => reservations.count(tokenKey(id)),
          released: (id) => reservations.released(tokenKey(id)),
          autoregister: () => o.autoregister,
          cluster: o.cluster,
        }),
        new InstallModeProvisioner({
          state: () => o.registry.getInstallMode(),
          inflight: () => reservations.count(INSTALL_MODE_KEY),
          released: () => reservations.released(INSTALL_MODE_KEY),
          autoregister: () => o.autoregister,
          cluster: o.cluster,
        }),
        ...(singletons ? [singletons] : []),
      ],
      {
        clock: o.clock,
        ...(this.policyHook ? { policy: this.policyHook } : {}),
        pendingCap: {
          max: o.maxPending ?? 10_000,
          count: async () => (await o.registry.counts()).pending,
          perSource: {
            max: o.maxPendingPerSource ?? DEFAULT_MAX_PENDING_PER_SOURCE,
            count: (a) => this.pendingSources.count(a),
          },
        },
      },
    );
    this.issuer = new Issuer({
      ca: o.ca,
      registry: o.registry,
      clock: o.clock,
      cluster: o.cluster,
      registrarId: o.registrarId,
      url: o.url,
      ...(o.certLifetimeMs ? { certLifetimeMs: o.certLifetimeMs } : {}),
      ...(o.roleLifetimesMs ? { roleLifetimesMs: o.roleLifetimesMs } : {}),
      ...(o.nodeConfig ? { nodeConfig: o.nodeConfig } : {}),
    });
    this.registration = new Registration({
      registry: o.registry,
      authorizer: this.authorizer,
      reservations,
      issuer: this.issuer,
      clock: o.clock,
      log: o.log,
      cluster: o.cluster,
      isOnLink: o.isOnLink,
      maxHeard: o.maxPending ?? 10_000,
      refusals: new RefusalRecorder({
        registry: o.registry,
        clock: o.clock,
        log: o.log,
        ...(o.maxFailures !== undefined ? { maxFailures: o.maxFailures } : {}),
      }),
      ...(o.fault ? { fault: o.fault } : {}),
      ...(singletons ? { serialRole: (role: string) => singletons.roles.has(role) } : {}),
    });
    this.delivery = new Delivery(o.registry, o.clock);
    this.steward = new Steward({
      registry: o.registry,
      registration: this.registration,
      clock: o.clock,
      log: o.log,
      ...(o.heardTtlMs !== undefined ? { heardTtlMs: o.heardTtlMs } : {}),
      ...(o.pendingTtlMs !== undefined ? { pendingTtlMs: o.pendingTtlMs } : {}),
      ...(o.unackedTtlMs !== undefined ? { unackedTtlMs: o.unackedTtlMs } : {}),
    });
    this.crls = new CrlPublisher({ ca: o.ca, registry: o.registry, clock: o.clock, log: o.log });
  }

  static async create(o: RegistrarServiceOptions): Promise<RegistrarService> {
    const s = new RegistrarService(o);
    // Follows the events from now; the stored pending records are read in the background (a cap
    // check waits for them).
    s.pendingSources = PendingSources.open(o.registry);
    (s as { operator: Operator }).operator = await Operator.create({
      registry: o.registry,
      registration: s.registration,
      authorizer: s.authorizer,
      clock: o.clock,
      log: o.log,
      isOnLink: o.isOnLink,
      caFingerprint: o.ca.fingerprint,
      ...(o.fault ? { fault: o.fault } : {}),
    });
    // Finish what a crash interrupted: nodes accepted but not yet issued get their certificate now.
    for (const name of await o.registry.namesInState('accepted')) await s.registration.ensureIssued(name);
    if (!o.backgroundWhenServing) s.startBackground();
    return s;
  }

  /**
   * The work that need not come before serving: the per-source pending counts' read, the first CRL
   * (watching for removals from then on; /v1/crl signs one itself if asked first) and the steward's
   * first sweep (then every 10 minutes). With `backgroundWhenServing` the registrar calls this once
   * it serves (registrar/main.ts): on one thread, work begun earlier would share the CPU with the
   * start itself (issue 12 target 2). Once only.
   */
  startBackground(): void {
    if (this.backgroundStarted) return;
    this.backgroundStarted = true;
    void this.pendingSources.load().catch(() => undefined);
    this.crls.start();
    this.steward.start();
  }

  get registry(): Registry {
    return this.o.registry;
  }

  get log(): Logger {
    return this.o.log;
  }

  close(): void {
    this.policyHook?.close();
    this.singletons?.close();
    this.pendingSources.close();
    this.operator.close();
    this.delivery.close();
    this.crls.close();
    this.steward.close();
  }

  // ---- what the registrar says about itself ----

  /** What `_muster._tcp` TXT and GET /v1/info say about admission (informative only). */
  async mode(): Promise<'open' | 'token' | 'closed'> {
    const now = this.o.clock.now();
    if (effectiveInstallMode(await this.o.registry.getInstallMode(), now).on) return 'open';
    for (const t of await this.o.registry.listTokens()) if (tokenState(t, now) === 'valid') return 'token';
    return 'closed';
  }

  async info(): Promise<RegistrarInfoReply> {
    return {
      v: 1,
      id: this.o.registrarId,
      cluster: this.o.cluster,
      role: this.o.role,
      ca: this.o.ca.fingerprint,
      mode: await this.mode(),
      version: VERSION,
    };
  }

  caPem(): string {
    return this.o.ca.certPem;
  }

  // ---- the registration endpoint ----

  join(req: JoinRequest, address: string, channel: Channel = 'https'): Promise<JoinOutcome> {
    return this.registration.join(req, address, channel);
  }

  heard(
    ad: { name: string; role: string; cluster: string; key: string },
    addresses: string[],
  ): Promise<void> {
    return this.registration.heard(ad, addresses);
  }

  /**
   * The node's long poll: answers at once when decided, else parks until this node's next event or
   * the end of its wait (delivery), then looks again.
   */
  async poll(name: string, key: string, waitMs: number, proof: PollProof): Promise<JoinOutcome> {
    assertLabel('node name', name);
    await this.registration.checkPoll(name, key, proof);
    const deadline = this.o.clock.now() + Math.min(Math.max(waitMs, 0), MAX_WAIT_MS);
    for (;;) {
      // Armed before the read: an event between the read and the wait still wakes us.
      const parked = this.delivery.arm(name, deadline - this.o.clock.now());
      try {
        const rec = await this.o.registry.getNode(name);
        if (!rec || rec.key !== key)
          throw new MusterError('not_found', `no node ${name} with this key is known`);
        switch (rec.state) {
          case 'issued':
          case 'active':
            return { status: 200, bundle: await this.issuer.bundle(rec) };
          case 'rejected':
            throw new MusterError('rejected', `node ${name} was rejected by the operator`);
          case 'removed':
            throw new MusterError(
              'removed',
              `node ${name} was removed by the operator; its certificate is revoked`,
            );
          case 'accepted':
            await this.registration.ensureIssued(name); // normally in progress already; after a crash, this finishes it
            continue;
          default:
            break;
        }
        if (deadline - this.o.clock.now() <= 0 || this.delivery.isClosed) {
          return {
            status: 202,
            state: rec.state,
            retryAfter: this.delivery.isClosed ? 1 : PENDING_RETRY_S,
            reason: rec.pendingReason ?? 'waiting for approval',
          };
        }
        await parked.wait;
      } finally {
        parked.cancel();
      }
    }
  }

  ack(name: string, body: SignedRequest): Promise<void> {
    return this.registration.ack(name, body);
  }

  leave(name: string, body: SignedRequest): Promise<void> {
    return this.registration.leave(name, body);
  }

  renew(name: string, body: RenewRequest): Promise<Bundle> {
    return this.registration.renew(name, body);
  }

  /** The CA's CRL, DER: re-signed on every removal and before its nextUpdate (registrar/crl.ts). */
  async crl(): Promise<Buffer> {
    return (await this.crls.get()).der;
  }
}
