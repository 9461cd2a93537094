/**
 * Uses of a token or an install-mode window held by acceptances still in flight (the certificate is
 * being signed, the change committed). Decisions count them, so concurrent joins in this process
 * never over-admit and never sign a certificate the store would then refuse. The store's conditional
 * count (Change.useToken, useInstallMode) stays the final word, also across registrars.
 *
 * A held use is not a spent one: it may be given back (the commit lost a race), and from the moment
 * its change is in the store until it is given back, a read of the store counts it too. A decision
 * that only these uses would refuse waits for one of them to end and looks again (released()).
 */
export class Reservations {
  private readonly held = new Map<string, number>();
  private readonly waiting = new Map<string, (() => void)[]>();

  count(key: string): number {
    return this.held.get(key) ?? 0;
  }

  /** Holds one use of `key`; the returned function gives it back (idempotent). */
  hold(key: string): () => void {
    this.held.set(key, this.count(key) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const n = this.count(key) - 1;
      if (n > 0) this.held.set(key, n);
      else this.held.delete(key);
      const waiters = this.waiting.get(key);
      this.waiting.delete(key);
      for (const w of waiters ?? []) w();
    };
  }

  /** Resolves when a use of `key` held now is given back (at once when none is held). */
  released(key: string): Promise<void> {
    if (this.count(key) === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const waiters = this.waiting.get(key);
      if (waiters) waiters.push(resolve);
      else this.waiting.set(key, [resolve]);
    });
  }
}

/**
 * Uses in flight one decision waits for before it answers "busy" (retryable) instead: each wait ends
 * one of them, and new ones are only taken while uses are left, so a few waits settle it.
 */
export const MAX_INFLIGHT_WAITS = 16;

/**
 * A decision that counts uses in flight: `look` reads the stored state, decides with the held uses
 * added, and says whether those uses alone make it refuse. Then it waits for one of them to end
 * (`released`) and looks again; past MAX_INFLIGHT_WAITS looks, undefined: the caller answers a
 * retryable "busy" rather than a refusal the node would not retry.
 */
export async function lookPastInflight<T>(
  look: () => Promise<{ result: T; onlyInflightRefuses: boolean }>,
  released: () => Promise<void>,
): Promise<T | undefined> {
  for (let wait = 0; ; wait++) {
    const { result, onlyInflightRefuses } = await look();
    if (!onlyInflightRefuses) return result;
    if (wait >= MAX_INFLIGHT_WAITS) return undefined;
    await released();
  }
}

export const tokenKey = (id: string): string => 'token:' + id;
export const INSTALL_MODE_KEY = 'install-mode';
