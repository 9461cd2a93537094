/**
 * The exactly-once core (DESIGN "Exactly once", CONVENTIONS 5): join, heard, ack and leave. A join
 * reads top to bottom: screen the request -> look at what was decided before for this (name, key) ->
 * ask the authorizer -> ONE registry change (acceptance, certificate, token use or install-mode slot
 * and events together) -> the bundle. Nothing here knows HTTP or mDNS.
 *
 * Work on one name is serialised in this process (KeyedMutex); the store's compare-and-set is what
 * makes it exactly once, also when several registrars share a store: a change that lost a race
 * (StoreConflict) is decided again from what the store now holds.
 */
import type { Clock } from '../common/clock.js';
import { isMusterError, MusterError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { KeyedMutex } from '../common/mutex.js';
import { assertLabel } from '../common/names.js';
import { nodeSignedPayload, PROOF_WINDOW_S, renewRef, verifyNode, type Bundle } from '../common/proof.js';
import { importNodeKey, parseCsrAsync, type ParsedCsr } from '../common/x509.js';
import type { JoinOutcome, JoinRequest, PollProof, RenewRequest, SignedRequest } from '../fallback/wire.js';
import { isStoreConflict, type Change, type Registry } from '../store/registry.js';
import type { Channel, EventInput, NodeRecord } from '../store/types.js';
import type { AdmissionRequest, Authorizer, Verdict } from './admission/authorizer.js';
import { INSTALL_MODE_KEY, tokenKey, type Reservations } from './admission/reservations.js';
import type { Issuer } from './issuer.js';
import { refusalReason, type RefusalRecorder } from './refusals.js';
import { expiredByGc } from './steward.js';

export const PENDING_RETRY_S = 5;

type DenyRefusal = NonNullable<Extract<Verdict, { kind: 'deny' }>['refusal']>;
/** lastSeen is written at most this often per node (issue 9, item 5: polls stay cheap). */
export const LAST_SEEN_EVERY_MS = 60_000;
/** Decisions retried after losing a compare-and-set race, before giving up with "busy". */
const MAX_ATTEMPTS = 4;

export type FaultPoint = 'after-accept' | 'after-issue';

export interface RegistrationOptions {
  registry: Registry;
  authorizer: Authorizer;
  reservations: Reservations;
  issuer: Issuer;
  clock: Clock;
  log: Logger;
  cluster: string;
  /** Is this TCP peer address on the local link? */
  isOnLink: (address: string) => boolean;
  /** Heard records kept at most (a LAN full of advertisements cannot fill the store). */
  maxHeard?: number;
  /** Refusals on record and lockout (registrar/refusals.ts); absent: refusals are only logged. */
  refusals?: RefusalRecorder;
  /** Test hook: called at named points of the exactly-once protocol (e.g. to SIGKILL the process). */
  fault?: (point: FaultPoint) => void;
  /**
   * Joins of this role are serialised across names too (a singleton role, admission/singleton.ts:
   * two concurrent joins must not both find it vacant).
   */
  serialRole?: (role: string) => boolean;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export class Registration {
  readonly locks = new KeyedMutex();
  private readonly roleLocks = new KeyedMutex();

  constructor(private readonly o: RegistrationOptions) {}

  private get log(): Logger {
    return this.o.log;
  }

  /** A join request (POST /v1/join). Everything that can refuse the input runs before anything is written. */
  async join(req: JoinRequest, address: string, channel: Channel = 'https'): Promise<JoinOutcome> {
    // What each refusal adds for the record (registrar/refusals.ts), by the error it is answered with.
    const refusals = new WeakMap<Error, DenyRefusal & { cause?: string }>();
    const refuse = (err: MusterError, cause?: string, refusal?: DenyRefusal): never => {
      this.log.warn(
        { node: req.name.slice(0, 63), address, channel, code: err.code, reason: cause ?? err.message },
        'join refused',
      );
      refusals.set(err, { ...refusal, ...(cause !== undefined ? { cause } : {}) });
      throw err;
    };
    let key: string | undefined;
    try {
      return await this.joinJudged(req, address, channel, refuse, (fp) => (key = fp));
    } catch (err) {
      // Every judged refusal is on record (DESIGN "Lockout", issue 10): malformed requests and load
      // shedding are not (refusalReason says which codes are judged refusals).
      const reason = isMusterError(err) ? refusalReason(err.code) : undefined;
      if (reason && this.o.refusals) {
        const extra = refusals.get(err as Error);
        const tokenId = extra?.tokenId ?? req.proof?.id;
        await this.o.refusals.record({
          reason: extra?.reason ?? reason,
          code: (err as MusterError).code,
          message: extra?.cause ?? (err as MusterError).message,
          name: req.name,
          address,
          channel,
          ...(key ? { key } : {}),
          ...(tokenId ? { tokenId: tokenId.slice(0, 64) } : {}),
          ...(extra?.badProofFor ? { badProofFor: extra.badProofFor } : {}),
        });
      }
      throw err;
    }
  }

  private async joinJudged(
    req: JoinRequest,
    address: string,
    channel: Channel,
    refuse: (err: MusterError, cause?: string, refusal?: DenyRefusal) => never,
    keyKnown: (fingerprint: string) => void,
  ): Promise<JoinOutcome> {
    assertLabel('node name', req.name);
    assertLabel('role', req.role);
    if (req.cluster !== '') assertLabel('cluster', req.cluster);
    const facts = { name: req.name, role: req.role, cluster: req.cluster, channel, address };
    const screened = await this.o.authorizer.screen({ ...facts, key: '', onLink: false });
    if (screened) refuse(denial(screened), screened.cause, screened.refusal);
    let csr!: ParsedCsr;
    try {
      csr = await parseCsrAsync(req.csr);
    } catch (err) {
      refuse(new MusterError('invalid_csr', `the CSR is not acceptable: ${(err as Error).message}`));
    }
    if (csr.commonName !== req.name) {
      refuse(
        new MusterError(
          'csr_mismatch',
          `the CSR names ${JSON.stringify(csr.commonName.slice(0, 64))}, not ${req.name}`,
        ),
      );
    }
    keyKnown(csr.fingerprint);

    return this.lockedFor(req, async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.joinLocked(req, csr, address, channel, refuse);
        } catch (err) {
          if (!isStoreConflict(err) || attempt >= MAX_ATTEMPTS) {
            if (isStoreConflict(err))
              throw new MusterError('busy', 'the registrar is busy with this node: retry shortly', {
                retryAfter: 1,
              });
            throw err;
          }
          this.log.debug({ node: req.name, on: err.on }, 'lost a race in the store; deciding again');
        }
      }
    });
  }

  /**
   * The node's lock, and first its role's for a singleton role: always in this order (nothing takes
   * them the other way round).
   */
  private lockedFor<T>(req: { name: string; role: string }, fn: () => Promise<T>): Promise<T> {
    if (!this.o.serialRole?.(req.role)) return this.locks.run(req.name, fn);
    return this.roleLocks.run(req.role, () => this.locks.run(req.name, fn));
  }

  private async joinLocked(
    req: JoinRequest,
    csr: ParsedCsr,
    address: string,
    channel: Channel,
    refuse: (err: MusterError, cause?: string, refusal?: DenyRefusal) => never,
  ): Promise<JoinOutcome> {
    const now = this.o.clock.now();
    const rec = await this.o.registry.getNode(req.name);
    const sameKey = rec?.key === csr.fingerprint;

    // A certificate that has expired (and was not revoked: a revoked node is `removed`) does not brick
    // the node: the same key re-enters admission (token, install mode, approval) and gets a new one.
    let expired: NodeRecord | undefined;
    if (rec && sameKey) {
      // The same (name, key): the registrar answers what it decided before (exactly once).
      switch (rec.state) {
        case 'issued':
        case 'active':
          if (rec.notAfter !== undefined && Date.parse(rec.notAfter) <= now) {
            expired = rec;
            break;
          }
          // A known node checking in at boot: one authenticated contact (issue 9, item 5).
          return { status: 200, bundle: await this.o.issuer.bundle(await this.touchLocked(rec)) };
        case 'accepted':
          return { status: 201, bundle: await this.o.issuer.bundle(await this.issueLocked(rec)) };
        case 'rejected':
          // A heard or pending record the steward expired was not the operator's decision: decide again.
          if (expiredByGc(rec)) break;
          return refuse(new MusterError('rejected', `node ${rec.name} was rejected by the operator`));
        case 'removed':
          return refuse(
            new MusterError(
              'removed',
              `node ${rec.name} was removed by the operator; its certificate is revoked`,
            ),
          );
        default:
          break; // heard or pending: decide again, a token or install mode may admit it now
      }
    } else if (rec && !['rejected', 'removed', 'heard', 'pending'].includes(rec.state)) {
      throw this.nameTaken(rec, csr.fingerprint, address);
    }
    // A name only claimed by a never-admitted pending record of another key is not held: a join that
    // is admitted now by a token, or by install mode on the link, takes it (issue 8: name squatting).
    // Anything else leaves the claim alone (409; the node keeps asking while the holder only waits).
    const squatted = rec?.state === 'pending' && !sameKey ? rec : undefined;

    const heard =
      rec?.state === 'heard'
        ? { key: rec.key, addresses: rec.addresses }
        : rec?.advertisedKey && sameKey
          ? { key: rec.advertisedKey, addresses: [] }
          : undefined;
    const areq: AdmissionRequest = {
      name: req.name,
      role: req.role,
      cluster: req.cluster,
      key: csr.fingerprint,
      channel,
      address,
      onLink: this.o.isOnLink(address),
      ...(req.proof ? { proof: req.proof } : {}),
      ...(heard ? { heard } : {}),
      alreadyPending: rec?.state === 'pending' && sameKey,
    };
    let verdict = await this.o.authorizer.decide(areq);
    if (verdict.kind === 'deny' && expired && verdict.code === 'bad_proof') {
      // A known key whose token has run out since it was admitted: it waits for the operator
      // instead of being refused for good (a refused node's unit stops retrying).
      verdict = { kind: 'pending', reason: 'its join token is no longer valid: waiting for approval' };
    }
    if (verdict.kind === 'deny') return refuse(denial(verdict), verdict.cause, verdict.refusal);
    if (squatted && !(verdict.kind === 'accept' && (verdict.rule === 'token' || areq.onLink))) {
      throw this.nameTaken(squatted, csr.fingerprint, address);
    }

    const heardSame = heard?.key === csr.fingerprint;
    const nowIso = iso(now);
    const expiredEvent: EventInput[] = expired
      ? [
          {
            type: 'expired',
            name: req.name,
            detail: { serial: expired.serial, notAfter: expired.notAfter, key: expired.key },
          },
        ]
      : [];
    if (expired && verdict.kind === 'pending') {
      verdict = {
        kind: 'pending',
        reason: `its certificate expired at ${expired.notAfter}; ${verdict.reason}`,
      };
    }
    const base: NodeRecord = {
      name: req.name,
      rev: 0,
      state: 'pending',
      key: csr.fingerprint,
      spki: csr.spki.toString('base64'),
      role: req.role,
      cluster: req.cluster,
      channel: heardSame ? 'mdns' : channel,
      addresses: heardSame ? [...new Set([address, ...rec!.addresses])] : [address],
      times: rec && sameKey ? { ...rec.times } : {},
      lastSeen: nowIso,
      ...(rec && sameKey && rec.group ? { group: rec.group } : {}),
    };
    // The name passes from a rejected, removed or squatted record (another key) to this one: keep the
    // old record in the name's history.
    const archivePrev = rec !== undefined && !sameKey && rec.state !== 'heard';

    if (verdict.kind === 'pending') {
      if (rec?.state === 'pending' && sameKey) {
        return {
          status: 202,
          state: 'pending',
          retryAfter: PENDING_RETRY_S,
          reason: rec.pendingReason ?? verdict.reason,
        };
      }
      const advertisedKey = heard && !heardSame ? heard.key : sameKey ? rec?.advertisedKey : undefined;
      const next: NodeRecord = {
        ...base,
        state: 'pending',
        pendingReason: verdict.reason,
        times: { ...base.times, pending: nowIso },
        ...(advertisedKey ? { advertisedKey } : {}),
        // The proven token, so that an approval's bundle carries its MAC (admission/authorizer.ts).
        ...(verdict.tokenId ? { tokenId: verdict.tokenId } : {}),
      };
      await this.o.registry.apply({
        nodes: [{ expectRev: rec?.rev ?? 0, next, archivePrev }],
        events: [
          ...expiredEvent,
          {
            type: 'pending',
            name: req.name,
            detail: { reason: verdict.reason, key: csr.fingerprint, address, channel },
          },
        ],
      });
      this.log.info(
        { node: req.name, key: csr.fingerprint, address, reason: verdict.reason },
        'node waits for approval',
      );
      // Install mode, open, turned it away: a refused attempt of the window, once per pending record
      // (asking again while it waits returned above). Recorded after the pending record is durable.
      if (verdict.refusal && this.o.refusals) {
        await this.o.refusals.record({
          reason: verdict.refusal,
          code: 'pending',
          message: verdict.reason,
          name: req.name,
          address,
          channel,
          key: csr.fingerprint,
        });
      }
      return { status: 202, state: 'pending', retryAfter: PENDING_RETRY_S, reason: verdict.reason };
    }

    const conflict: EventInput[] = expiredEvent.length
      ? expiredEvent
      : squatted
        ? [
            {
              type: 'conflict',
              name: req.name,
              detail: {
                reason: `admitted by ${verdict.rule === 'token' ? 'a join token' : 'install mode on the link'}; the pending claim of another key is archived`,
                archivedKey: squatted.key,
                archivedAddress: squatted.addresses[0],
                key: csr.fingerprint,
              },
            },
          ]
        : [];
    const ctx = { key: csr.fingerprint, address, channel };
    const issued = await this.admitLocked(rec, base, verdict, archivePrev, ctx, conflict);
    if (squatted) {
      this.log.warn(
        { node: req.name, archivedKey: squatted.key, key: csr.fingerprint, address },
        'an admitted node took a name only claimed by a pending record of another key',
      );
    }
    return { status: 201, bundle: await this.o.issuer.bundle(issued) };
  }

  private nameTaken(rec: NodeRecord, key: string, address: string): MusterError {
    this.log.warn(
      { node: rec.name, key, holder: rec.key, holderState: rec.state, address },
      'join refused: the name is held by another key',
    );
    const since = rec.times.issued ?? rec.times.pending ?? rec.times.accepted ?? rec.lastSeen;
    const advice =
      rec.state === 'pending'
        ? `that key only waits for approval: a join token or install mode admits this machine over it, ` +
          `or the operator can 'muster nodes reject ${rec.name}'`
        : `give this machine its own name (--name), or if it was rebuilt, run 'muster nodes remove ${rec.name}' ` +
          `on the registrar first`;
    return new MusterError(
      'name_taken',
      `node name ${rec.name} is held by key ${rec.key} (since ${since}); ${advice}`,
      { details: { holder: { key: rec.key, state: rec.state, since } } },
    );
  }

  /**
   * Accepts a node and issues its certificate as ONE change: the acceptance, the certificate, its
   * serial, the token use or install-mode slot, and the events (DESIGN "Exactly once"). The use is
   * held while the certificate is signed off the event loop, so concurrent decisions see it taken.
   * Caller holds the node's lock. Throws StoreConflict when the store refused (nothing written).
   */
  async admitLocked(
    prev: NodeRecord | undefined,
    base: NodeRecord,
    verdict: Extract<Verdict, { kind: 'accept' }>,
    archivePrev: boolean,
    ctx: { key: string; address: string; channel: Channel },
    before: EventInput[] = [],
  ): Promise<NodeRecord> {
    const nowIso = iso(this.o.clock.now());
    const release = this.o.reservations.hold(
      verdict.rule === 'token'
        ? tokenKey(verdict.tokenId!)
        : verdict.rule === 'approval'
          ? `preapproval:${base.name}`
          : verdict.rule === 'policy'
            ? `policy:${base.name}` // consumes nothing shared
            : INSTALL_MODE_KEY,
    );
    try {
      const { pendingReason: _p, advertisedKey: _a, ...rest } = base;
      const accepted: NodeRecord = {
        ...rest,
        state: 'accepted',
        decision: { rule: verdict.rule, detail: verdict.detail, at: nowIso },
        times: { ...base.times, accepted: nowIso },
        ...(verdict.tokenId ? { tokenId: verdict.tokenId } : {}),
      };
      const { next: issued, serial } = await this.o.issuer.certify(accepted);
      const change: Change = {
        nodes: [{ expectRev: prev?.rev ?? 0, next: issued, archivePrev }],
        serial,
        events: [
          ...before,
          {
            type: 'accepted',
            name: base.name,
            detail: { rule: verdict.rule, reason: verdict.detail, ...ctx },
          },
          { type: 'issued', name: base.name, detail: { serial: issued.serial, notAfter: issued.notAfter } },
        ],
      };
      if (verdict.rule === 'token') change.useToken = verdict.tokenId!;
      // The operator's pre-approval is consumed by this acceptance, exactly once (issue 9, item 3).
      else if (verdict.rule === 'approval')
        change.usePreapproval = { name: base.name, now: this.o.clock.now() };
      else if (verdict.rule === 'install-mode') change.useInstallMode = { since: verdict.since ?? 0 };
      await this.o.registry.apply(change);
      this.log.info(
        {
          node: base.name,
          key: base.key,
          address: ctx.address,
          rule: verdict.rule,
          reason: verdict.detail,
          serial: issued.serial,
        },
        'node accepted; certificate issued',
      );
      this.o.fault?.('after-issue');
      return { ...issued, rev: (prev?.rev ?? 0) + 1 };
    } finally {
      release();
    }
  }

  /**
   * Issues the certificate of a node already durably accepted (an operator's approval, or an
   * acceptance a crash interrupted). Caller holds the node's lock.
   */
  async issueLocked(rec: NodeRecord): Promise<NodeRecord> {
    const { next, serial } = await this.o.issuer.certify(rec);
    await this.o.registry.apply({
      nodes: [{ expectRev: rec.rev, next }],
      serial,
      events: [{ type: 'issued', name: rec.name, detail: { serial: next.serial, notAfter: next.notAfter } }],
    });
    this.log.info({ node: rec.name, serial: next.serial }, 'certificate issued');
    this.o.fault?.('after-issue');
    return { ...next, rev: rec.rev + 1 };
  }

  /** Finishes an acceptance whose certificate is not issued yet (after a crash, or a poll that finds it). */
  async ensureIssued(name: string): Promise<void> {
    await this.locks.run(name, async () => {
      const rec = await this.o.registry.getNode(name);
      if (rec?.state === 'accepted') await this.issueLocked(rec);
    });
  }

  /**
   * A node was heard over mDNS saying "ready to register as X" (already validated). Recorded as
   * `heard` when the name is free, so that the operator sees it with its key fingerprint; it is a
   * hint, never enough to issue: the node's CSR must come with the same key.
   */
  async heard(
    ad: { name: string; role: string; cluster: string; key: string },
    addresses: string[],
  ): Promise<void> {
    if (ad.cluster !== '' && ad.cluster !== this.o.cluster) return; // another cluster's node
    await this.locks.run(ad.name, async () => {
      const rec = await this.o.registry.getNode(ad.name);
      const nowIso = iso(this.o.clock.now());
      const addrs = addresses.slice(0, 8);
      if (rec && rec.state !== 'heard' && rec.state !== 'removed' && rec.state !== 'rejected') return;
      if (
        rec?.state === 'heard' &&
        rec.key === ad.key &&
        rec.role === ad.role &&
        rec.addresses.join() === addrs.join()
      )
        return;
      if (rec && rec.state !== 'heard' && rec.key === ad.key) return; // a removed or rejected key stays so
      if (!rec && (await this.o.registry.counts()).heard >= (this.o.maxHeard ?? 10_000)) return;
      const next: NodeRecord = {
        name: ad.name,
        rev: 0,
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
      const events: EventInput[] =
        rec?.state === 'heard'
          ? []
          : [
              {
                type: 'heard',
                name: ad.name,
                detail: { key: ad.key, role: ad.role, addresses: addrs, channel: 'mdns' },
              },
            ];
      try {
        await this.o.registry.apply({
          nodes: [
            { expectRev: rec?.rev ?? 0, next, archivePrev: rec !== undefined && rec.state !== 'heard' },
          ],
          events,
        });
      } catch (err) {
        if (isStoreConflict(err)) return; // the node moved on meanwhile: a hint is not worth a retry
        throw err;
      }
      if (rec?.state !== 'heard')
        this.log.info({ node: ad.name, key: ad.key, addresses: addrs }, 'heard a node over mDNS');
    });
  }

  /**
   * The long poll proves possession of the node key (issue 8: the key fingerprint is public, and the
   * bundle carries the operator's config): a signature over ('poll', name, key, ts) inside the window.
   */
  async checkPoll(name: string, key: string, proof: PollProof): Promise<void> {
    const rec = await this.o.registry.getNode(name);
    if (!rec || rec.key !== key || !rec.spki)
      throw new MusterError('not_found', `no node ${name} with this key is known`);
    if (!(Math.abs(this.o.clock.now() / 1000 - proof.ts) <= PROOF_WINDOW_S)) {
      throw new MusterError(
        'bad_signature',
        'the signed request is outside the 5-minute window (check the node clock)',
      );
    }
    const payload = nodeSignedPayload('poll', name, key, proof.ts);
    if (!verifyNode(importNodeKey(Buffer.from(rec.spki, 'base64')), payload, proof.sig)) {
      this.log.warn(
        { node: name, key },
        'long poll refused: the signature does not verify with the node key',
      );
      throw new MusterError('bad_signature', `the poll signature does not verify with the key of ${name}`);
    }
    await this.locks.run(name, async () => {
      const cur = await this.o.registry.getNode(name);
      // A poll that will be refused (410: removed or rejected) changes nothing, lastSeen included.
      if (cur && cur.key === key && cur.state !== 'removed' && cur.state !== 'rejected')
        await this.touchLocked(cur);
    });
  }

  /**
   * Records an authenticated contact (issue 9, item 5): lastSeen, written at most once a minute per
   * node so that long polls stay cheap, compare-and-set and with no event (a contact is not a
   * transition; the event log keeps decisions). A lost race is left: the winner saw the node too.
   * Caller holds the node's lock.
   */
  async touchLocked(rec: NodeRecord): Promise<NodeRecord> {
    const now = this.o.clock.now();
    if (now - Date.parse(rec.lastSeen) < LAST_SEEN_EVERY_MS) return rec;
    const next: NodeRecord = { ...rec, lastSeen: iso(now) };
    try {
      await this.o.registry.apply({ nodes: [{ expectRev: rec.rev, next }] });
    } catch (err) {
      if (isStoreConflict(err)) return rec;
      throw err;
    }
    return { ...next, rev: rec.rev + 1 };
  }

  /** A node-signed request (ack, leave): checks key, serial, time window and signature. */
  private checkSigned(
    rec: NodeRecord | undefined,
    name: string,
    kind: 'ack' | 'leave' | 'renew',
    body: SignedRequest,
    ref: string = body.serial,
  ): NodeRecord {
    if (!rec || rec.key !== body.key)
      throw new MusterError('not_found', `no node ${name} with this key is known`);
    if (rec.serial !== body.serial) {
      throw new MusterError(
        'bad_signature',
        `serial ${body.serial} is not the current certificate of ${name}`,
      );
    }
    if (Math.abs(this.o.clock.now() / 1000 - body.ts) > PROOF_WINDOW_S) {
      throw new MusterError(
        'bad_signature',
        'the signed request is outside the 5-minute window (check the node clock)',
      );
    }
    const pub = importNodeKey(Buffer.from(rec.spki, 'base64'));
    if (!verifyNode(pub, nodeSignedPayload(kind, name, ref, body.ts), body.sig)) {
      throw new MusterError('bad_signature', `the ${kind} signature does not verify with the key of ${name}`);
    }
    return rec;
  }

  async ack(name: string, body: SignedRequest): Promise<void> {
    assertLabel('node name', name);
    await this.locks.run(name, async () => {
      const rec = this.checkSigned(await this.o.registry.getNode(name), name, 'ack', body);
      if (rec.state === 'active') {
        await this.touchLocked(rec);
        return;
      }
      if (rec.state !== 'issued')
        throw new MusterError('invalid_state', `node ${name} is ${rec.state}, not issued`);
      const nowIso = iso(this.o.clock.now());
      await this.o.registry.apply({
        nodes: [
          {
            expectRev: rec.rev,
            next: { ...rec, state: 'active', lastSeen: nowIso, times: { ...rec.times, active: nowIso } },
          },
        ],
        events: [{ type: 'active', name, detail: { serial: rec.serial } }],
      });
      this.log.info({ node: name, serial: rec.serial }, 'node acknowledged its credentials: active');
    });
  }

  async leave(name: string, body: SignedRequest): Promise<void> {
    assertLabel('node name', name);
    await this.locks.run(name, async () => {
      const rec = this.checkSigned(await this.o.registry.getNode(name), name, 'leave', body);
      if (rec.state === 'removed') return;
      await this.removeLocked(rec, 'the node left (deprovisioned itself)');
    });
  }

  /**
   * A registered node renews (issue 9, item 1; DESIGN "Renewal"): authenticated by its current key and
   * serial, only while its record is live (issued or active, certificate unexpired and not revoked). The
   * new certificate, its serial, lastSeen and a `renewed` event land as ONE change; a lost
   * compare-and-set is decided again, like a join. With `newCsr` the node rotates its key: the old key
   * signs the new key's fingerprint, the CSR's signature proves the new key.
   */
  async renew(name: string, body: RenewRequest): Promise<Bundle> {
    assertLabel('node name', name);
    let csr: ParsedCsr | undefined;
    if (body.newCsr !== undefined) {
      try {
        csr = await parseCsrAsync(body.newCsr);
      } catch (err) {
        throw new MusterError('invalid_csr', `the CSR is not acceptable: ${(err as Error).message}`);
      }
      if (csr.commonName !== name) {
        throw new MusterError(
          'csr_mismatch',
          `the CSR names ${JSON.stringify(csr.commonName.slice(0, 64))}, not ${name}`,
        );
      }
    }
    return this.locks.run(name, async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.renewLocked(name, body, csr);
        } catch (err) {
          if (!isStoreConflict(err) || attempt >= MAX_ATTEMPTS) {
            if (isStoreConflict(err))
              throw new MusterError('busy', 'the registrar is busy with this node: retry shortly', {
                retryAfter: 1,
              });
            throw err;
          }
          this.log.debug({ node: name, on: err.on }, 'lost a race in the store; renewing again');
        }
      }
    });
  }

  private async renewLocked(name: string, body: RenewRequest, csr: ParsedCsr | undefined): Promise<Bundle> {
    const rec = this.checkSigned(
      await this.o.registry.getNode(name),
      name,
      'renew',
      body,
      renewRef(body.serial, csr?.fingerprint),
    );
    const now = this.o.clock.now();
    if (rec.state === 'removed' || (rec.serial && (await this.o.registry.isRevoked(rec.serial)))) {
      this.log.warn({ node: name, serial: rec.serial }, 'renewal refused: the node was removed');
      throw new MusterError(
        'removed',
        `node ${name} was removed by the operator; its certificate is revoked`,
      );
    }
    if (rec.state !== 'issued' && rec.state !== 'active')
      throw new MusterError('invalid_state', `node ${name} is ${rec.state}, not issued or active`);
    if (rec.notAfter !== undefined && Date.parse(rec.notAfter) <= now) {
      // DESIGN "Renewal": an expired but unrevoked node re-enters admission with `muster join`.
      throw new MusterError(
        'invalid_state',
        `the certificate of ${name} expired at ${rec.notAfter}: join again with the same key`,
      );
    }
    const nowIso = iso(now);
    const subject: NodeRecord = csr
      ? { ...rec, key: csr.fingerprint, spki: csr.spki.toString('base64') }
      : rec;
    const { next: certified, serial } = await this.o.issuer.certify(subject);
    // The node stays in its state and keeps its history; only the certificate changes.
    const next: NodeRecord = { ...certified, state: rec.state, times: rec.times, lastSeen: nowIso };
    await this.o.registry.apply({
      nodes: [{ expectRev: rec.rev, next }],
      serial,
      events: [
        {
          type: 'renewed',
          name,
          detail: {
            previousSerial: rec.serial,
            serial: next.serial,
            notAfter: next.notAfter,
            ...(csr ? { previousKey: rec.key, key: csr.fingerprint } : {}),
          },
        },
      ],
    });
    this.log.info(
      { node: name, serial: next.serial, notAfter: next.notAfter, ...(csr ? { key: csr.fingerprint } : {}) },
      csr ? 'node renewed with a new key' : 'node renewed',
    );
    return this.o.issuer.bundle({ ...next, rev: rec.rev + 1 });
  }

  /** Removes a node and revokes its certificate, in one change. Caller holds the node's lock. */
  async removeLocked(rec: NodeRecord, why: string): Promise<NodeRecord> {
    const nowIso = iso(this.o.clock.now());
    const { pendingReason: _p, ...rest } = rec;
    const next: NodeRecord = {
      ...rest,
      state: 'removed',
      decision: { rule: 'removed', detail: why, at: nowIso },
      times: { ...rec.times, removed: nowIso },
    };
    await this.o.registry.apply({
      nodes: [{ expectRev: rec.rev, next }],
      ...(rec.serial ? { revoke: { serial: rec.serial, name: rec.name, at: nowIso, reason: why } } : {}),
      events: [{ type: 'removed', name: rec.name, detail: { reason: why, serial: rec.serial } }],
    });
    this.log.info({ node: rec.name, serial: rec.serial, reason: why }, 'node removed; certificate revoked');
    return { ...next, rev: rec.rev + 1 };
  }
}

/** The client-facing error of a deny verdict. */
export function denial(v: Extract<Verdict, { kind: 'deny' }>): MusterError {
  return new MusterError(v.code, v.message, v.retryAfter !== undefined ? { retryAfter: v.retryAfter } : {});
}
