/**
 * The link an mDNS socket serves, and which received packets belong to it (issue 8 hole 1).
 *
 * mDNS is link-local: 224.0.0.251 never crosses a router, but the socket on UDP 5353 also takes
 * unicast datagrams from anywhere a route reaches. Without a check, a host in another subnet could
 * unicast a forged `_muster-join._tcp` answer (its own key for a name) straight to the registrar's 5353.
 * So, as RFC 6762 asks:
 * - §11: a response is accepted only from a source on the local link, i.e. on a subnet of the interface
 *   the socket serves. (§11 also deems anything sent to 224.0.0.251 local whatever its source; Node's
 *   dgram does not tell the destination address, so a misconfigured on-link host whose address is in
 *   no subnet of ours is dropped too. Nothing muster relies on sends that way.)
 * - §5.5: a query from off the link is ignored as well (no answers to strangers, no probe tie-breaks
 *   decided by them).
 * - §6: a response whose source port is not 5353 is silently ignored. A *query* from another port is a
 *   legacy unicast query (a one-shot resolver, §5.1) and is answered by unicast per §6.7 (legacy.ts).
 *
 * The link is what the host's interfaces say now: LinkWatch polls them on the injected Clock, so a
 * registrar started before the network is up publishes once an address appears (issue 8 bugs), and
 * the subnets follow DHCP. Pure apart from the Clock; the interface table is passed in.
 */
import type { Clock, TimerHandle } from '../common/clock.js';

/** The mDNS port (RFC 6762 §3). */
export const MDNS_PORT = 5353;
/** How often the interfaces are read (issue 8: publish soon after the network comes up). */
export const ADDRESS_POLL_MS = 2000;

/** One address of os.networkInterfaces(), structurally (the state machines import no node module). */
export interface InterfaceAddress {
  address: string;
  family: string | number;
  internal: boolean;
  cidr?: string | null;
  netmask?: string;
}
export type InterfaceTable = Readonly<Record<string, readonly InterfaceAddress[] | undefined>>;

/** An IPv4 subnet as 32-bit network and mask. */
export interface Subnet {
  network: number;
  mask: number;
}

export interface LinkView {
  /** The host's IPv4 addresses to publish: the `interface` address if the host has it, else every non-loopback one. */
  addresses: string[];
  /** The subnets packets are accepted from. */
  subnets: Subnet[];
}

const QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** A dotted-quad IPv4 address (also as `::ffff:a.b.c.d`) as an unsigned 32-bit number; else undefined. */
export function parseIPv4(s: string): number | undefined {
  if (typeof s !== 'string') return undefined;
  const m = QUAD.exec(s.startsWith('::ffff:') ? s.slice(7) : s);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255) return undefined;
    n = n * 256 + octet;
  }
  return n;
}

const maskOf = (prefix: number): number => (prefix <= 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);

function prefixOf(a: InterfaceAddress): number {
  const fromCidr = Number(a.cidr?.split('/')[1]);
  if (Number.isInteger(fromCidr) && fromCidr >= 0 && fromCidr <= 32) return fromCidr;
  const mask = a.netmask === undefined ? undefined : parseIPv4(a.netmask);
  if (mask !== undefined) {
    let p = 0;
    while (p < 32 && mask & (0x80000000 >>> p)) p++;
    return p;
  }
  return 32;
}

const isIPv4 = (a: InterfaceAddress): boolean => a.family === 'IPv4' || a.family === 4;

/**
 * The link of an mDNS socket: the one interface whose address is `only` (`--interface`), or every
 * non-loopback IPv4 interface. Loopback never counts: nothing on a link sends from 127/8.
 */
export function linkOf(ifaces: InterfaceTable, only?: string): LinkView {
  const addresses: string[] = [];
  const subnets: Subnet[] = [];
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) {
      if (!isIPv4(a) || a.internal) continue;
      if (only !== undefined && a.address !== only) continue;
      const ip = parseIPv4(a.address);
      if (ip === undefined) continue;
      const mask = maskOf(prefixOf(a));
      if (!addresses.includes(a.address)) addresses.push(a.address);
      subnets.push({ network: (ip & mask) >>> 0, mask });
    }
  }
  return { addresses, subnets };
}

/** Whether `address` is in one of `subnets`. Anything but an IPv4 address is not (the socket is udp4). */
export function onSubnet(subnets: readonly Subnet[], address: string): boolean {
  const ip = parseIPv4(address);
  if (ip === undefined) return false;
  return subnets.some((s) => (ip & s.mask) >>> 0 === s.network);
}

export type PacketVerdict =
  /** From the link, from port 5353: for the browsers, the publications and the responder. */
  | 'accept'
  /** A query from the link but another port: answer by unicast only (§6.7). */
  | 'legacy-query'
  /** From off the link (§5.5, §11): dropped. */
  | 'off-link'
  /** A response from a port other than 5353 (§6): dropped. */
  | 'bad-port';

/** What to do with one received packet (RFC 6762 §5.5, §6, §6.7, §11). */
export function packetVerdict(
  kind: 'query' | 'response',
  source: { address: string; port: number },
  onLink: (address: string) => boolean,
): PacketVerdict {
  if (!onLink(source.address)) return 'off-link';
  if (source.port === MDNS_PORT) return 'accept';
  return kind === 'query' ? 'legacy-query' : 'bad-port';
}

/**
 * Follows the host's interfaces on the injected Clock: reads them at start() and every `pollMs`, and
 * calls onChange with the new publishable addresses whenever they change (an address appeared, went, or
 * moved). The subnets are refreshed by the same reads.
 */
export class LinkWatch {
  private view: LinkView = { addresses: [], subnets: [] };
  private timer: TimerHandle | undefined;
  private stopped = false;

  constructor(
    private readonly deps: { clock: Clock },
    /** The host's interfaces now (os.networkInterfaces in mdns.ts, a table in tests). */
    private readonly read: () => InterfaceTable,
    /** The `--interface` address, if one was given. */
    private readonly only: string | undefined,
    private readonly onChange: (addresses: readonly string[]) => void,
    private readonly pollMs = ADDRESS_POLL_MS,
    private readonly onReadError: (err: unknown) => void = () => undefined,
  ) {}

  get addresses(): readonly string[] {
    return this.view.addresses;
  }

  /** On a subnet of the link as last read. */
  onLink(address: string): boolean {
    return onSubnet(this.view.subnets, address);
  }

  /** Reads the interfaces now (no onChange for this first read), then polls. */
  start(): void {
    if (this.stopped || this.timer) return;
    this.view = this.readView() ?? this.view;
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    this.timer = this.deps.clock.setTimeout(() => this.poll(), this.pollMs);
  }

  private poll(): void {
    this.timer = undefined;
    if (this.stopped) return;
    this.arm(); // first, so that the schedule holds whatever onChange does
    const next = this.readView();
    if (!next) return;
    const before = this.view.addresses;
    this.view = next;
    const same = before.length === next.addresses.length && before.every((a, i) => a === next.addresses[i]);
    if (!same) this.onChange(next.addresses);
  }

  private readView(): LinkView | undefined {
    try {
      return linkOf(this.read(), this.only);
    } catch (err) {
      // os.networkInterfaces() can fail (uv_interface_addresses); keep what we had and try again.
      this.onReadError(err);
      return undefined;
    }
  }
}
