/**
 * Serialises work per key inside one process (CONVENTIONS 5: "decided in exactly one place,
 * serialised per node"). The store's compare-and-set is what makes a decision exactly-once; this lock
 * only keeps one process from racing itself (and from signing a certificate it would then throw away).
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
