/**
 * "On the local link" (DESIGN "Admission policy", install mode): the client's TCP peer address is
 * inside the subnet of an interface the registrar advertises on, so no router stands between them.
 *
 * Only those interfaces count (issue 8, hole 5). Loopback, container bridges and VPN tunnels are not
 * a LAN: anything that NATs or proxies to the registrar through them (a reverse proxy on the host, a
 * container port mapping, a tunnel) would make every remote client look local. So:
 * - `--interface ADDR`: the subnets of the interface that holds ADDR (loopback only if ADDR is one);
 * - otherwise, with mDNS on: every interface mDNS advertises on, i.e. every non-loopback interface
 *   that is not a known virtual one (container bridges, veths, tunnels);
 * - otherwise (mDNS off, no --interface): none. Install mode then admits only with --remote.
 * Install mode must not sit behind NAT or a proxy on the link either (README "Security model").
 */
import os from 'node:os';
import { BlockList, isIP } from 'node:net';
import { normaliseAddress } from '../common/net.js';

export interface LinkInterfaces {
  [name: string]: os.NetworkInterfaceInfo[] | undefined;
}

/** Interfaces that are not a broadcast domain of real machines (by their conventional names). */
export const VIRTUAL_INTERFACE =
  /^(docker|br-|veth|virbr|vnet|cni|flannel|cali|vxlan|kube|tun|tap|wg|tailscale|zt|ppp|utun|ipsec|gre|lxc|lxd|podman)/;

export interface OnLinkOptions {
  /** IPv4 address of the one interface the registrar advertises on (--interface). */
  interface?: string;
  /** mDNS is on (it advertises on every real interface when no --interface is given). */
  advertising: boolean;
}

/** The interfaces that count as the local link, by name, with the addresses that define their subnets. */
export function linkInterfaces(
  opts: OnLinkOptions,
  ifaces: LinkInterfaces = os.networkInterfaces(),
): LinkInterfaces {
  const out: LinkInterfaces = {};
  for (const [name, infos] of Object.entries(ifaces)) {
    if (!infos?.length) continue;
    if (opts.interface) {
      if (infos.some((i) => i.address === opts.interface)) out[name] = infos;
      continue;
    }
    if (!opts.advertising) continue;
    if (VIRTUAL_INTERFACE.test(name)) continue;
    const real = infos.filter((i) => !i.internal);
    if (real.length) out[name] = real;
  }
  return out;
}

/** Builds the on-link test for the interfaces the registrar advertises on. */
export function onLinkChecker(
  opts: OnLinkOptions,
  ifaces: LinkInterfaces = os.networkInterfaces(),
): (address: string) => boolean {
  const list = new BlockList();
  for (const infos of Object.values(linkInterfaces(opts, ifaces))) {
    for (const i of infos ?? []) {
      if (i.address.includes('%')) continue; // link-local with a zone: not addressable here
      const family = i.family === 'IPv4' ? 'ipv4' : 'ipv6';
      const prefix = Number(i.cidr?.split('/')[1] ?? (i.family === 'IPv4' ? 32 : 128));
      list.addSubnet(i.address, prefix, family);
    }
  }
  return (address: string) => {
    const a = normaliseAddress(address);
    const v = isIP(a);
    if (v === 0) return false;
    return list.check(a, v === 4 ? 'ipv4' : 'ipv6');
  };
}

/** The host's addresses, for the registrar's server certificate. */
export function hostAddresses(ifaces: LinkInterfaces = os.networkInterfaces()): string[] {
  const out = new Set<string>();
  for (const infos of Object.values(ifaces))
    for (const i of infos ?? []) if (!i.address.includes('%')) out.add(i.address);
  return [...out];
}
