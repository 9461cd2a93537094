/**
 * The node's join loop (DESIGN "Roles": find the registrar, ask to join, wait for the credentials,
 * validate, write, acknowledge, run the hook) as a small state machine:
 *
 *   discover ─▶ connect ─▶ request ─▶ wait ◀──┐     (POST /v1/join, then GET /v1/join/:name long polls)
 *       ▲        │  ▲ │       │   202 │  202 ─┘
 *       │  skip  └──┘ ▼       ▼       ▼
 *       └──────── pause ◀── (errors)  validate ─▶ write ─▶ ack ─▶ finish (hook) ─▶ done
 *
 * Everything outside the decisions comes in through narrow interfaces (CONVENTIONS 2): the clock and
 * `random()` for back-off, `JoinIo` for discovery, the HTTPS client, the bundle checks and the files.
 * The decisions themselves are pure functions (`backoffDelay`, `retryDelay`, `pollTiming`, ...), so
 * the loop is tested with a ManualClock and a fake registrar, without sleeping.
 *
 * Retry policy (DESIGN "HTTPS API": nodes honour Retry-After, with jitter):
 * - an unreachable registrar, one that is busy, rate limiting, closed for now, or failing: wait with
 *   full jitter (a herd of nodes never retries in step), or Retry-After plus up to 20 % (at most 5 s)
 *   when the registrar gave it; an unreachable one is forgotten and looked for again;
 * - registrars found by mDNS are hints (issue 8, hole 4: anyone on the link can advertise anything):
 *   one that fails its check (TLS, CA, cluster, unreachable) is skipped for the next candidate, and
 *   when none is left the node backs off and looks again; so is an ambiguity (registrars with
 *   different CAs and nothing pinned). Only a mismatch from the --registrar URL ends the run (exit 5);
 * - 202 pending goes straight to the long poll; only a 202 that came back quickly (a registrar that did
 *   not hold the poll) makes the node pause, as long as it asks;
 * - 404 during the long poll: the registrar forgot the node (a restored store), so it asks again;
 * - 409 for a name whose holder only waits (pending): asked again with back-off, as a token or install
 *   mode admits this node over it, or the operator rejects the other (issue 8, hole 2);
 * - 401 bad_signature on the long poll (the node clock, most often): logged as such, retried;
 * - anything else (refused, name taken by an admitted node, a CA or bundle mismatch) ends the run:
 *   retrying cannot fix it.
 *
 * The --timeout deadline bounds the whole run up to the written credentials: a long poll never asks
 * the registrar to hold it past the deadline, and whatever is in flight at the deadline is aborted
 * with MUSTER_ERR_TIMEOUT. The acknowledgement is then retried for up to ACK_BUDGET_MS, never past the
 * deadline; if it still fails, the run ends well (the credentials are valid) and the next run acks.
 */
import type { X509Certificate } from 'node:crypto';
import type { Clock } from '../common/clock.js';
import { isMusterError, MusterError, type ErrorCode } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Bundle } from '../common/proof.js';
import {
  apiError,
  retryAfterMs,
  type HttpResult,
  type RegistrarInfo,
  type TrustBasis,
} from '../fallback/client.js';
import { sleep } from './clock.js';

/** A registrar the node is connected to, its CA verified (RegistrarClient). */
export interface JoinClient {
  readonly base: URL;
  readonly caPem: string;
  /** `caPem` parsed, when the client has it (RegistrarClient does): the bundle check reuses it. */
  readonly ca?: X509Certificate;
  readonly info: RegistrarInfo;
  readonly trust: TrustBasis;
  call(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs?: number,
    signal?: AbortSignal,
  ): Promise<HttpResult>;
  close(): void;
}

/** Where to ask: a URL, with the CA fingerprint mDNS advertised for it (checked on connecting). */
export interface RegistrarTarget {
  url: string;
  advertisedCa?: string;
  /**
   * Set when mDNS found it (the registrar id it advertised): a hint, which the loop skips when it
   * fails its checks. Unset for the --registrar URL, whose mismatch ends the run.
   */
  discovered?: string;
}

/** The I/O the loop drives; agent.ts wires the real ones, tests pass fakes. */
export interface JoinIo {
  /**
   * The registrars to try, in order: those mDNS found (hints), then the --registrar URL; empty when
   * neither gives one yet. Throws MUSTER_ERR_AMBIGUOUS when mDNS found registrars with different CAs
   * and nothing pinned them (and no URL is set): the loop logs it and looks again later.
   */
  discover(signal: AbortSignal): Promise<RegistrarTarget[]>;
  /** Connects and verifies the registrar (pin, local CA, TLS name, wanted cluster). */
  connect(target: RegistrarTarget, signal: AbortSignal): Promise<JoinClient>;
  /** The body of POST /v1/join, made per attempt (a token proof carries the time). */
  joinBody(): unknown;
  /** The path of the long poll holding for `waitS` seconds. */
  pollPath(waitS: number): string;
  /** Checks all of the bundle (bundle-check.ts); throws MUSTER_ERR_BUNDLE and nothing is written. */
  validate(body: unknown, client: JoinClient): Bundle;
  write(bundle: Bundle): Promise<void>;
  /** POST path and body of the acknowledgement, signed per attempt (the signature covers the time). */
  ack(bundle: Bundle): { path: string; body: unknown };
  /** Runs the hook, and records the run as complete when the registrar took the ack (agent.ts). */
  finish(bundle: Bundle, acked: boolean): Promise<void>;
}

export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 1000, maxMs: 60_000 };
/** Seconds the registrar may hold one long poll (it caps this at 60). */
export const DEFAULT_WAIT_S = 30;
/** Time allowed for a request beyond what the registrar may hold it. */
export const REQUEST_SLACK_MS = 15_000;
/** A long poll that answers 202 sooner than this was not held: pause before the next one. */
export const QUICK_POLL_MS = 1000;
/** The pause after a quick 202 when the registrar gave no Retry-After. */
export const QUICK_POLL_PAUSE_MS = 5000;
/** No retry sooner than this (full jitter can draw 0). */
export const MIN_RETRY_MS = 100;
/**
 * How long a failed acknowledgement is retried within the run (never past --timeout), and in how many
 * attempts at most. Under a oneshot unit "the next run" is the next boot, so a registrar that is
 * briefly down or busy must not leave the record `issued` until then.
 */
export const ACK_BUDGET_MS = 60_000;
export const ACK_MAX_ATTEMPTS = 6;

export type JoinState =
  | { kind: 'discover' }
  | { kind: 'connect'; target: RegistrarTarget; rest: RegistrarTarget[] }
  | { kind: 'request' }
  | { kind: 'wait' }
  | {
      kind: 'pause';
      ms: number;
      why: 'backoff' | 'retry-after' | 'pending';
      then: 'discover' | 'request' | 'wait';
    }
  | { kind: 'validate'; body: unknown }
  | { kind: 'write'; bundle: Bundle }
  | { kind: 'ack'; bundle: Bundle }
  | { kind: 'finish'; bundle: Bundle; acked: boolean }
  | { kind: 'done'; bundle: Bundle };

export interface JoinLoopOptions {
  io: JoinIo;
  clock: Clock;
  /** Uniform in [0, 1), as Math.random. */
  random: () => number;
  log: Logger;
  /** Give up after this long (default: never, as a boot job that retries until registered). */
  timeoutMs?: number;
  /** When the run began, for the deadline (default: when the loop starts). */
  startedAt?: number;
  waitS?: number;
  backoff?: Backoff;
  signal?: AbortSignal;
  /** Fields for the loop's own log lines (the node name and key). */
  logFields?: Record<string, unknown>;
  /** Sees every state the loop enters (tests, debug logs). */
  observe?: (state: JoinState) => void;
}

// ---- decisions (pure) -------------------------------------------------------------------------------

/**
 * Errors worth retrying: the registrar is unreachable, busy, rate limiting, closed for now, or failing;
 * mDNS found no usable registrar (none, or an ambiguity: DESIGN "Discovery" forbids a silent pick, and
 * issue 8 forbids a forged packet to stop a boot job); the long poll's signature was refused (the
 * node clock, which NTP may set right at any moment).
 */
const RETRYABLE: readonly ErrorCode[] = [
  'MUSTER_ERR_UNREACHABLE',
  'MUSTER_ERR_NO_REGISTRAR',
  'MUSTER_ERR_AMBIGUOUS',
  'busy',
  'rate_limited',
  'closed',
  'internal',
  'not_found',
  'bad_signature',
];

export function retryable(err: unknown): boolean {
  return isMusterError(err) && RETRYABLE.includes(err.code);
}

/** After these the registrar is looked for again (it may have moved, or another one answers now). */
export function forgetsRegistrar(err: unknown): boolean {
  return isMusterError(err, 'MUSTER_ERR_UNREACHABLE') || isMusterError(err, 'MUSTER_ERR_NO_REGISTRAR');
}

/**
 * A registrar found by mDNS that fails a TLS or CA check is one that anyone on the link can fake: it
 * is forgotten and looked for again, never a reason to end the run (issue 8, hole 4).
 */
export function failsTrust(err: unknown): boolean {
  return isMusterError(err, 'MUSTER_ERR_TLS') || isMusterError(err, 'MUSTER_ERR_CA_PIN');
}

/** The API codes the node acts on; any other code a registrar sends counts as `internal` (retried). */
export const UNDERSTOOD_CODES: readonly ErrorCode[] = [
  'rejected',
  'removed',
  'bad_proof',
  'bad_signature',
  'token_scope',
  'wrong_cluster',
  'banned',
  // The site's policy hook refused it (issue 10): refused for good, like a ban.
  'policy_denied',
  // Tier registrars (issue 11): role cluster asked of a tier, or a tier its parent removed.
  'forbidden_role',
  'tier_removed',
  'invalid_csr',
  'csr_mismatch',
  'invalid_name',
  'bad_request',
  'name_taken',
  'not_found',
  'closed',
  'busy',
  'rate_limited',
];

/** The answers to an acknowledgement the node tells apart; anything else counts as `internal`. */
export const ACK_CODES: readonly ErrorCode[] = [
  'bad_request',
  'bad_signature',
  'not_found',
  'invalid_state',
  'rejected',
  'removed',
  'busy',
  'rate_limited',
];

/**
 * Acknowledgements worth trying again within the run: the registrar unreachable, busy, failing, or
 * refusing the signature (a node clock that NTP has not set yet). A refusal that names the record
 * (not found, removed, not in a state to ack) would only be refused again.
 */
const ACK_RETRYABLE: readonly ErrorCode[] = [
  'MUSTER_ERR_UNREACHABLE',
  'busy',
  'rate_limited',
  'internal',
  'bad_signature',
];

/**
 * Exponential back-off with full jitter (the delay is uniform in [0, cap), cap = base·2^attempt up to
 * max), at least MIN_RETRY_MS. `attempt` counts failures since the last progress (0 for the first).
 */
export function backoffDelay(attempt: number, b: Backoff, random: () => number): number {
  const cap = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(attempt, 16));
  return Math.max(random() * cap, MIN_RETRY_MS);
}

/** Retry-After is honoured with up to 20 % (at most 5 s) added, so that shed nodes do not return together. */
export function retryAfterDelay(hintMs: number, random: () => number): number {
  return hintMs + random() * Math.min(hintMs * 0.2, 5000);
}

/**
 * How long a long poll may ask the registrar to hold it, and how long the request may take: never past
 * the deadline (`leftMs`, Infinity without --timeout).
 */
export function pollTiming(waitS: number, leftMs: number): { waitS: number; timeoutMs: number } {
  const wait = Math.max(0, Math.min(waitS, Math.floor(leftMs / 1000)));
  return { waitS: wait, timeoutMs: Math.max(1, Math.min(wait * 1000 + REQUEST_SLACK_MS, leftMs)) };
}

/** A 202 to a long poll that asked for no wait, or that came back at once, asks for a pause. */
export function isQuickPoll(waitS: number, elapsedMs: number): boolean {
  return waitS === 0 || elapsedMs < QUICK_POLL_MS;
}

/** The difference between this node's clock and the HTTP Date of an answer, in seconds (rounded). */
export function clockSkewS(res: HttpResult, now: number): number | undefined {
  const h = res.headers['date'];
  const date = Date.parse(Array.isArray(h) ? (h[0] ?? '') : (h ?? ''));
  return Number.isFinite(date) ? Math.round((now - date) / 1000) : undefined;
}

// ---- the acknowledgement ------------------------------------------------------------------------------

export interface AckOptions {
  /** Sends one acknowledgement (a fresh signature each time) and returns the registrar's answer. */
  send(timeoutMs: number, signal: AbortSignal | undefined): Promise<HttpResult>;
  clock: Clock;
  random: () => number;
  log: Logger;
  logFields?: Record<string, unknown>;
  /** Retries stop when the next one would start later than this from now (the first is always made). */
  budgetMs: number;
  backoff?: Backoff;
  /** SIGTERM: no more retries (the credentials are valid and written; the next run acks). */
  signal?: AbortSignal;
}

/**
 * Acknowledges the credentials (the record becomes `active`), retrying within `budgetMs` and at most
 * ACK_MAX_ATTEMPTS times. Resolves true once the registrar took it, false when it gave up: the
 * credentials are valid and written either way, and the next run acknowledges them.
 */
export async function acknowledge(o: AckOptions): Promise<boolean> {
  const until = o.clock.now() + Math.max(0, o.budgetMs);
  const backoff = o.backoff ?? DEFAULT_BACKOFF;
  for (let attempt = 0; ; attempt++) {
    let err: unknown;
    let hint: number | undefined;
    try {
      const timeoutMs =
        attempt === 0 ? REQUEST_SLACK_MS : Math.max(1, Math.min(REQUEST_SLACK_MS, until - o.clock.now()));
      const res = await o.send(timeoutMs, o.signal);
      if (res.status === 204) {
        o.log.info({ ...o.logFields, attempts: attempt + 1 }, 'acknowledged');
        return true;
      }
      err = apiError(res, ACK_CODES);
      hint = retryAfterMs(res);
    } catch (e) {
      err = e;
    }
    const fields = {
      ...o.logFields,
      err: (err as Error).message,
      code: isMusterError(err) ? err.code : undefined,
      attempts: attempt + 1,
    };
    if (o.signal?.aborted) {
      o.log.warn(fields, 'stopped before the registrar took the acknowledgement; the next run sends it');
      return false;
    }
    const again = isMusterError(err) && ACK_RETRYABLE.includes(err.code);
    const ms =
      hint !== undefined ? retryAfterDelay(hint, o.random) : backoffDelay(attempt, backoff, o.random);
    if (!again) {
      o.log.warn(
        fields,
        'the registrar refused the acknowledgement; the credentials are valid and written (see muster nodes show on the registrar)',
      );
      return false;
    }
    if (attempt + 1 >= ACK_MAX_ATTEMPTS || o.clock.now() + ms > until) {
      o.log.warn(
        fields,
        'could not acknowledge the credentials (they are valid and written); giving up for this run: the next run of muster join acknowledges them',
      );
      return false;
    }
    o.log.warn({ ...fields, retryInMs: Math.round(ms) }, 'could not acknowledge the credentials; retrying');
    try {
      await sleep(o.clock, ms, o.signal);
    } catch {
      o.log.warn(fields, 'stopped before the registrar took the acknowledgement; the next run sends it');
      return false;
    }
  }
}

// ---- the loop -----------------------------------------------------------------------------------------

export class JoinLoop {
  private readonly io: JoinIo;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly waitS: number;
  private readonly backoff: Backoff;
  private client: JoinClient | undefined;
  /** What `client` is connected to. */
  private target: RegistrarTarget | undefined;
  /** Failures since the last progress (a 202), for the back-off. */
  private attempt = 0;
  /** The registrar knows this node: go on with long polls rather than asking again. */
  private waiting = false;
  private loggedPending = false;
  private deadline = Infinity;

  constructor(private readonly o: JoinLoopOptions) {
    this.io = o.io;
    this.clock = o.clock;
    this.log = o.log;
    this.waitS = o.waitS ?? DEFAULT_WAIT_S;
    this.backoff = o.backoff ?? DEFAULT_BACKOFF;
  }

  /** Runs until the credentials are written, acknowledged and the hook ran; returns the bundle. */
  async run(): Promise<Bundle> {
    const start = this.o.startedAt ?? this.clock.now();
    if (this.o.timeoutMs !== undefined) this.deadline = start + this.o.timeoutMs;
    // One signal for everything in flight: the caller's (SIGTERM) or the deadline, whichever first.
    const ctl = new AbortController();
    const outer = this.o.signal;
    const onOuter = (): void => ctl.abort(outer!.reason);
    if (outer?.aborted) onOuter();
    else outer?.addEventListener('abort', onOuter, { once: true });
    let timer =
      this.o.timeoutMs !== undefined
        ? this.clock.setTimeout(() => ctl.abort(this.timeoutError()), this.left())
        : undefined;
    const stopDeadline = (): void => {
      if (timer) this.clock.clearTimeout(timer);
      timer = undefined;
    };
    let state: JoinState = { kind: 'discover' };
    try {
      for (;;) {
        this.o.observe?.(state);
        if (state.kind === 'done') return state.bundle;
        if (state.kind === 'validate') {
          // The credentials arrived: what is left is local (checks, files) and the ack, which is
          // bounded on its own (ACK_BUDGET_MS, never past the deadline) and may fail without harm.
          stopDeadline();
        } else if (state.kind !== 'write' && state.kind !== 'ack' && state.kind !== 'finish') {
          if (ctl.signal.aborted) throw ctl.signal.reason;
          if (this.clock.now() >= this.deadline) throw this.timeoutError();
        }
        state = await this.step(state, ctl.signal);
      }
    } finally {
      stopDeadline();
      outer?.removeEventListener('abort', onOuter);
      this.client?.close();
      this.client = undefined;
    }
  }

  private timeoutError(): MusterError {
    return new MusterError(
      'MUSTER_ERR_TIMEOUT',
      `not registered after ${Math.round(this.o.timeoutMs! / 1000)} s`,
    );
  }

  private left(): number {
    return Math.max(0, this.deadline - this.clock.now());
  }

  private async step(state: JoinState, signal: AbortSignal): Promise<JoinState> {
    switch (state.kind) {
      case 'discover':
      case 'connect':
      case 'request':
      case 'wait':
        try {
          return await this.exchange(state, signal);
        } catch (err) {
          if (state.kind === 'connect' && state.target.discovered !== undefined && !signal.aborted)
            return this.skip(state, err);
          return this.failed(err, undefined);
        }
      case 'pause':
        await sleep(this.clock, Math.min(state.ms, this.left()), signal);
        return { kind: state.then };
      case 'validate':
        return { kind: 'write', bundle: this.io.validate(state.body, this.client!) };
      case 'write':
        await this.io.write(state.bundle);
        return { kind: 'ack', bundle: state.bundle };
      case 'ack': {
        const client = this.client!;
        const acked = await acknowledge({
          send: (timeoutMs, s) => {
            const { path, body } = this.io.ack(state.bundle);
            return client.call('POST', path, body, timeoutMs, s);
          },
          clock: this.clock,
          random: this.o.random,
          log: this.log,
          ...(this.o.logFields ? { logFields: this.o.logFields } : {}),
          budgetMs: Math.min(ACK_BUDGET_MS, this.left()),
          backoff: this.backoff,
          signal,
        });
        return { kind: 'finish', bundle: state.bundle, acked };
      }
      case 'finish':
        await this.io.finish(state.bundle, state.acked);
        return { kind: 'done', bundle: state.bundle };
      case 'done':
        return state;
    }
  }

  /** The network steps; an error thrown here goes to `skip` or `failed`. */
  private async exchange(
    state: Extract<JoinState, { kind: 'discover' | 'connect' | 'request' | 'wait' }>,
    signal: AbortSignal,
  ): Promise<JoinState> {
    if (state.kind === 'discover') {
      const [first, ...rest] = await this.io.discover(signal);
      if (!first) {
        throw new MusterError(
          'MUSTER_ERR_NO_REGISTRAR',
          'no registrar found on the LAN by mDNS yet, and no --registrar URL is set',
        );
      }
      return { kind: 'connect', target: first, rest };
    }
    if (state.kind === 'connect') {
      this.client = await this.io.connect(state.target, signal);
      this.target = state.target;
      return { kind: this.waiting ? 'wait' : 'request' };
    }
    const client = this.client!;
    const sentAt = this.clock.now();
    let res: HttpResult;
    let waitS = 0;
    if (state.kind === 'request') {
      res = await client.call(
        'POST',
        '/v1/join',
        this.io.joinBody(),
        Math.min(REQUEST_SLACK_MS, Math.max(1, this.left())),
        signal,
      );
    } else {
      const t = pollTiming(this.waitS, this.left());
      waitS = t.waitS;
      res = await client.call('GET', this.io.pollPath(t.waitS), undefined, t.timeoutMs, signal);
    }
    return this.answered(state.kind, res, waitS, this.clock.now() - sentAt);
  }

  /** What the registrar's answer to a join request or a long poll leads to. */
  private answered(asked: 'request' | 'wait', res: HttpResult, waitS: number, elapsedMs: number): JoinState {
    if (res.status === 200 || res.status === 201) return { kind: 'validate', body: res.body };
    if (res.status === 202) {
      if (!this.loggedPending) {
        const reason = (res.body as { message?: unknown; reason?: unknown } | undefined)?.message;
        this.log.info({ ...this.o.logFields, reason }, 'waiting for the registrar to accept this node');
      }
      this.loggedPending = true;
      this.waiting = true;
      this.attempt = 0;
      // The answer to the POST goes straight to the long poll. A long poll answers 202 after holding the
      // request; only a quick 202 (a registrar that did not wait) makes the node pause, as it asks.
      if (asked === 'wait' && isQuickPoll(waitS, elapsedMs)) {
        return { kind: 'pause', ms: retryAfterMs(res) ?? QUICK_POLL_PAUSE_MS, why: 'pending', then: 'wait' };
      }
      return { kind: 'wait' };
    }
    const err = apiError(res, UNDERSTOOD_CODES);
    if (err.code === 'not_found' && this.waiting) {
      this.waiting = false; // the registrar forgot us (a restored store?): ask again
      return { kind: 'request' };
    }
    if (err.code === 'name_taken') {
      const holder = (res.body as { holder?: { key?: unknown; state?: unknown } } | undefined)?.holder;
      if (holder?.state === 'pending') {
        // Only a claim (issue 8, hole 2: anyone can make one with a throwaway key): the registrar lets
        // a token or install mode on the link admit this node over it, and the operator may reject it.
        this.log.warn(
          { ...this.o.logFields, holder: holder.key, holderState: holder.state, reason: err.message },
          'the name is claimed by another key that only waits for approval: asking again',
        );
        return this.failed(err, retryAfterMs(res), true);
      }
      this.log.error({ ...this.o.logFields, holder: holder?.key, holderState: holder?.state }, err.message);
    }
    if (err.code === 'bad_signature') {
      const skewS = clockSkewS(res, this.clock.now());
      this.log.error(
        {
          ...this.o.logFields,
          asked: asked === 'wait' ? 'long poll' : 'join request',
          reason: err.message,
          nodeTime: new Date(this.clock.now()).toISOString(),
          ...(skewS !== undefined ? { clockSkewS: skewS } : {}),
        },
        `the registrar refused this node's signature on the ${asked === 'wait' ? 'long poll' : 'join request'}: ` +
          "check this node's clock (a signature is valid for 5 minutes around the registrar's clock; " +
          'NTP: timedatectl); retrying',
      );
    }
    return this.failed(err, retryAfterMs(res));
  }

  /**
   * A registrar found by mDNS failed its check on connecting (TLS, CA, cluster, or unreachable): it is
   * a hint that did not hold (issue 8, hole 4). Try the next candidate; when none is left, back off
   * and look again. Never a reason to end the run.
   */
  private skip(state: Extract<JoinState, { kind: 'connect' }>, err: unknown): JoinState {
    this.log.warn(
      {
        ...this.o.logFields,
        registrar: state.target.discovered,
        url: state.target.url,
        advertisedCa: state.target.advertisedCa,
        code: isMusterError(err) ? err.code : undefined,
        err: (err as Error).message,
      },
      'skipping a registrar found by mDNS: it failed its check (an advertisement is only a hint)',
    );
    const [next, ...rest] = state.rest;
    if (next) return { kind: 'connect', target: next, rest };
    const ms = backoffDelay(this.attempt++, this.backoff, this.o.random);
    this.log.warn(
      { ...this.o.logFields, retryInMs: Math.round(ms) },
      'no registrar found by mDNS passed its checks; looking again',
    );
    return { kind: 'pause', ms, why: 'backoff', then: 'discover' };
  }

  /** A failed step: pause and retry, or end the run. `retry` forces a retry (a pending name holder). */
  private failed(err: unknown, retryAfter: number | undefined, retry = false): JoinState {
    const lostHint = this.target?.discovered !== undefined && failsTrust(err);
    if (!retry && !lostHint && !retryable(err)) throw err;
    if (forgetsRegistrar(err) || lostHint) {
      this.client?.close();
      this.client = undefined;
      this.target = undefined;
    }
    const ms =
      retryAfter !== undefined
        ? retryAfterDelay(retryAfter, this.o.random)
        : backoffDelay(this.attempt, this.backoff, this.o.random);
    this.attempt++;
    this.log.warn(
      { ...this.o.logFields, err: (err as Error).message, retryInMs: Math.round(ms) },
      isMusterError(err, 'MUSTER_ERR_AMBIGUOUS')
        ? 'skipping the registrars found by mDNS: several with different CAs and none pinned; looking again'
        : 'join attempt failed; retrying',
    );
    return {
      kind: 'pause',
      ms,
      why: retryAfter !== undefined ? 'retry-after' : 'backoff',
      then: this.client ? (this.waiting ? 'wait' : 'request') : 'discover',
    };
  }
}
