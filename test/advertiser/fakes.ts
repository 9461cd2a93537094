// Test-only: a recording PacketSink and fake hosts for the mDNS state machines (no socket, ManualClock).
import { ManualClock } from '../../src/common/clock.js';
import type { BrowserHost, Browser } from '../../src/advertiser/browser.js';
import type { PublicationHost, PublicationMachine } from '../../src/advertiser/publication.js';
import type { DnsPacket, DnsRecord } from '../../src/advertiser/records.js';
import { silentLogger, type PacketSink } from '../../src/advertiser/sink.js';

export interface Sent {
  /** ms since the sink was created. */
  t: number;
  what: string;
  packet: DnsPacket;
}

/** Records every packet with the ManualClock's time, relative to its creation. */
export class RecordingSink implements PacketSink {
  readonly sent: Sent[] = [];
  private readonly t0: number;

  constructor(private readonly clock: ManualClock) {
    this.t0 = clock.now();
  }

  send(packet: DnsPacket, what: string): Promise<void> {
    this.sent.push({ t: this.clock.now() - this.t0, what, packet });
    return Promise.resolve();
  }

  times(what?: string): number[] {
    return this.sent.filter((s) => what === undefined || s.what === what).map((s) => s.t);
  }

  /** Every record of every sent packet, in every section. */
  records(): DnsRecord[] {
    return this.sent.flatMap((s) => [
      ...(s.packet.answers ?? []),
      ...(s.packet.authorities ?? []),
      ...(s.packet.additionals ?? []),
    ]);
  }
}

/** Lets promise callbacks (a send's completion) run. */
export const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

/** A fixed sequence of "random" numbers, then the last one again. */
export function randoms(...values: number[]): () => number {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)] ?? 0;
}

export class FakePublicationHost implements PublicationHost {
  readonly clock = new ManualClock();
  readonly sink = new RecordingSink(this.clock);
  readonly log = silentLogger;
  readonly errors: Error[] = [];
  readonly pubs = new Set<PublicationMachine>();
  /** What the responder would answer queries from, after each syncRegistry(). */
  registry: DnsRecord[] = [];
  syncs = 0;

  constructor(readonly random: () => number = () => 0) {}

  add(p: PublicationMachine): PublicationMachine {
    this.pubs.add(p);
    return p;
  }
  syncRegistry(): void {
    this.syncs++;
    this.registry = this.livePublications().flatMap((p) => p.answerRecords());
  }
  livePublications(): PublicationMachine[] {
    return [...this.pubs].filter((p) => p.state === 'announced');
  }
  forget(p: PublicationMachine): void {
    this.pubs.delete(p);
  }
  report(err: Error): void {
    this.errors.push(err);
  }
}

export class FakeBrowserHost implements BrowserHost {
  readonly clock = new ManualClock();
  readonly sink = new RecordingSink(this.clock);
  readonly errors: Error[] = [];
  forgotten: Browser[] = [];

  constructor(readonly random: () => number = () => 0) {}

  report(err: Error): void {
    this.errors.push(err);
  }
  forgetBrowser(b: Browser): void {
    this.forgotten.push(b);
  }
}
