/**
 * The node's join loop (DESIGN "Roles": find the registrar, ask to join, wait for the credentials,
 * validate, write, acknowledge, run the hook) as a small state machine:
 *
 *   discover ─▶ connect ─▶ request ─▶ wait ◀──┐     (POST /v1/join, then GET /v1/join/:name long polls)
 *       ▲          │          │   202 │  202 ─┘
 *       │          ▼          ▼       ▼
 *       └──────── pause ◀── (errors)  validate ─▶ write ─▶ finish (ack, hook) ─▶ done
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
 * - 202 pending goes straight to the long poll; only a 202 that came back quickly (a registrar that did
 *   not hold the poll) makes the node pause, as long as it asks;
 * - 404 during the long poll: the registrar forgot the node (a restored store), so it asks again;
 * - anything else (refused, name taken, a CA or bundle mismatch) ends the run: retrying cannot fix it.
 *
 * The --timeout deadline bounds the whole run up to the written credentials: a long poll never asks
 * the registrar to hold it past the deadline, and whatever is in flight at the deadline is aborted
 * with MUSTER_ERR_TIMEOUT.
 */
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
}

/** The I/O the loop drives; agent.ts wires the real ones, tests pass fakes. */
export interface JoinIo {
  /** mDNS first when it is on, else --registrar; undefined when neither gives a registrar yet. */
  discover(signal: AbortSignal): Promise<RegistrarTarget | undefined>;
  /** Connects and verifies the registrar (pin, local CA, TLS name, wanted cluster). */
  connect(target: RegistrarTarget, signal: AbortSignal): Promise<JoinClient>;
  /** The body of POST /v1/join, made per attempt (a token proof carries the time). */
  joinBody(): unknown;
  /** The path of the long poll holding for `waitS` seconds. */
  pollPath(waitS: number): string;
  /** Checks all of the bundle (bundle-check.ts); throws MUSTER_ERR_BUNDLE and nothing is written. */
  validate(body: unknown, client: JoinClient): Bundle;
  write(bundle: Bundle): Promise<void>;
  /** Acknowledges, then runs the hook (agent.ts `finish`). */
  finish(bundle: Bundle, client: JoinClient): Promise<void>;
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

export type JoinState =
  | { kind: 'discover' }
  | { kind: 'connect'; target: RegistrarTarget }
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
  | { kind: 'finish'; bundle: Bundle }
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

/** Errors worth retrying: the registrar is unreachable, busy, rate limiting, closed for now, or failing. */
const RETRYABLE: readonly ErrorCode[] = [
  'MUSTER_ERR_UNREACHABLE',
  'MUSTER_ERR_NO_REGISTRAR',
  'busy',
  'rate_limited',
  'closed',
  'internal',
  'not_found',
];

export function retryable(err: unknown): boolean {
  return isMusterError(err) && RETRYABLE.includes(err.code);
}

/** After these the registrar is looked for again (it may have moved, or another one answers now). */
export function forgetsRegistrar(err: unknown): boolean {
  return isMusterError(err, 'MUSTER_ERR_UNREACHABLE') || isMusterError(err, 'MUSTER_ERR_NO_REGISTRAR');
}

/** The API codes the node acts on; any other code a registrar sends counts as `internal` (retried). */
export const UNDERSTOOD_CODES: readonly ErrorCode[] = [
  'rejected',
  'removed',
  'bad_proof',
  'token_scope',
  'wrong_cluster',
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

// ---- the loop -----------------------------------------------------------------------------------------

export class JoinLoop {
  private readonly io: JoinIo;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly waitS: number;
  private readonly backoff: Backoff;
  private client: JoinClient | undefined;
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
          // The credentials arrived: what is left is local (checks, files) and the ack, which has its
          // own timeout and may fail without harm (the next run repeats it).
          stopDeadline();
        } else if (state.kind !== 'write' && state.kind !== 'finish') {
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
          return this.failed(err, undefined);
        }
      case 'pause':
        await sleep(this.clock, Math.min(state.ms, this.left()), signal);
        return { kind: state.then };
      case 'validate':
        return { kind: 'write', bundle: this.io.validate(state.body, this.client!) };
      case 'write':
        await this.io.write(state.bundle);
        return { kind: 'finish', bundle: state.bundle };
      case 'finish':
        await this.io.finish(state.bundle, this.client!);
        return { kind: 'done', bundle: state.bundle };
      case 'done':
        return state;
    }
  }

  /** The network steps; an error thrown here goes to `failed`. */
  private async exchange(
    state: Extract<JoinState, { kind: 'discover' | 'connect' | 'request' | 'wait' }>,
    signal: AbortSignal,
  ): Promise<JoinState> {
    if (state.kind === 'discover') {
      const target = await this.io.discover(signal);
      if (!target) {
        throw new MusterError(
          'MUSTER_ERR_NO_REGISTRAR',
          'no registrar found on the LAN by mDNS yet, and no --registrar URL is set',
        );
      }
      return { kind: 'connect', target };
    }
    if (state.kind === 'connect') {
      this.client = await this.io.connect(state.target, signal);
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
      const holder = (res.body as { holder?: { key?: string } } | undefined)?.holder?.key;
      this.log.error({ ...this.o.logFields, holder }, err.message);
    }
    return this.failed(err, retryAfterMs(res));
  }

  /** A failed step: pause and retry, or end the run. */
  private failed(err: unknown, retryAfter: number | undefined): JoinState {
    if (!retryable(err)) throw err;
    if (forgetsRegistrar(err)) {
      this.client?.close();
      this.client = undefined;
    }
    const ms =
      retryAfter !== undefined
        ? retryAfterDelay(retryAfter, this.o.random)
        : backoffDelay(this.attempt, this.backoff, this.o.random);
    this.attempt++;
    this.log.warn(
      { err: (err as Error).message, retryInMs: Math.round(ms) },
      'join attempt failed; retrying',
    );
    return {
      kind: 'pause',
      ms,
      why: retryAfter !== undefined ? 'retry-after' : 'backoff',
      then: this.client ? (this.waiting ? 'wait' : 'request') : 'discover',
    };
  }
}
