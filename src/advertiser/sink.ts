/**
 * The narrow interfaces between the mDNS state machines (prober.ts, announcer.ts, requery.ts,
 * publication.ts, browser.ts) and the socket (mdns.ts), after ciao's split of its responder from
 * MDNSServer: the machines decide *what* to send and *when*, on an injected Clock and random source;
 * only the socket layer knows how a packet leaves. Tests implement PacketSink by recording.
 */
import type { DnsPacket } from './records.js';

export interface PacketSink {
  /**
   * Multicasts one packet (a query or an unsolicited response) to 224.0.0.251:5353. Resolves once the
   * packet has left or its failure has been reported (`what` names it in that report); never rejects.
   */
  send(packet: DnsPacket, what: string): Promise<void>;
}

/** Uniform in [0, 1), like Math.random. Injected so that tests choose the random delays of RFC 6762. */
export type Random = () => number;

/** pino-compatible. */
export type LogFn = (obj: Record<string, unknown>, msg: string) => void;
export interface MdnsLogger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

const noop: LogFn = () => undefined;
export const silentLogger: MdnsLogger = { debug: noop, info: noop, warn: noop, error: noop };
