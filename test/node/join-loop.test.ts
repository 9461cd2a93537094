/**
 * The node's join loop (src/node/join-loop.ts) on a ManualClock with a scripted registrar (issue 7
 * item 4): back-off with full jitter and its cap, Retry-After, 202 straight to the long poll, the pause
 * after a quick 202, a forgotten node asking again, the errors that end the run, and the --timeout
 * deadline bounding a long poll (issue 14 item 6). No test sleeps: time moves only by `advance`.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock, type TimerHandle } from '../../src/common/clock.js';
import { isMusterError, MusterError, type ErrorCode } from '../../src/common/errors.js';
import { memoryLogger } from '../../src/common/log.js';
import type { Bundle } from '../../src/common/proof.js';
import type { HttpResult } from '../../src/fallback/client.js';
import {
  ACK_BUDGET_MS,
  ACK_MAX_ATTEMPTS,
  backoffDelay,
  JoinLoop,
  MIN_RETRY_MS,
  pollTiming,
  retryAfterDelay,
  type JoinClient,
  type JoinIo,
  type JoinLoopOptions,
  type JoinState,
  type RegistrarTarget,
} from '../../src/node/join-loop.js';

/** A ManualClock that can say when its next timer is due, so a test can run "until idle". */
class SteppingClock extends ManualClock {
  private readonly due = new Map<unknown, number>();
  override setTimeout(fn: () => void, ms: number): TimerHandle {
    const h: TimerHandle = super.setTimeout(() => {
      this.due.delete(h.id);
      fn();
    }, ms);
    this.due.set(h.id, this.now() + Math.max(ms, 0));
    return h;
  }
  override clearTimeout(h: TimerHandle): void {
    this.due.delete(h.id);
    super.clearTimeout(h);
  }
  next(): number | undefined {
    return this.due.size ? Math.min(...this.due.values()) : undefined;
  }
}

/** Lets every promise callback and I/O callback that is ready run (no time passes). */
const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
};

interface Call {
  at: number;
  method: string;
  path: string;
  timeoutMs: number | undefined;
}

type Reply = HttpResult | MusterError | 'hold';

const reply = (status: number, body?: unknown, headers: Record<string, string> = {}): HttpResult => ({
  status,
  headers,
  body,
});
const apiErr = (status: number, error: ErrorCode, headers: Record<string, string> = {}): HttpResult =>
  reply(status, { error, message: `${error} (test)` }, headers);
const unreachable = (): MusterError =>
  new MusterError('MUSTER_ERR_UNREACHABLE', 'connect ECONNREFUSED (test)');
const BUNDLE = { v: 1, node: 'n1' } as unknown as Bundle;

/**
 * A scripted registrar: `answer` decides each call. 'hold' is a long poll the registrar holds for the
 * wait it was asked for, then answers 202 (or until the request is aborted).
 */
function harness(
  answer: (c: Call, n: number) => Reply,
  over: Partial<JoinLoopOptions> & {
    /** What each discovery finds (default: the --registrar URL alone), or the error it throws. */
    discover?: (n: number) => RegistrarTarget[] | MusterError;
    connect?: (target: RegistrarTarget) => MusterError | undefined;
    /** The answer to each acknowledgement (default 204). */
    ack?: (n: number) => Reply;
  } = {},
) {
  const clock = new SteppingClock(0);
  const calls: Call[] = [];
  const acks: Call[] = [];
  const states: JoinState[] = [];
  const done: string[] = [];
  const connected: string[] = [];
  let acked: boolean | undefined;
  let discovers = 0;
  let connects = 0;
  const logs = memoryLogger('node');
  const client: JoinClient = {
    base: new URL('https://registrar.test:8443'),
    caPem: 'CA',
    info: { v: 1, id: 'r1', cluster: 'c', role: 'main', ca: 'fp', mode: 'closed', version: 't' },
    trust: 'pinned',
    call(method, path, _body, timeoutMs, signal) {
      const c: Call = { at: clock.now(), method, path, timeoutMs };
      if (path.endsWith('/ack')) acks.push(c);
      else calls.push(c);
      const r = path.endsWith('/ack') ? (over.ack?.(acks.length) ?? reply(204)) : answer(c, calls.length);
      if (r instanceof MusterError) return Promise.reject(r);
      if (r !== 'hold') return Promise.resolve(r);
      const wait = Number(new URL(path, 'https://x').searchParams.get('wait'));
      return new Promise((resolve, reject) => {
        const t = clock.setTimeout(() => resolve(reply(202, { state: 'pending' })), wait * 1000);
        signal?.addEventListener('abort', () => {
          clock.clearTimeout(t);
          reject(signal.reason);
        });
      });
    },
    close() {},
  };
  const io: JoinIo = {
    discover: async () => {
      discovers++;
      const found = over.discover?.(discovers) ?? [{ url: 'https://registrar.test:8443' }];
      if (found instanceof MusterError) throw found;
      return found;
    },
    connect: async (target) => {
      connects++;
      connected.push(target.url);
      const err = over.connect?.(target);
      if (err) throw err;
      return client;
    },
    joinBody: () => ({ name: 'n1' }),
    pollPath: (w) => `/v1/join/n1?key=k&wait=${w}`,
    validate: (body) => {
      if ((body as { bad?: boolean }).bad)
        throw new MusterError('MUSTER_ERR_BUNDLE', 'nothing was written (test)');
      return body as Bundle;
    },
    write: async () => void done.push('write'),
    ack: (b) => ({ path: `/v1/join/${b.node}/ack`, body: { sig: 'test' } }),
    finish: async (_b, a) => {
      done.push('finish');
      acked = a;
    },
  };
  const random = over.random ?? (() => 0.5);
  const loop = new JoinLoop({
    io,
    clock,
    random,
    log: logs.log,
    backoff: { baseMs: 1000, maxMs: 60_000 },
    ...over,
    observe: (s) => states.push(s),
  });
  let settled: { ok: true; value: Bundle } | { ok: false; err: unknown } | undefined;
  const running = loop.run().then(
    (value) => void (settled = { ok: true, value }),
    (err: unknown) => void (settled = { ok: false, err }),
  );
  /** Runs the loop, moving the clock to each next timer, until it ends or `until()` holds. */
  const drive = async (until: () => boolean = () => false, maxSteps = 500): Promise<void> => {
    for (let i = 0; i < maxSteps; i++) {
      await flush();
      if (settled || until()) return;
      const next = clock.next();
      if (next === undefined) throw new Error('the loop is stuck: nothing in flight and no timer armed');
      clock.advance(next - clock.now());
    }
    throw new Error('the loop did not end');
  };
  return {
    clock,
    calls,
    acks,
    states,
    done,
    connected,
    acked: () => acked,
    logs,
    drive,
    running,
    counts: () => ({ discovers, connects }),
    result: () => settled,
    pauses: () => states.filter((s): s is Extract<JoinState, { kind: 'pause' }> => s.kind === 'pause'),
  };
}

describe('back-off decisions (pure)', () => {
  it('grows exponentially from the base to the cap, with full jitter (uniform below the cap)', () => {
    const top = (): number => 1 - 1e-12;
    const b = { baseMs: 1000, maxMs: 60_000 };
    const caps = Array.from({ length: 9 }, (_, i) => Math.round(backoffDelay(i, b, top)));
    expect(caps).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    expect(backoffDelay(3, b, () => 0.25)).toBe(2000); // a quarter of the 8 s cap
    expect(backoffDelay(3, b, () => 0)).toBe(MIN_RETRY_MS); // never a busy loop
    expect(backoffDelay(1000, b, top)).toBeLessThanOrEqual(60_000); // no overflow after many failures
  });

  it('honours Retry-After and adds at most 20 % (and at most 5 s) of jitter', () => {
    expect(retryAfterDelay(10_000, () => 0)).toBe(10_000);
    expect(retryAfterDelay(10_000, () => 1 - 1e-12)).toBeCloseTo(12_000, 0);
    expect(retryAfterDelay(60_000, () => 1 - 1e-12)).toBeCloseTo(65_000, 0);
  });

  it('never asks the registrar to hold a long poll past the deadline', () => {
    expect(pollTiming(30, Infinity)).toEqual({ waitS: 30, timeoutMs: 45_000 });
    expect(pollTiming(30, 3_500)).toEqual({ waitS: 3, timeoutMs: 3_500 });
    expect(pollTiming(30, 400)).toEqual({ waitS: 0, timeoutMs: 400 });
  });
});

describe('the join loop', () => {
  it('backs off 1 s, 2 s, 4 s ... up to the cap while the registrar is unreachable, and looks for it again each time', async () => {
    const h = harness(() => reply(500), {
      random: () => 1 - 1e-12,
      connect: () => unreachable(),
      backoff: { baseMs: 1000, maxMs: 10_000 },
    });
    await h.drive(() => h.pauses().length >= 7);
    expect(h.pauses().map((p) => Math.round(p.ms))).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    expect(h.pauses().every((p) => p.why === 'backoff' && p.then === 'discover')).toBe(true);
    // Each retry starts from discovery (the registrar is forgotten), after the pause and not before.
    expect(h.counts().discovers).toBe(7);
    expect(Math.round(h.clock.now())).toBe(1000 + 2000 + 4000 + 8000 + 10_000 + 10_000);
    expect(h.calls).toHaveLength(0);
  });

  it('resets the back-off once the registrar answers 202', async () => {
    let n = 0;
    const h = harness(
      (c) => {
        n++;
        if (c.method === 'POST') return n <= 3 ? apiErr(503, 'busy') : reply(202, { state: 'pending' });
        return apiErr(503, 'busy');
      },
      { random: () => 1 - 1e-12 },
    );
    await h.drive(() => h.pauses().length >= 4);
    // busy, busy, busy (1, 2, 4 s), then 202 and a failing poll: 1 s again.
    expect(h.pauses().map((p) => Math.round(p.ms))).toEqual([1000, 2000, 4000, 1000]);
    expect(h.pauses().at(-1)!.then).toBe('wait'); // the registrar knows the node: it goes on waiting
  });

  it('honours Retry-After (with jitter) and does not ask again before it', async () => {
    const h = harness(
      (c, n) => (n === 1 ? apiErr(503, 'busy', { 'retry-after': '7' }) : reply(201, BUNDLE)),
      {
        random: () => 0.5,
      },
    );
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.pauses()).toEqual([
      { kind: 'pause', ms: 7000 + 0.5 * 1400, why: 'retry-after', then: 'request' },
    ]);
    expect(h.calls.map((c) => [c.method, c.at])).toEqual([
      ['POST', 0],
      ['POST', 7700],
    ]);
    expect(h.counts().connects).toBe(1); // a busy registrar is not forgotten
  });

  it('goes from 202 straight to the long poll, with no pause, and finishes on the bundle', async () => {
    const h = harness((c) => (c.method === 'POST' ? reply(202, { state: 'pending' }) : reply(200, BUNDLE)), {
      waitS: 30,
    });
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.calls.map((c) => [c.method, c.path, c.at])).toEqual([
      ['POST', '/v1/join', 0],
      ['GET', '/v1/join/n1?key=k&wait=30', 0],
    ]);
    expect(h.calls[1]!.timeoutMs).toBe(45_000);
    expect(h.pauses()).toEqual([]);
    expect(h.done).toEqual(['write', 'finish']);
    expect(h.states.map((s) => s.kind)).toEqual([
      'discover',
      'connect',
      'request',
      'wait',
      'validate',
      'write',
      'ack',
      'finish',
      'done',
    ]);
    expect(h.acks).toHaveLength(1);
    expect(h.acked()).toBe(true);
  });

  it('polls again at once after a held long poll, but pauses after a quick 202 as the registrar asks', async () => {
    let polls = 0;
    const h = harness((c) => {
      if (c.method === 'POST') return reply(202, { state: 'pending' });
      polls++;
      if (polls <= 2) return 'hold'; // held for the full wait, then 202
      if (polls === 3) return reply(202, { state: 'pending' }, { 'retry-after': '3' }); // answered at once
      if (polls === 4) return reply(202, { state: 'pending' }); // at once, no Retry-After
      return reply(200, BUNDLE);
    });
    await h.drive();
    expect(h.result()).toMatchObject({ ok: true });
    const gets = h.calls.filter((c) => c.method === 'GET').map((c) => c.at);
    expect(gets).toEqual([0, 30_000, 60_000, 63_000, 68_000]);
    expect(h.pauses().map((p) => [p.ms, p.why])).toEqual([
      [3000, 'pending'],
      [5000, 'pending'],
    ]);
  });

  it('asks again (a new POST) when the registrar no longer knows the waiting node (404)', async () => {
    const h = harness((c, n) => {
      if (c.method === 'POST') return n === 1 ? reply(202, { state: 'pending' }) : reply(201, BUNDLE);
      return apiErr(404, 'not_found');
    });
    await h.drive();
    expect(h.result()).toMatchObject({ ok: true });
    expect(h.calls.map((c) => [c.method, c.at])).toEqual([
      ['POST', 0],
      ['GET', 0],
      ['POST', 0],
    ]);
    expect(h.pauses()).toEqual([]);
  });

  it.each([
    ['rejected (410)', apiErr(410, 'rejected'), 'rejected'],
    ['removed (410)', apiErr(410, 'removed'), 'removed'],
    ['a bad token proof (401)', apiErr(401, 'bad_proof'), 'bad_proof'],
    ['a name held by another key (409)', apiErr(409, 'name_taken'), 'name_taken'],
    ['a registrar naming a local error code', apiErr(400, 'MUSTER_ERR_TIMEOUT' as ErrorCode), 'internal'],
  ] as const)(
    'stops at %s without retrying, or retries it when it means nothing to the node',
    async (_what, res, code) => {
      const h = harness(() => res);
      await h.drive(() => h.calls.length >= 2);
      if (code === 'internal') {
        // An unknown code counts as the registrar failing: retried, never taken as a local error.
        expect(h.calls.length).toBe(2);
        expect(h.result()).toBeUndefined();
        return;
      }
      const r = h.result();
      expect(r?.ok).toBe(false);
      expect(isMusterError((r as { err: unknown }).err, code)).toBe(true);
      expect(h.calls).toHaveLength(1);
      expect(h.pauses()).toEqual([]);
      expect(h.done).toEqual([]);
    },
  );

  it('stops on a CA mismatch when connecting, and writes nothing for a bundle that fails its checks', async () => {
    const pin = harness(() => reply(201, BUNDLE), {
      connect: () => new MusterError('MUSTER_ERR_CA_PIN', 'not the pinned CA (test)'),
    });
    await pin.drive();
    expect(isMusterError((pin.result() as { err: unknown }).err, 'MUSTER_ERR_CA_PIN')).toBe(true);
    expect(pin.calls).toHaveLength(0);

    const bad = harness(() => reply(201, { bad: true }));
    await bad.drive();
    expect(isMusterError((bad.result() as { err: unknown }).err, 'MUSTER_ERR_BUNDLE')).toBe(true);
    expect(bad.done).toEqual([]);
  });

  it('--timeout bounds a long poll: the wait asked for is capped and the request aborted at the deadline', async () => {
    const h = harness((c) => (c.method === 'POST' ? reply(202, { state: 'pending' }) : 'hold'), {
      timeoutMs: 3_500,
      waitS: 30,
    });
    await h.drive();
    const r = h.result();
    expect(r?.ok).toBe(false);
    expect(isMusterError((r as { err: unknown }).err, 'MUSTER_ERR_TIMEOUT')).toBe(true);
    const poll = h.calls.find((c) => c.method === 'GET')!;
    expect(poll.path).toMatch(/wait=3$/);
    expect(poll.timeoutMs).toBe(3_500);
    // The run ended at the deadline, not when a 30 s poll would have come back.
    expect(h.clock.now()).toBe(3_500);
    expect(h.clock.next()).toBeUndefined(); // nothing left armed (the process can exit)
  });

  it('--timeout cuts a back-off short and ends with MUSTER_ERR_TIMEOUT', async () => {
    const h = harness(() => reply(500), {
      timeoutMs: 2_000,
      random: () => 1 - 1e-12,
      connect: () => unreachable(),
    });
    await h.drive();
    expect(isMusterError((h.result() as { err: unknown }).err, 'MUSTER_ERR_TIMEOUT')).toBe(true);
    expect(h.clock.now()).toBe(2_000);
    expect(h.clock.next()).toBeUndefined();
  });

  it("stops at once with the caller's reason when its signal aborts (SIGTERM)", async () => {
    const stop = new AbortController();
    const h = harness((c) => (c.method === 'POST' ? reply(202, { state: 'pending' }) : 'hold'), {
      signal: stop.signal,
    });
    await h.drive(() => h.calls.length === 2);
    stop.abort(new MusterError('MUSTER_ERR_TIMEOUT', 'stopped by SIGTERM'));
    await h.drive();
    expect((h.result() as { err: Error }).err.message).toBe('stopped by SIGTERM');
    expect(h.clock.now()).toBe(0);
    expect(h.clock.next()).toBeUndefined();
  });
});

const REAL: RegistrarTarget = { url: 'https://198.18.0.2:8443', advertisedCa: 'CA-real', discovered: 'r1' };
const FORGED: RegistrarTarget = {
  url: 'https://198.18.0.66:8443',
  advertisedCa: 'CA-real',
  discovered: 'r1',
};
const caMismatch = (): MusterError =>
  new MusterError('MUSTER_ERR_CA_PIN', 'advertised CA CA-real over mDNS but serves CA CA-rogue (test)');
const errOf = (r: ReturnType<ReturnType<typeof harness>['result']>): unknown =>
  (r as { ok: false; err: unknown } | undefined)?.err;

describe('registrars found by mDNS are hints (issue 8, hole 4)', () => {
  it('a forged advertisement (right ca=, another address) is skipped for the next candidate, at once', async () => {
    const h = harness(() => reply(201, BUNDLE), {
      discover: () => [FORGED, REAL],
      connect: (t) => (t === FORGED ? caMismatch() : undefined),
    });
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.connected).toEqual([FORGED.url, REAL.url]);
    expect(h.pauses()).toEqual([]); // no back-off between candidates
    expect(h.calls.map((c) => c.method)).toEqual(['POST']); // the join went to the real one only
    const skipped = h.logs.lines().find((l) => /skipping a registrar found by mDNS/.test(String(l.msg)));
    expect(skipped).toMatchObject({ url: FORGED.url, code: 'MUSTER_ERR_CA_PIN', level: 40 });
  });

  it.each([
    ['a CA mismatch', caMismatch],
    ['a TLS mismatch', () => new MusterError('MUSTER_ERR_TLS', 'not issued by the CA it serves (test)')],
    ['another cluster', () => new MusterError('wrong_cluster', 'serves cluster b, not a (test)')],
    ['an unreachable address', unreachable],
  ])('%s with every candidate backs off and looks again, never ends the run', async (_what, fail) => {
    // The forged advertisement is all there is at first; the real registrar appears on the third look.
    const h = harness(() => reply(201, BUNDLE), {
      discover: (n) => (n < 3 ? [FORGED] : [FORGED, REAL]),
      connect: (t) => (t === FORGED ? fail() : undefined),
      random: () => 1 - 1e-12,
    });
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.pauses().map((p) => [Math.round(p.ms), p.then])).toEqual([
      [1000, 'discover'],
      [2000, 'discover'],
    ]);
    expect(h.counts().discovers).toBe(3);
    expect(h.connected).toEqual([FORGED.url, FORGED.url, FORGED.url, REAL.url]);
  });

  it('an ambiguity (different CAs, nothing pinned) is logged with the registrars and retried with back-off', async () => {
    const ambiguous = new MusterError(
      'MUSTER_ERR_AMBIGUOUS',
      'found 2 registrars with different CAs and no CA is pinned: r1 at https://198.18.0.2:8443 (cluster c, CA CA-real); ' +
        'r9 at https://198.18.0.66:8443 (cluster c, CA CA-rogue). Pin the right one with --ca-fingerprint, or choose with --cluster.',
    );
    const h = harness(() => reply(201, BUNDLE), {
      discover: (n) => (n <= 3 ? ambiguous : [REAL]),
      random: () => 1 - 1e-12,
    });
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.pauses().map((p) => [Math.round(p.ms), p.then])).toEqual([
      [1000, 'discover'],
      [2000, 'discover'],
      [4000, 'discover'],
    ]);
    expect(h.connected).toEqual([REAL.url]); // neither was picked while they were ambiguous
    const lines = h.logs.lines().filter((l) => /several with different CAs/.test(String(l.msg)));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatchObject({ level: 40 });
    expect(String(lines[0]!.err)).toContain('different CAs');
    expect(String(lines[0]!.err)).toContain('CA-rogue');
  });

  it('a registrar found by mDNS that fails TLS later (a request) is forgotten and looked for again', async () => {
    let n = 0;
    const h = harness(
      () =>
        ++n === 1 ? new MusterError('MUSTER_ERR_TLS', 'certificate changed (test)') : reply(201, BUNDLE),
      { discover: () => [REAL] },
    );
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.counts()).toEqual({ discovers: 2, connects: 2 });
    expect(h.pauses().map((p) => p.then)).toEqual(['discover']);
  });

  it.each([
    ['MUSTER_ERR_CA_PIN', caMismatch],
    ['MUSTER_ERR_TLS', () => new MusterError('MUSTER_ERR_TLS', 'not issued by the CA it serves (test)')],
  ] as const)('%s from the --registrar URL (after skipped hints) still ends the run', async (code, fail) => {
    const URL_TARGET: RegistrarTarget = { url: 'https://registrar.example:8443' };
    const h = harness(() => reply(201, BUNDLE), {
      discover: () => [FORGED, URL_TARGET],
      connect: (t) => (t === FORGED ? caMismatch() : fail()),
    });
    await h.drive();
    expect(isMusterError(errOf(h.result()), code)).toBe(true);
    expect(h.connected).toEqual([FORGED.url, URL_TARGET.url]);
    expect(h.calls).toHaveLength(0);
    expect(h.done).toEqual([]);
  });
});

describe('a name claimed by a key that only waits (issue 8, hole 2)', () => {
  const taken = (state: string): HttpResult =>
    reply(409, {
      error: 'name_taken',
      message: `node name n1 is held by key K (test, ${state})`,
      holder: { key: 'K', state, since: '2026-01-01T00:00:00.000Z' },
    });

  it('409 with a pending holder is asked again with back-off until the name is free', async () => {
    const h = harness((c, n) => (n <= 3 ? taken('pending') : reply(201, BUNDLE)), {
      random: () => 1 - 1e-12,
    });
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.calls.map((c) => [c.method, Math.round(c.at)])).toEqual([
      ['POST', 0],
      ['POST', 1000],
      ['POST', 3000],
      ['POST', 7000],
    ]);
    expect(h.pauses().every((p) => p.then === 'request')).toBe(true);
    expect(h.counts().connects).toBe(1); // the registrar is not forgotten
    const warned = h.logs.lines().filter((l) => /only waits for approval/.test(String(l.msg)));
    expect(warned).toHaveLength(3);
    expect(warned[0]).toMatchObject({ holder: 'K', holderState: 'pending' });
  });

  it.each(['active', 'issued', 'accepted'])(
    '409 with an admitted (%s) holder ends the run: name_taken',
    async (state) => {
      const h = harness(() => taken(state));
      await h.drive();
      expect(isMusterError(errOf(h.result()), 'name_taken')).toBe(true);
      expect(h.calls).toHaveLength(1);
      expect(h.pauses()).toEqual([]);
    },
  );
});

describe('the acknowledgement is retried within the run', () => {
  it('a registrar that refuses the first acks (503, then down) gets the ack on a later attempt', async () => {
    const h = harness(() => reply(201, BUNDLE), {
      random: () => 1 - 1e-12,
      ack: (n) => (n === 1 ? apiErr(503, 'busy') : n === 2 ? unreachable() : reply(204)),
    });
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.acks.map((a) => Math.round(a.at))).toEqual([0, 1000, 3000]);
    expect(h.acked()).toBe(true);
    expect(h.done).toEqual(['write', 'finish']);
  });

  it('honours Retry-After on a busy ack', async () => {
    const h = harness(() => reply(201, BUNDLE), {
      random: () => 0,
      ack: (n) => (n === 1 ? apiErr(503, 'busy', { 'retry-after': '4' }) : reply(204)),
    });
    await h.drive();
    expect(h.acks.map((a) => a.at)).toEqual([0, 4000]);
    expect(h.acked()).toBe(true);
  });

  it('gives up after a bounded number of attempts within the budget: the run still ends well, not acked', async () => {
    const h = harness(() => reply(201, BUNDLE), { random: () => 1 - 1e-12, ack: () => unreachable() });
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE }); // exit 0: the credentials are valid
    expect(h.acked()).toBe(false);
    // 1, 2, 4, 8, 16 s apart: six attempts in 31 s, within ACK_BUDGET_MS, never more.
    expect(h.acks.map((a) => Math.round(a.at))).toEqual([0, 1000, 3000, 7000, 15_000, 31_000]);
    expect(h.acks).toHaveLength(ACK_MAX_ATTEMPTS);
    expect(h.clock.now()).toBeLessThanOrEqual(ACK_BUDGET_MS);
    const gaveUp = h.logs.lines().find((l) => /giving up for this run/.test(String(l.msg)));
    expect(gaveUp).toMatchObject({ level: 40, attempts: ACK_MAX_ATTEMPTS });
  });

  it('never retries past --timeout', async () => {
    let polls = 0;
    // The bundle comes at 6 s (after one held poll): 4 s are left for the ack.
    const h = harness(
      (c) =>
        c.method === 'POST' ? reply(202, { state: 'pending' }) : ++polls === 1 ? 'hold' : reply(200, BUNDLE),
      { random: () => 1 - 1e-12, timeoutMs: 10_000, waitS: 6, ack: () => unreachable() },
    );
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.acked()).toBe(false);
    // 1 s and 2 s later; the next (4 s later) would pass the deadline.
    expect(h.acks.map((a) => Math.round(a.at))).toEqual([6000, 7000, 9000]);
    expect(h.clock.next()).toBeUndefined();
  });

  it('does not retry an ack the registrar refuses for good (not found)', async () => {
    const h = harness(() => reply(201, BUNDLE), { ack: () => apiErr(404, 'not_found') });
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.acks).toHaveLength(1);
    expect(h.acked()).toBe(false);
  });
});

describe('a refused signature on the long poll', () => {
  it('is logged as such, with the clock named and the skew measured, and retried with back-off', async () => {
    const date = new Date(Date.UTC(1969, 11, 31, 23, 50)).toUTCString(); // 10 min before the node's 0
    let polls = 0;
    const h = harness(
      (c) => {
        if (c.method === 'POST') return reply(202, { state: 'pending' });
        if (++polls <= 2)
          return reply(
            401,
            { error: 'bad_signature', message: 'the poll signature does not verify with the key of n1' },
            { date },
          );
        return reply(200, BUNDLE);
      },
      { random: () => 1 - 1e-12 },
    );
    await h.drive();
    expect(h.result()).toEqual({ ok: true, value: BUNDLE });
    expect(h.pauses().map((p) => [Math.round(p.ms), p.then])).toEqual([
      [1000, 'wait'],
      [2000, 'wait'],
    ]);
    const refused = h.logs
      .lines()
      .filter((l) => /refused this node's signature on the long poll/.test(String(l.msg)));
    expect(refused).toHaveLength(2);
    expect(refused[0]).toMatchObject({ level: 50, clockSkewS: 600 });
    expect(String(refused[0]!.msg)).toMatch(/clock/);
  });
});
