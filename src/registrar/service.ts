/**
 * The registrar's core: the one place where "accepted once only" is decided (CONVENTIONS 5,
 * DESIGN "Exactly once"). Every change of a node happens under that node's lock in the registry and
 * lands as one atomic, durable batch; policy comes from the authorizer; certificates from the CA.
 * Both channels (HTTPS now, mDNS later) and the admin API call this class; it knows no fastify.
 */
import { createPublicKey } from 'node:crypto';
import type { Clock, TimerHandle } from '../common/clock.js';
import { MusterError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { assertLabel } from '../common/names.js';
import { VERSION } from '../common/version.js';
import { bundleMac, nodeSignedPayload, PROOF_WINDOW_S, verifyNode, type Bundle } from '../common/proof.js';
import { issueCertificateAsync, makeSerial, parseCsrAsync, serialHex, toPem, type ParsedCsr } from '../common/x509.js';
import type { CertificateAuthority } from './ca.js';
import {
  Authorizer,
  checkProof,
  describeInstallMode,
  effectiveInstallMode,
  INSTALL_MODE_OFF,
  InstallModeProvisioner,
  newToken,
  TokenProvisioner,
  tokenState,
  tokenView,
  type Autoregister,
  type InstallModeState,
  type Proof,
  type TokenRecord,
  type TokenView,
} from './policy.js';
import type { BatchOp, EventInput, MusterEvent, NodeRecord, NodeState, Registry } from './registry.js';

export interface JoinRequest {
  name: string;
  role: string;
  cluster: string;
  csr: string;
  proof?: Proof;
}

export type JoinOutcome =
  | { status: 200 | 201; bundle: Bundle }
  | { status: 202; state: NodeState; retryAfter: number; reason: string };

export interface RegistrarServiceOptions {
  registry: Registry;
  ca: CertificateAuthority;
  clock: Clock;
  log: Logger;
  registrarId: string;
  cluster: string;
  role: 'main' | 'cluster';
  url: string;
  autoregister: Autoregister;
  /** Is this client address on the local link (subnet of an advertised interface)? */
  isOnLink: (address: string) => boolean;
  certLifetimeMs?: number;
  maxPending?: number;
  /** String values written to nodes' config, for every node ('*') and per role. */
  nodeConfig?: Record<string, Record<string, string>>;
  /** Test hook: called at named points of the exactly-once protocol (e.g. to SIGKILL the process). */
  fault?: (point: 'after-accept' | 'after-issue') => void;
}

export const DEFAULT_CERT_LIFETIME_MS = 90 * 86_400_000;
const PENDING_RETRY_S = 5;
export const MAX_WAIT_MS = 60_000;

export class RegistrarService {
  private readonly registry: Registry;
  private readonly authorizer: Authorizer;
  private tokens = new Map<string, TokenRecord>();
  private installMode: InstallModeState = INSTALL_MODE_OFF;
  /**
   * Uses reserved by acceptances whose batch is not yet queued. The stored counts (token `used`,
   * install mode `accepted`) are advanced only when a batch is queued, in queue order, so what lands
   * on disk always equals the acceptances that landed, whatever order signing finishes in.
   */
  private readonly tokenInflight = new Map<string, number>();
  private installInflight = 0;
  private installTimer: TimerHandle | undefined;
  private closed = false;
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly opts: RegistrarServiceOptions) {
    this.registry = opts.registry;
    this.authorizer = new Authorizer(
      [
        new TokenProvisioner(() => opts.autoregister),
        new InstallModeProvisioner(() => this.installModeForDecision(), () => opts.autoregister),
      ],
      opts.clock,
    );
  }

  static async create(opts: RegistrarServiceOptions): Promise<RegistrarService> {
    const s = new RegistrarService(opts);
    for (const t of await opts.registry.scanPrefix<TokenRecord>('t!')) s.tokens.set(t.id, t);
    s.installMode = (await opts.registry.get<InstallModeState>('m!install-mode')) ?? INSTALL_MODE_OFF;
    await s.settleInstallMode();
    // Finish what a crash interrupted: nodes accepted but not yet issued get their certificate now.
    for (const name of await opts.registry.namesInState('accepted')) await s.ensureIssued(name);
    return s;
  }

  get log(): Logger {
    return this.opts.log;
  }

  get events(): Registry {
    return this.registry;
  }

  close(): void {
    this.closed = true;
    if (this.installTimer) this.opts.clock.clearTimeout(this.installTimer);
    for (const wake of this.waiters) wake();
  }

  // ---- info ----

  /** What `_muster._tcp` TXT and GET /v1/info say about admission (informative only). */
  mode(): 'open' | 'token' | 'closed' {
    const now = this.opts.clock.now();
    if (effectiveInstallMode(this.installModeForDecision(), now).on) return 'open';
    for (const t of this.tokens.values()) if (tokenState(t, now) === 'valid') return 'token';
    return 'closed';
  }

  info(): Record<string, unknown> {
    return {
      v: 1,
      id: this.opts.registrarId,
      cluster: this.opts.cluster,
      role: this.opts.role,
      ca: this.opts.ca.fingerprint,
      mode: this.mode(),
      version: VERSION,
    };
  }

  caPem(): string {
    return this.opts.ca.certPem;
  }

  // ---- the join protocol ----

  async join(req: JoinRequest, address: string, channel: 'http' | 'mdns' = 'http'): Promise<JoinOutcome> {
    // Everything that can refuse the input runs before anything is written. Each refusal is logged
    // with its reason (the client gets the stable code and a message).
    const refuse = (err: MusterError): never => {
      this.log.warn({ node: req.name.slice(0, 63), address, channel, code: err.code, reason: err.message }, 'join refused');
      throw err;
    };
    assertLabel('node name', req.name);
    assertLabel('role', req.role);
    if (req.cluster !== '') assertLabel('cluster', req.cluster);
    if (req.cluster !== '' && req.cluster !== this.opts.cluster) {
      refuse(
        new MusterError('wrong_cluster', `this registrar serves cluster ${this.opts.cluster}, not ${req.cluster}`, {
          details: { cluster: this.opts.cluster },
        }),
      );
    }
    let csr!: ParsedCsr;
    try {
      csr = await parseCsrAsync(req.csr);
    } catch (err) {
      refuse(new MusterError('invalid_csr', `the CSR is not acceptable: ${(err as Error).message}`));
    }
    if (csr.commonName !== req.name) {
      refuse(new MusterError('csr_mismatch', `the CSR names ${JSON.stringify(csr.commonName.slice(0, 64))}, not ${req.name}`));
    }

    return this.registry.lock(req.name, async () => {
      const now = this.opts.clock.now();
      const nowIso = new Date(now).toISOString();
      const rec = await this.registry.getNode(req.name);

      if (rec && rec.key === csr.fingerprint) {
        // The same (name, key): the registrar answers what it decided before (exactly once).
        switch (rec.state) {
          case 'issued':
          case 'active':
            return { status: 200, bundle: this.bundleFor(rec) };
          case 'accepted':
            return { status: 201, bundle: this.bundleFor(await this.issueLocked(rec)) };
          case 'rejected':
            return refuse(new MusterError('rejected', `node ${rec.name} was rejected by the operator`));
          case 'removed':
            return refuse(new MusterError('removed', `node ${rec.name} was removed by the operator; its certificate is revoked`));
          default:
            break; // heard or pending: decide again, a token or install mode may admit it now
        }
      } else if (rec && rec.state !== 'rejected' && rec.state !== 'removed' && rec.state !== 'heard') {
        this.log.warn(
          { node: req.name, key: csr.fingerprint, holder: rec.key, address },
          'join refused: the name is held by another key',
        );
        const since = rec.times.issued ?? rec.times.pending ?? rec.times.accepted ?? rec.lastSeen;
        throw new MusterError(
          'name_taken',
          `node name ${rec.name} is held by key ${rec.key} (since ${since}); give this machine its own name ` +
            `(--name), or if it was rebuilt, run 'muster nodes remove ${rec.name}' on the registrar first`,
          { details: { holder: { key: rec.key, state: rec.state, since } } },
        );
      }

      let token: TokenRecord | undefined;
      if (req.proof) {
        const checked = checkProof(
          this.tokenForDecision(req.proof.id),
          req.proof,
          { name: req.name, role: req.role, cluster: req.cluster, key: csr.fingerprint },
          now,
        );
        if (!checked.ok) {
          this.log.warn({ node: req.name, address, tokenId: req.proof.id, reason: checked.reason }, 'join refused: bad token proof');
          throw new MusterError('bad_proof', 'the join token proof is not valid (wrong, revoked, expired or used-up token, or clock skew over 5 minutes)');
        }
        token = checked.token;
      }

      // A node heard over mDNS with this key is on the LAN; one heard with another key is suspect:
      // install mode then admits neither (the CSR must match the key it advertised).
      const heardSame = rec?.state === 'heard' && rec.key === csr.fingerprint;
      const heardOther = rec?.state === 'heard' && rec.key !== csr.fingerprint;
      let verdict = this.authorizer.decide({
        name: req.name,
        role: req.role,
        cluster: req.cluster,
        key: csr.fingerprint,
        channel: heardSame ? 'mdns' : channel,
        address,
        onLink: this.opts.isOnLink(address) || heardSame,
        ...(token ? { token } : {}),
      });
      if (heardOther && verdict.kind === 'accept' && verdict.rule === 'install-mode') {
        verdict = {
          kind: 'pending',
          reason: `the key differs from the one ${req.name} advertised over mDNS (${rec!.key}): waiting for approval`,
        };
      }
      if (verdict.kind === 'deny') {
        this.log.warn({ node: req.name, address, reason: verdict.message }, 'join refused');
        throw new MusterError(verdict.code, verdict.message);
      }

      const base: NodeRecord = {
        name: req.name,
        state: 'pending',
        key: csr.fingerprint,
        spki: csr.spki.toString('base64'),
        role: req.role,
        cluster: req.cluster,
        channel: heardSame ? 'mdns' : channel,
        addresses: heardSame ? [...new Set([address, ...rec!.addresses])] : [address],
        times: rec && rec.key === csr.fingerprint ? { ...rec.times } : {},
        lastSeen: nowIso,
        ...(rec?.key === csr.fingerprint && rec.group ? { group: rec.group } : {}),
      };
      const replacing = rec !== undefined && rec.key !== csr.fingerprint && rec.state !== 'heard';

      if (verdict.kind === 'pending') {
        if (rec?.state === 'pending' && rec.key === csr.fingerprint) {
          return { status: 202, state: 'pending', retryAfter: PENDING_RETRY_S, reason: rec.pendingReason ?? verdict.reason };
        }
        if (this.registry.countByState().pending >= (this.opts.maxPending ?? 10_000)) {
          throw new MusterError('closed', 'too many nodes are waiting for approval; the registrar takes no more for now', {
            retryAfter: 60,
          });
        }
        const next: NodeRecord = { ...base, state: 'pending', pendingReason: verdict.reason, times: { ...base.times, pending: nowIso } };
        await this.registry.commit(
          [{ prev: rec, next, archivePrev: replacing }],
          [{ type: 'pending', name: req.name, detail: { reason: verdict.reason, key: csr.fingerprint, address, channel } }],
        );
        this.log.info({ node: req.name, key: csr.fingerprint, address, reason: verdict.reason }, 'node waits for approval');
        return { status: 202, state: 'pending', retryAfter: PENDING_RETRY_S, reason: verdict.reason };
      }

      // Accepted. The token use or install-mode slot is reserved now (synchronously, so a concurrent
      // join sees it taken), the certificate is signed off the event loop, and acceptance, issue and
      // the reservation land as ONE atomic, durable batch (DESIGN "Exactly once").
      const reservation = this.reserve(verdict, now);
      try {
        const accepted: NodeRecord = {
          ...base,
          state: 'accepted',
          decision: { rule: verdict.rule, detail: verdict.detail, at: nowIso },
          times: { ...base.times, accepted: nowIso },
          ...(verdict.tokenId ? { tokenId: verdict.tokenId } : {}),
        };
        const { next: issued, serialOp } = await this.certify(accepted);
        // finalize() and the synchronous part of commit() run back to back: batches queue in order.
        const used = reservation.finalize();
        await this.registry.commit(
          [{ prev: rec, next: issued, archivePrev: replacing }],
          [
            { type: 'accepted', name: req.name, detail: { rule: verdict.rule, reason: verdict.detail, key: csr.fingerprint, address, channel } },
            ...used.events,
            { type: 'issued', name: req.name, detail: { serial: issued.serial, notAfter: issued.notAfter } },
          ],
          [...used.ops, serialOp],
        );
        this.log.info(
          { node: req.name, key: csr.fingerprint, address, rule: verdict.rule, reason: verdict.detail, serial: issued.serial },
          'node accepted; certificate issued',
        );
        if (!this.installMode.on && verdict.rule === 'install-mode') this.disarmInstallTimer();
        this.opts.fault?.('after-issue');
        return { status: 201, bundle: this.bundleFor(issued) };
      } catch (err) {
        reservation.undo();
        throw err;
      }
    });
  }

  private tokenForDecision(id: string): TokenRecord | undefined {
    const t = this.tokens.get(id);
    return t && { ...t, used: t.used + (this.tokenInflight.get(id) ?? 0) };
  }

  private installModeForDecision(): InstallModeState {
    return { ...this.installMode, accepted: this.installMode.accepted + this.installInflight };
  }

  /**
   * Reserves the token use or install-mode slot an acceptance consumes (so concurrent joins see it
   * taken). finalize() turns the reservation into the ops that persist it, computed from the state at
   * that moment; undo() gives it back when the acceptance does not happen.
   */
  private reserve(
    verdict: { rule: string; tokenId?: string },
    now: number,
  ): { finalize: () => { ops: BatchOp[]; events: EventInput[] }; undo: () => void } {
    let open = true;
    const close = (): boolean => {
      const was = open;
      open = false;
      return was;
    };
    if (verdict.rule === 'token' && verdict.tokenId) {
      const id = verdict.tokenId;
      const bump = (d: number): void => void this.tokenInflight.set(id, (this.tokenInflight.get(id) ?? 0) + d);
      bump(1);
      return {
        finalize: () => {
          if (close()) bump(-1);
          const t = this.tokens.get(id)!;
          const next = { ...t, used: t.used + 1 };
          this.tokens.set(id, next);
          return { ops: [{ type: 'put', key: 't!' + id, value: next }], events: [] };
        },
        undo: () => void (close() && bump(-1)),
      };
    }
    if (verdict.rule === 'install-mode') {
      this.installInflight++;
      return {
        finalize: () => {
          if (close()) this.installInflight--;
          const wasOn = this.installMode.on;
          const im = { ...this.installMode, accepted: this.installMode.accepted + 1 };
          const eff = effectiveInstallMode(im, now);
          this.installMode = eff.on ? im : { ...eff, on: false };
          return {
            ops: [{ type: 'put', key: 'm!install-mode', value: this.installMode }],
            events: wasOn && !eff.on ? [{ type: 'install-mode', detail: { on: false, reason: eff.offReason } }] : [],
          };
        },
        undo: () => void (close() && this.installInflight--),
      };
    }
    return { finalize: () => ({ ops: [], events: [] }), undo: () => undefined };
  }

  /**
   * A node was heard over mDNS saying "ready to register as X" (already validated). Recorded as
   * `heard` when the name is free, so that the operator sees it with its key fingerprint; it is a
   * hint, never enough to issue: the node's CSR must come with the same key.
   */
  async heard(ad: { name: string; role: string; cluster: string; key: string }, addresses: string[]): Promise<void> {
    if (ad.cluster !== '' && ad.cluster !== this.opts.cluster) return; // another cluster's node
    await this.registry.lock(ad.name, async () => {
      const rec = await this.registry.getNode(ad.name);
      const nowIso = new Date(this.opts.clock.now()).toISOString();
      const addrs = addresses.slice(0, 8);
      if (rec && rec.state !== 'heard' && rec.state !== 'removed' && rec.state !== 'rejected') return;
      if (rec?.state === 'heard' && rec.key === ad.key && rec.role === ad.role && rec.addresses.join() === addrs.join()) return;
      if (rec && rec.state !== 'heard' && rec.key === ad.key) return; // a removed or rejected key stays so
      if (!rec && this.registry.countByState().heard >= (this.opts.maxPending ?? 10_000)) return;
      const next: NodeRecord = {
        name: ad.name,
        state: 'heard',
        key: ad.key,
        spki: '',
        role: ad.role,
        cluster: ad.cluster,
        channel: 'mdns',
        addresses: addrs,
        times: rec?.state === 'heard' ? rec.times : { heard: nowIso },
        lastSeen: nowIso,
      };
      await this.registry.commit(
        [{ prev: rec, next, archivePrev: rec !== undefined && rec.state !== 'heard' }],
        rec?.state === 'heard' ? [] : [{ type: 'heard', name: ad.name, detail: { key: ad.key, role: ad.role, addresses: addrs, channel: 'mdns' } }],
      );
      if (rec?.state !== 'heard') this.log.info({ node: ad.name, key: ad.key, addresses: addrs }, 'heard a node over mDNS');
    });
  }

  /** Signs the certificate of an accepted node (serial allocated, never reused); writes nothing. */
  private async certify(rec: NodeRecord): Promise<{ next: NodeRecord; serialOp: BatchOp }> {
    const now = this.opts.clock.now();
    const counter = this.registry.nextSerialCounter();
    const serial = makeSerial(counter);
    const hex = serialHex(serial);
    const notAfter = new Date(now + (this.opts.certLifetimeMs ?? DEFAULT_CERT_LIFETIME_MS));
    const der = await issueCertificateAsync(this.opts.ca.issuer, {
      serial,
      subject: { cn: rec.name, o: this.opts.cluster, ou: rec.role },
      spki: Buffer.from(rec.spki, 'base64'),
      notBefore: new Date(now - 5 * 60_000), // tolerate a node clock a little behind
      notAfter,
      dnsNames: [rec.name],
      usage: 'client-server',
    });
    const nowIso = new Date(now).toISOString();
    const next: NodeRecord = {
      ...rec,
      state: 'issued',
      serial: hex,
      certificate: toPem(der, 'CERTIFICATE'),
      notAfter: notAfter.toISOString(),
      issuedAt: nowIso,
      times: { ...rec.times, issued: nowIso },
    };
    return { next, serialOp: this.registry.serialOp(counter, rec.name, hex) };
  }

  /**
   * Issues the certificate of a node already durably accepted (an operator's approval, or an
   * acceptance a crash interrupted). Caller holds the node's lock.
   */
  private async issueLocked(rec: NodeRecord): Promise<NodeRecord> {
    const { next, serialOp } = await this.certify(rec);
    await this.registry.commit([{ prev: rec, next }], [{ type: 'issued', name: rec.name, detail: { serial: next.serial, notAfter: next.notAfter } }], [serialOp]);
    this.log.info({ node: rec.name, serial: next.serial }, 'certificate issued');
    this.opts.fault?.('after-issue');
    return next;
  }

  private async ensureIssued(name: string): Promise<void> {
    await this.registry.lock(name, async () => {
      const rec = await this.registry.getNode(name);
      if (rec?.state === 'accepted') await this.issueLocked(rec);
    });
  }

  bundleFor(rec: NodeRecord): Bundle {
    const cfg = this.opts.nodeConfig ?? {};
    const bundle: Bundle = {
      v: 1,
      cluster: this.opts.cluster,
      node: rec.name,
      role: rec.role,
      certificate: rec.certificate!,
      chain: [],
      ca: this.opts.ca.certPem,
      registrar: { url: this.opts.url, id: this.opts.registrarId },
      config: { ...(cfg['*'] ?? {}), ...(cfg[rec.role] ?? {}) },
      issuedAt: rec.issuedAt!,
    };
    const token = rec.tokenId ? this.tokens.get(rec.tokenId) : undefined;
    if (token) bundle.mac = bundleMac(token.secret, bundle);
    return bundle;
  }

  /**
   * The node's long poll (DESIGN "GET /v1/join/:name"): answers at once when decided, else waits
   * for this node's next event (the operator's approval wakes it; no polling loop).
   */
  async poll(name: string, key: string, waitMs: number): Promise<JoinOutcome> {
    assertLabel('node name', name);
    const deadline = Date.now() + Math.min(Math.max(waitMs, 0), MAX_WAIT_MS);
    for (;;) {
      let wake!: () => void;
      const woken = new Promise<void>((r) => (wake = r));
      const onEvent = (): void => wake();
      this.registry.on('node:' + name, onEvent);
      this.waiters.add(wake);
      try {
        const rec = await this.registry.getNode(name);
        if (!rec || rec.key !== key) throw new MusterError('not_found', `no node ${name} with this key is known`);
        switch (rec.state) {
          case 'issued':
          case 'active':
            return { status: 200, bundle: this.bundleFor(rec) };
          case 'rejected':
            throw new MusterError('rejected', `node ${name} was rejected by the operator`);
          case 'removed':
            throw new MusterError('removed', `node ${name} was removed by the operator; its certificate is revoked`);
          case 'accepted':
            await this.ensureIssued(name); // normally in progress already; after a crash, this finishes it
            continue;
          default:
            break;
        }
        const left = deadline - Date.now();
        if (left <= 0 || this.closed) {
          return { status: 202, state: rec.state, retryAfter: this.closed ? 1 : PENDING_RETRY_S, reason: rec.pendingReason ?? 'waiting for approval' };
        }
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([woken, new Promise<void>((r) => (timer = setTimeout(r, left)))]);
        clearTimeout(timer);
      } finally {
        this.registry.off('node:' + name, onEvent);
        this.waiters.delete(wake);
      }
    }
  }

  /** A node-signed request (ack, leave): checks key, serial, time window and signature. */
  private checkSigned(rec: NodeRecord | undefined, name: string, kind: 'ack' | 'leave', body: SignedBody): NodeRecord {
    if (!rec || rec.key !== body.key) throw new MusterError('not_found', `no node ${name} with this key is known`);
    if (rec.serial !== body.serial) {
      throw new MusterError('bad_signature', `serial ${body.serial} is not the current certificate of ${name}`);
    }
    if (Math.abs(this.opts.clock.now() / 1000 - body.ts) > PROOF_WINDOW_S) {
      throw new MusterError('bad_signature', 'the signed request is outside the 5-minute window (check the node clock)');
    }
    const pub = createPublicKey({ key: Buffer.from(rec.spki, 'base64'), format: 'der', type: 'spki' });
    if (!verifyNode(pub, nodeSignedPayload(kind, name, body.serial, body.ts), body.sig)) {
      throw new MusterError('bad_signature', `the ${kind} signature does not verify with the key of ${name}`);
    }
    return rec;
  }

  async ack(name: string, body: SignedBody): Promise<void> {
    assertLabel('node name', name);
    await this.registry.lock(name, async () => {
      const rec = this.checkSigned(await this.registry.getNode(name), name, 'ack', body);
      if (rec.state === 'active') return;
      if (rec.state !== 'issued') throw new MusterError('invalid_state', `node ${name} is ${rec.state}, not issued`);
      const nowIso = new Date(this.opts.clock.now()).toISOString();
      await this.registry.commit(
        [{ prev: rec, next: { ...rec, state: 'active', lastSeen: nowIso, times: { ...rec.times, active: nowIso } } }],
        [{ type: 'active', name, detail: { serial: rec.serial } }],
      );
      this.log.info({ node: name, serial: rec.serial }, 'node acknowledged its credentials: active');
    });
  }

  async leave(name: string, body: SignedBody): Promise<void> {
    assertLabel('node name', name);
    await this.registry.lock(name, async () => {
      const rec = this.checkSigned(await this.registry.getNode(name), name, 'leave', body);
      if (rec.state === 'removed') return;
      await this.removeLocked(rec, 'the node left (deprovisioned itself)');
    });
  }

  private async removeLocked(rec: NodeRecord, why: string): Promise<NodeRecord> {
    const nowIso = new Date(this.opts.clock.now()).toISOString();
    const next: NodeRecord = {
      ...rec,
      state: 'removed',
      decision: { rule: 'removed', detail: why, at: nowIso },
      times: { ...rec.times, removed: nowIso },
    };
    const extra: BatchOp[] = rec.serial ? [{ type: 'put', key: 'rv!' + rec.serial, value: { name: rec.name, at: nowIso } }] : [];
    await this.registry.commit([{ prev: rec, next }], [{ type: 'removed', name: rec.name, detail: { reason: why, serial: rec.serial } }], extra);
    this.log.info({ node: rec.name, serial: rec.serial, reason: why }, 'node removed; certificate revoked');
    return next;
  }

  // ---- operator actions (admin API) ----

  async approve(name: string, operator: string): Promise<NodeRecord> {
    assertLabel('node name', name);
    return this.registry.lock(name, async () => {
      const rec = await this.registry.getNode(name);
      if (!rec) throw new MusterError('not_found', `no node named ${name}`);
      if (rec.state === 'heard') {
        throw new MusterError(
          'invalid_state',
          `node ${name} was only heard over mDNS and has not asked to join yet; approve it once it is pending`,
        );
      }
      if (rec.state !== 'pending') {
        throw new MusterError('invalid_state', `node ${name} is ${rec.state}; only a pending node can be approved`);
      }
      const nowIso = new Date(this.opts.clock.now()).toISOString();
      const { pendingReason: _p, ...rest } = rec;
      const accepted: NodeRecord = {
        ...rest,
        state: 'accepted',
        decision: { rule: 'approval', detail: `approved by ${operator}`, at: nowIso },
        times: { ...rec.times, accepted: nowIso },
      };
      await this.registry.commit(
        [{ prev: rec, next: accepted }],
        [{ type: 'accepted', name, detail: { rule: 'approval', reason: `approved by ${operator}`, key: rec.key } }],
      );
      this.log.info({ node: name, key: rec.key, rule: 'approval', operator }, 'node accepted');
      this.opts.fault?.('after-accept');
      return this.issueLocked(accepted);
    });
  }

  async reject(name: string, operator: string): Promise<NodeRecord> {
    assertLabel('node name', name);
    return this.registry.lock(name, async () => {
      const rec = await this.registry.getNode(name);
      if (!rec) throw new MusterError('not_found', `no node named ${name}`);
      if (rec.state !== 'pending' && rec.state !== 'heard') {
        throw new MusterError('invalid_state', `node ${name} is ${rec.state}; only a pending node can be rejected (use remove)`);
      }
      const nowIso = new Date(this.opts.clock.now()).toISOString();
      const { pendingReason: _p, ...rest } = rec;
      const next: NodeRecord = {
        ...rest,
        state: 'rejected',
        decision: { rule: 'refused', detail: `rejected by ${operator}`, at: nowIso },
        times: { ...rec.times, rejected: nowIso },
      };
      await this.registry.commit([{ prev: rec, next }], [{ type: 'rejected', name, detail: { reason: `rejected by ${operator}` } }]);
      this.log.info({ node: name, key: rec.key, operator }, 'node rejected');
      return next;
    });
  }

  async remove(name: string, operator: string): Promise<NodeRecord> {
    assertLabel('node name', name);
    return this.registry.lock(name, async () => {
      const rec = await this.registry.getNode(name);
      if (!rec) throw new MusterError('not_found', `no node named ${name}`);
      if (rec.state === 'removed') return rec;
      return this.removeLocked(rec, `removed by ${operator}`);
    });
  }

  async showNode(name: string): Promise<{ node: NodeRecord; history: NodeRecord[] }> {
    assertLabel('node name', name);
    const rec = await this.registry.getNode(name);
    if (!rec) throw new MusterError('not_found', `no node named ${name}`);
    return { node: rec, history: await this.registry.history(name) };
  }

  listNodes(opts: { state?: NodeState; after?: string; limit: number }): Promise<NodeRecord[]> {
    return this.registry.listNodes(opts);
  }

  counts(): Record<NodeState, number> {
    return this.registry.countByState();
  }

  // ---- tokens ----

  async createToken(opts: {
    ttlMs: number | null;
    maxUses: number | null;
    roles: string[];
    clusters: string[];
    description?: string;
  }): Promise<{ token: string; view: TokenView }> {
    for (const r of opts.roles) assertLabel('role', r);
    for (const c of opts.clusters) assertLabel('cluster', c);
    const now = this.opts.clock.now();
    const t = newToken(now, opts);
    await this.registry.commitOps([{ type: 'put', key: 't!' + t.id, value: t }], [
      { type: 'token', detail: { action: 'created', id: t.id, roles: t.roles, clusters: t.clusters, maxUses: t.maxUses, expiresAt: t.expiresAt } },
    ]);
    this.tokens.set(t.id, t);
    this.log.info({ tokenId: t.id, roles: t.roles, clusters: t.clusters, maxUses: t.maxUses }, 'join token created');
    return { token: `${t.id}.${t.secret}`, view: tokenView(t, now) };
  }

  listTokens(): TokenView[] {
    const now = this.opts.clock.now();
    return [...this.tokens.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt)).map((t) => tokenView(t, now));
  }

  async revokeToken(id: string): Promise<TokenView> {
    const t = this.tokens.get(id);
    if (!t) throw new MusterError('token_not_found', `no join token with id ${id}`);
    const now = this.opts.clock.now();
    if (!t.revoked) {
      const next = { ...t, revoked: true, revokedAt: new Date(now).toISOString() };
      await this.registry.commitOps([{ type: 'put', key: 't!' + id, value: next }], [{ type: 'token', detail: { action: 'revoked', id } }]);
      this.tokens.set(id, next);
      this.log.info({ tokenId: id }, 'join token revoked');
    }
    return tokenView(this.tokens.get(id)!, now);
  }

  // ---- install mode ----

  installModeStatus(): InstallModeState & { description: string } {
    const now = this.opts.clock.now();
    return { ...effectiveInstallMode(this.installMode, now), description: describeInstallMode(this.installMode, now) };
  }

  async installModeOn(opts: { forMs: number; max: number | null; role?: string; cluster?: string; remote: boolean }): Promise<ReturnType<RegistrarService['installModeStatus']>> {
    if (opts.forMs <= 0) throw new MusterError('bad_request', 'install mode needs a positive duration (--for)');
    if (opts.max !== null && opts.max < 1) throw new MusterError('bad_request', '--max must be at least 1');
    if (opts.role) assertLabel('role', opts.role);
    if (opts.cluster) assertLabel('cluster', opts.cluster);
    const now = this.opts.clock.now();
    const next: InstallModeState = {
      on: true,
      since: now,
      until: now + opts.forMs,
      max: opts.max,
      accepted: 0,
      remote: opts.remote,
      ...(opts.role ? { role: opts.role } : {}),
      ...(opts.cluster ? { cluster: opts.cluster } : {}),
    };
    await this.registry.commitOps([{ type: 'put', key: 'm!install-mode', value: next }], [
      { type: 'install-mode', detail: { on: true, until: new Date(next.until!).toISOString(), max: next.max, role: next.role, cluster: next.cluster, remote: next.remote } },
    ]);
    this.installMode = next;
    this.armInstallTimer();
    this.log.info({ installMode: describeInstallMode(next, now) }, 'install mode on');
    return this.installModeStatus();
  }

  async installModeOff(reason = 'turned off by the operator'): Promise<ReturnType<RegistrarService['installModeStatus']>> {
    if (this.installMode.on) {
      const next: InstallModeState = { ...this.installMode, on: false, offReason: reason };
      await this.registry.commitOps([{ type: 'put', key: 'm!install-mode', value: next }], [{ type: 'install-mode', detail: { on: false, reason } }]);
      this.installMode = next;
      this.log.info({ reason }, 'install mode off');
    }
    this.disarmInstallTimer();
    return this.installModeStatus();
  }

  /** At start and at the deadline: a stored "on" past its deadline or count is written back as off. */
  private async settleInstallMode(): Promise<void> {
    const eff = effectiveInstallMode(this.installMode, this.opts.clock.now());
    if (this.installMode.on && !eff.on) await this.installModeOff(eff.offReason);
    else if (this.installMode.on) this.armInstallTimer();
  }

  private armInstallTimer(): void {
    this.disarmInstallTimer();
    const until = this.installMode.until;
    if (!this.installMode.on || until === undefined) return;
    const ms = until - this.opts.clock.now();
    const max = 2 ** 31 - 1;
    this.installTimer = this.opts.clock.setTimeout(() => {
      this.installTimer = undefined;
      if (ms > max) this.armInstallTimer();
      else void this.settleInstallMode().catch((err) => this.log.error({ err }, 'cannot switch install mode off'));
    }, Math.min(ms, max));
  }

  private disarmInstallTimer(): void {
    if (this.installTimer) this.opts.clock.clearTimeout(this.installTimer);
    this.installTimer = undefined;
  }

  listEvents(after: number, limit: number): Promise<MusterEvent[]> {
    return this.registry.listEvents(after, limit);
  }
}

export interface SignedBody {
  key: string;
  serial: string;
  ts: number;
  sig: string;
}

