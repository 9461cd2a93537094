/**
 * Uses of a token or an install-mode window held by acceptances still in flight (the certificate is
 * being signed). Decisions count them, so concurrent joins in this process never over-admit and never
 * sign a certificate the store would then refuse. The store's conditional count (Change.useToken,
 * useInstallMode) stays the final word, also across registrars.
 */
export class Reservations {
  private readonly held = new Map<string, number>();

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
    };
  }
}

export const tokenKey = (id: string): string => 'token:' + id;
export const INSTALL_MODE_KEY = 'install-mode';
