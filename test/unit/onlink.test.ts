// "On the local link" (src/registrar/onlink.ts, DESIGN "Admission policy", install mode), with a fake
// interface table instead of the machine's.
import type { NetworkInterfaceInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { normaliseAddress } from '../../src/common/net.js';
import { hostAddresses, onLinkChecker, type LinkInterfaces } from '../../src/registrar/onlink.js';

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

describe('onLinkChecker', () => {
  const onLink = onLinkChecker(undefined, IFACES);

  it('counts loopback as local', () => {
    expect(onLink('127.0.0.1')).toBe(true);
    expect(onLink('127.1.2.3')).toBe(true);
    expect(onLink('::1')).toBe(true);
  });

  it('counts an address inside an interface subnet, host bits of the interface notwithstanding', () => {
    expect(onLink('198.18.0.1')).toBe(true);
    expect(onLink('198.18.0.77')).toBe(true);
    expect(onLink('198.18.0.255')).toBe(true);
    expect(onLink('10.20.0.1')).toBe(true);
    expect(onLink('10.20.255.254')).toBe(true);
    expect(onLink('fd00:18::abcd')).toBe(true);
  });

  it('does not count an address outside every subnet', () => {
    expect(onLink('198.18.1.1')).toBe(false);
    expect(onLink('198.19.0.1')).toBe(false);
    expect(onLink('10.21.0.1')).toBe(false);
    expect(onLink('203.0.113.9')).toBe(false);
    expect(onLink('fd00:19::1')).toBe(false);
    expect(onLink('2001:db8::1')).toBe(false);
  });

  it('normalises IPv4-mapped IPv6 addresses (a dual-stack socket)', () => {
    expect(onLink('::ffff:198.18.0.77')).toBe(true);
    expect(onLink('::ffff:127.0.0.1')).toBe(true);
    expect(onLink('::ffff:203.0.113.9')).toBe(false);
  });

  it('is false for garbage, never throws', () => {
    for (const a of ['', 'garbage', '198.18.0', '198.18.0.1.5', '999.1.1.1', '::ffff:', '::ffff:nothing', 'fe80::1%eth0x', ' 198.18.0.2']) {
      expect(() => onLink(a)).not.toThrow();
      expect(onLink(a), a).toBe(false);
    }
  });

  it('`only` restricts the link to one interface, loopback still counting', () => {
    const only = onLinkChecker('198.18.0.1', IFACES);
    expect(only('198.18.0.77')).toBe(true);
    expect(only('::ffff:198.18.0.77')).toBe(true);
    expect(only('10.20.0.1')).toBe(false);
    expect(only('fd00:18::abcd')).toBe(false);
    expect(only('127.0.0.1')).toBe(true);
    const mgmt = onLinkChecker('10.20.30.40', IFACES);
    expect(mgmt('10.20.0.1')).toBe(true);
    expect(mgmt('198.18.0.77')).toBe(false);
  });

  it('with no interfaces nothing is on-link', () => {
    const none = onLinkChecker(undefined, {});
    expect(none('127.0.0.1')).toBe(false);
    expect(none('198.18.0.1')).toBe(false);
  });

  it('an interface without cidr counts as its single address', () => {
    const bare = onLinkChecker(undefined, { eth0: [{ ...v4('192.0.2.5', 24), cidr: null }] });
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

  it('lists every interface address once, skipping scoped ones', () => {
    const list = hostAddresses({ ...IFACES, dup: [v4('198.18.0.1', 24)], ll: [v6('fe80::1%eth0', 64)] });
    expect(list).toEqual(['127.0.0.1', '::1', '198.18.0.1', 'fd00:18::1', '10.20.30.40']);
  });
});
