/**
 * The first contact with the first registrar heard, made while discovery still listens for a second
 * one (issue 12, target 4). Discovery decides 150 ms after its query (discovery.ts, RFC 6762 §6); the
 * first contact (TLS, GET /v1/ca and /v1/info, checked against the pin or the CA the node holds: no
 * CSR, no proof, nothing about the node) does not depend on that decision, only its use does. So it
 * starts when the first registrar is heard, and the join uses it only when the decision puts that very
 * registrar first (same URL and advertised CA) under the same pin; otherwise, or when the decision
 * is a choice nobody made (MUSTER_ERR_AMBIGUOUS), it is closed unused. What the node trusts and when
 * it picks are unchanged: an ambiguous LAN still gets no join from it.
 */

/** What a warm contact is opened for, and must match to be used. */
export interface ContactTarget {
  url: string;
  advertisedCa?: string;
}

export interface Closable {
  close(): void;
}

export class WarmContact<C extends Closable> {
  private warm: { target: ContactTarget; pin: string | undefined; client: Promise<C> } | undefined;

  constructor(
    /** Opens and checks a connection (RegistrarClient.connect with the node's pin and local CA). */
    private readonly connect: (target: ContactTarget, signal: AbortSignal) => Promise<C>,
  ) {}

  /**
   * A registrar was heard: the first one of a discovery round gets a contact (returned), the others
   * none (undefined).
   */
  heard(target: ContactTarget, pin: string | undefined, signal: AbortSignal): Promise<C> | undefined {
    if (this.warm || signal.aborted) return undefined;
    const client = this.connect(target, signal);
    client.catch(() => undefined); // its failure is the join's, if the join comes to use it
    this.warm = { target, pin, client };
    return client;
  }

  /**
   * The contact for `target` under `pin`, if one was opened for exactly that (handed over: the caller
   * closes it); any other is closed. Undefined: connect as usual.
   */
  take(target: ContactTarget, pin: string | undefined): Promise<C> | undefined {
    const w = this.warm;
    this.warm = undefined;
    if (!w) return undefined;
    if (w.target.url === target.url && w.target.advertisedCa === target.advertisedCa && w.pin === pin)
      return w.client;
    void w.client.then(
      (c) => c.close(),
      () => undefined,
    );
    return undefined;
  }

  /** Keeps the contact only if `first` is what it was opened for (the decision's first target). */
  keepFor(first: ContactTarget | undefined, pin: string | undefined): void {
    const w = this.warm;
    if (!w) return;
    if (first && w.target.url === first.url && w.target.advertisedCa === first.advertisedCa && w.pin === pin)
      return;
    this.drop();
  }

  /** Closes an unused contact (a new round, an ambiguous LAN, the end of the run). */
  drop(): void {
    const w = this.warm;
    this.warm = undefined;
    void w?.client.then(
      (c) => c.close(),
      () => undefined,
    );
  }
}
