// "On the local link" (src/registrar/onlink.ts, DESIGN "Admission policy", install mode), with a fake
// interface table instead of the machine's.
import type { NetworkInterfaceInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { normaliseAddress, sourceKey } from '../../src/common/net.js';
import { hostAddresses, linkInterfaces, onLinkChecker, type LinkInterfaces } from '../../src/registrar/onlink.js';

function v4(address: string, prefix: number, internal = false): NetworkInterfaceInfo {
  return { address, netmask: '', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: `${address}/${prefix}` };
}
function v6(address: string, prefix: number, internal = false): NetworkInterfaceInfo {
  return { address, netmask: '', family: 'IPv6', mac: '00:00:00:00:00:00', internal, cidr: `${address}/${prefix}`, scopeid: 0 };
}

const IFACES: LinkInterfaces = {
  lo: [v4('127.0.0.1', 8, true), v6('::1', 128, true)],
  lan: [v4('198.18.0.1', 24), v6('fd00:18::1', 64)],
  mgmt: [v4('10.20.30.40', 16)],
  down: undefined,
};

describe('onLinkChecker: only the interfaces the registrar advertises on (issue 8, hole 5)', () => {
  const all = { ...IFACES, docker0: [v4('172.17.0.1', 16)], wg0: [v4('10.99.0.1', 24)], 'veth1a2b': [v4('169.254.7.1', 16)] };
  const onLink = onLinkChecker({ advertising: true }, all);

  it('never counts loopback, container bridges or tunnels (a proxy or NAT there makes remote clients look local)', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', '172.17.0.2', '10.99.0.7', '169.254.7.9']) {
      expect(onLink(a), a).toBe(false);
    }
    expect(linkInterfaces({ advertising: true }, all)).toEqual({ lan: IFACES.lan, mgmt: IFACES.mgmt });
  });

  it('counts an address inside a real interface subnet, host bits of the interface notwithstanding', () => {
    for (const a of ['198.18.0.1', '198.18.0.77', '198.18.0.255', '10.20.0.1', '10.20.255.254', 'fd00:18::abcd']) {
      expect(onLink(a), a).toBe(true);
    }
  });

  it('does not count an address outside every subnet', () => {
    for (const a of ['198.18.1.1', '198.19.0.1', '10.21.0.1', '203.0.113.9', 'fd00:19::1', '2001:db8::1']) {
      expect(onLink(a), a).toBe(false);
    }
  });

  it('normalises IPv4-mapped IPv6 addresses (a dual-stack socket)', () => {
    expect(onLink('::ffff:198.18.0.77')).toBe(true);
    expect(onLink('::ffff:203.0.113.9')).toBe(false);
  });

  it('is false for garbage, never throws', () => {
    for (const a of ['', 'garbage', '198.18.0', '198.18.0.1.5', '999.1.1.1', '::ffff:', '::ffff:nothing', 'fe80::1%eth0x', ' 198.18.0.2']) {
      expect(() => onLink(a)).not.toThrow();
      expect(onLink(a), a).toBe(false);
    }
  });

  it('--interface restricts the link to the interface holding that address (both families)', () => {
    const only = onLinkChecker({ interface: '198.18.0.1', advertising: true }, all);
    expect(only('198.18.0.77')).toBe(true);
    expect(only('::ffff:198.18.0.77')).toBe(true);
    expect(only('fd00:18::abcd')).toBe(true);
    expect(only('10.20.0.1')).toBe(false);
    expect(only('127.0.0.1')).toBe(false);
    const mgmt = onLinkChecker({ interface: '10.20.30.40', advertising: false }, all);
    expect(mgmt('10.20.0.1')).toBe(true);
    expect(mgmt('198.18.0.77')).toBe(false);
  });

  it('loopback counts only when the operator names it with --interface', () => {
    const lo = onLinkChecker({ interface: '127.0.0.1', advertising: false }, all);
    expect(lo('127.0.0.1')).toBe(true);
    expect(lo('198.18.0.77')).toBe(false);
  });

  it('with mDNS off and no --interface nothing is on-link (install mode needs --remote)', () => {
    const none = onLinkChecker({ advertising: false }, all);
    for (const a of ['127.0.0.1', '198.18.0.1', '10.20.0.1']) expect(none(a), a).toBe(false);
    expect(onLinkChecker({ advertising: true }, {})('198.18.0.1')).toBe(false);
  });

  it('an interface without cidr counts as its single address', () => {
    const bare = onLinkChecker({ advertising: true }, { eth0: [{ ...v4('192.0.2.5', 24), cidr: null }] });
    expect(bare('192.0.2.5')).toBe(true);
    expect(bare('192.0.2.6')).toBe(false);
  });
});

describe('normaliseAddress and hostAddresses', () => {
  it('strips the IPv4-mapped prefix only from a mapped IPv4 address', () => {
    expect(normaliseAddress('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(normaliseAddress('192.0.2.1')).toBe('192.0.2.1');
    expect(normaliseAddress('::ffff:abcd')).toBe('::ffff:abcd');
    expect(normaliseAddress('2001:db8::1')).toBe('2001:db8::1');
  });

  it('sourceKey: an IPv4 address, or the /64 of an IPv6 address', () => {
    expect(sourceKey('198.18.0.5')).toBe('198.18.0.5');
    expect(sourceKey('::ffff:198.18.0.5')).toBe('198.18.0.5');
    expect(sourceKey('2001:db8:1:2::10')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:0db8:0001:0002:ffff:1:2:3')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
    expect(sourceKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });

  it('lists every interface address once, skipping scoped ones', () => {
    const list = hostAddresses({ ...IFACES, dup: [v4('198.18.0.1', 24)], ll: [v6('fe80::1%eth0', 64)] });
    expect(list).toEqual(['127.0.0.1', '::1', '198.18.0.1', 'fd00:18::1', '10.20.30.40']);
  });
});
