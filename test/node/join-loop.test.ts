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
  backoffDelay,
  JoinLoop,
  MIN_RETRY_MS,
  pollTiming,
  retryAfterDelay,
  type JoinClient,
  type JoinIo,
  type JoinLoopOptions,
  type JoinState,
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
  over: Partial<JoinLoopOptions> & { connect?: () => MusterError | undefined } = {},
) {
  const clock = new SteppingClock(0);
  const calls: Call[] = [];
  const states: JoinState[] = [];
  const done: string[] = [];
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
      calls.push(c);
      const r = answer(c, calls.length);
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
      return { url: 'https://registrar.test:8443' };
    },
    connect: async () => {
      connects++;
      const err = over.connect?.();
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
    finish: async () => void done.push('finish'),
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
    states,
    done,
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
      'finish',
      'done',
    ]);
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
