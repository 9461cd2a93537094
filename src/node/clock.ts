/**
 * The node agent's real clock. common/clock.ts's systemClock unrefs its timers: a registrar's install
 * mode or token expiry must never keep a stopping process alive. A node backing off between attempts
 * is the opposite case: its sleep is often the only thing left in the event loop, and an unref'd timer
 * would let Node exit in the middle of `muster join` with the run unfinished. So these timers hold the
 * process; everything that arms one also clears it (JoinLoop, discovery) when it is done.
 */
import type { Clock, TimerHandle } from '../common/clock.js';

/** Node caps timers at 2^31-1 ms (about 24.8 days); a longer wait is re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const nodeClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle: { id: NodeJS.Timeout } = { id: undefined as unknown as NodeJS.Timeout };
    const arm = (left: number): void => {
      handle.id = setTimeout(
        () => (left > MAX_TIMER_MS ? arm(left - MAX_TIMER_MS) : fn()),
        Math.min(left, MAX_TIMER_MS),
      );
    };
    arm(Math.max(ms, 0));
    return handle;
  },
  clearTimeout(handle: TimerHandle): void {
    clearTimeout(handle.id as NodeJS.Timeout);
  },
};

/**
 * Resolves after `ms` on `clock`; rejects with the signal's reason as soon as it aborts (the caller's
 * own error: stopped by a signal, or the --timeout deadline).
 */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clock.clearTimeout(t);
      reject(signal!.reason);
    };
    const t = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
