/**
 * "On the local link" (DESIGN "Admission policy", install mode): the client's address is on the
 * subnet of an interface the registrar advertises on, so no router stands between them. The host's
 * own addresses (loopback included) count as local.
 */
import os from 'node:os';
import { BlockList, isIP } from 'node:net';
import { normaliseAddress } from '../common/net.js';

export interface LinkInterfaces {
  [name: string]: os.NetworkInterfaceInfo[] | undefined;
}

/**
 * Builds the on-link test. `only`: the IPv4 address of the one interface the registrar advertises on
 * (--interface); otherwise every interface counts.
 */
export function onLinkChecker(
  only?: string,
  ifaces: LinkInterfaces = os.networkInterfaces(),
): (address: string) => boolean {
  const list = new BlockList();
  for (const infos of Object.values(ifaces)) {
    for (const i of infos ?? []) {
      if (i.internal) {
        list.addSubnet(i.address, i.family === 'IPv4' ? 8 : 128, i.family === 'IPv4' ? 'ipv4' : 'ipv6');
        continue;
      }
      if (only && i.address !== only) continue;
      const prefix = Number(i.cidr?.split('/')[1] ?? (i.family === 'IPv4' ? 32 : 128));
      list.addSubnet(i.address, prefix, i.family === 'IPv4' ? 'ipv4' : 'ipv6');
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
