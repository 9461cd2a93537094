// The received-packet path without a socket (issue 8 hole 1): a forged answer from off the link or from
// a port other than 5353 never reaches a browser, a legacy query gets a unicast answer (RFC 6762 §6.7),
// and a throwing handler is reported, never thrown into the socket.
import { describe, expect, it } from 'vitest';
import { Browser } from '../../src/advertiser/browser.js';
import type { Discovered } from '../../src/advertiser/browse-cache.js';
import { legacyResponse, LEGACY_TTL_MAX_S } from '../../src/advertiser/legacy.js';
import { linkOf, onSubnet } from '../../src/advertiser/link.js';
import { Receiver, type ReceiverHost, type Source } from '../../src/advertiser/receiver.js';
import { buildRecords, type DnsPacket, type DnsRecord } from '../../src/advertiser/records.js';
import { nodeTxt } from '../../src/advertiser/txt.js';
import { FakeBrowserHost } from './fakes.js';

const KEY = 'A'.repeat(42) + 'E';
const forged = buildRecords({
  kind: 'muster-join',
  name: 'victim-1',
  host: 'victim-1.local',
  port: 9,
  txt: nodeTxt({ v: 1, name: 'victim-1', role: 'worker', cluster: '', key: KEY, state: 'ready' }),
  addresses: ['198.18.1.10'],
});
const answer: DnsPacket = {
  type: 'response',
  answers: [forged.ptr],
  additionals: [forged.srv, forged.txt, ...forged.a],
};
const registrarRecords = buildRecords({
  kind: 'muster',
  name: 'r-1',
  host: 'r-1.local',
  port: 8443,
  txt: { v: '1', mode: 'closed' },
  addresses: ['198.18.0.10'],
});
const published: DnsRecord[] = [
  registrarRecords.ptr,
  registrarRecords.srv,
  registrarRecords.txt,
  ...registrarRecords.a,
  registrarRecords.meta,
];

const LAN: Source = { address: '198.18.0.11', port: 5353 };
const FAR: Source = { address: '198.18.1.10', port: 5353 };

function setup() {
  const link = linkOf({
    eth0: [{ address: '198.18.0.10', family: 'IPv4', internal: false, cidr: '198.18.0.10/24' }],
  });
  const bhost = new FakeBrowserHost();
  const heard: Discovered[] = [];
  const browser = new Browser(bhost, '_muster-join._tcp.local', {
    up: (s) => heard.push(s),
    update: (s) => heard.push(s),
  });
  const probes: string[] = [];
  const responses: string[] = [];
  const pub = {
    onResponse: (_r: readonly DnsRecord[], from: string, own: boolean) => responses.push(`${from} ${own}`),
    onProbe: (_a: readonly DnsRecord[], from: string) => probes.push(from),
  };
  const logs: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
  const log =
    (level: string) =>
    (obj: Record<string, unknown>, msg: string): void => {
      logs.push({ level, msg, obj });
    };
  const multicast: DnsPacket[] = [];
  const unicast: { packet: DnsPacket; to: Source }[] = [];
  const failures: string[] = [];
  const host: ReceiverHost = {
    log: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
    onLink: (a) => onSubnet(link.subnets, a),
    isOwnAddress: (a) => a === '198.18.0.10',
    publications: () => [pub],
    browsers: () => [browser],
    answer: (q) => multicast.push(q),
    publishedRecords: () => published,
    sendUnicast: (packet, to) => unicast.push({ packet, to }),
    handlerFailed: (what, err) => failures.push(`${what}: ${String(err)}`),
  };
  return {
    r: new Receiver(host),
    heard,
    probes,
    responses,
    logs,
    multicast,
    unicast,
    failures,
    clock: bhost.clock,
  };
}

describe('Receiver: the link check (RFC 6762 §11, §5.5, §6)', () => {
  it('a forged join answer unicast from the far subnet reaches no browser; the same from the LAN does', () => {
    const t = setup();
    t.r.onPacket(answer, FAR);
    expect(t.heard).toEqual([]);
    expect(t.responses).toEqual([]); // nor the conflict check of a publication
    expect(t.r.dropped['off-link']).toBe(1);
    const warn = t.logs.filter((l) => l.level === 'warn');
    expect(warn).toHaveLength(1);
    expect(warn[0]).toMatchObject({ obj: { from: FAR.address, port: 5353 } });
    expect(warn[0]?.msg).toMatch(/off the link/);

    t.r.onPacket(answer, LAN); // the control: the packet itself is a valid advertisement
    expect(t.heard.map((s) => s.name)).toEqual(['victim-1']);
    expect(t.responses).toEqual(['198.18.0.11 false']);
  });

  it('a response from a port other than 5353 is dropped even from the LAN', () => {
    const t = setup();
    t.r.onPacket(answer, { address: LAN.address, port: 40_000 });
    expect(t.heard).toEqual([]);
    expect(t.r.dropped['bad-port']).toBe(1);
    expect(t.logs.find((l) => l.level === 'warn')?.msg).toMatch(/source port other than 5353/);
  });

  it('logs a flood once per source, counting every packet', () => {
    const t = setup();
    for (let i = 0; i < 1000; i++) t.r.onPacket(answer, FAR);
    t.r.onPacket(answer, { address: '203.0.113.5', port: 5353 });
    expect(t.r.dropped['off-link']).toBe(1001);
    expect(t.logs.filter((l) => l.level === 'warn').map((l) => l.obj.from)).toEqual([
      FAR.address,
      '203.0.113.5',
    ]);
  });

  it('queries from the LAN on 5353 go to the responder and the probe tie-break; from off the link, nowhere', () => {
    const t = setup();
    const probe: DnsPacket = {
      type: 'query',
      questions: [{ name: registrarRecords.fqdn, type: 'ANY' }],
      authorities: [registrarRecords.srv],
    };
    t.r.onPacket(probe, FAR);
    expect([t.multicast, t.probes, t.unicast]).toEqual([[], [], []]);
    t.r.onPacket(probe, LAN);
    expect(t.multicast).toHaveLength(1);
    expect(t.probes).toEqual([LAN.address]);
    expect(t.unicast).toEqual([]);
  });
});

describe('Receiver: legacy unicast queries (RFC 6762 §6.7)', () => {
  it('are answered by unicast to the source port, with the ID and question, no cache-flush, TTL <= 10 s', () => {
    const t = setup();
    const q: DnsPacket = {
      type: 'query',
      id: 4242,
      questions: [{ name: '_muster._tcp.local', type: 'PTR' }],
    };
    const from = { address: LAN.address, port: 41_234 };
    t.r.onPacket(q, from);
    expect(t.multicast).toEqual([]); // not by multicast: the resolver listens on its own port only
    expect(t.unicast).toHaveLength(1);
    const { packet, to } = t.unicast[0]!;
    expect(to).toEqual(from);
    expect(packet.id).toBe(4242);
    expect(packet.questions).toEqual(q.questions);
    expect(packet.answers?.map((r) => `${r.type} ${String(r.data)}`)).toEqual([
      `PTR ${registrarRecords.fqdn}`,
    ]);
    expect(packet.additionals?.map((r) => r.type).sort()).toEqual(['A', 'SRV', 'TXT']);
    for (const r of [...(packet.answers ?? []), ...(packet.additionals ?? [])]) {
      expect(r.flush).toBeUndefined();
      expect(r.ttl).toBeLessThanOrEqual(LEGACY_TTL_MAX_S);
    }
  });

  it('get no answer for names we do not hold, and none from off the link', () => {
    const t = setup();
    t.r.onPacket(
      { type: 'query', id: 1, questions: [{ name: '_http._tcp.local', type: 'PTR' }] },
      {
        address: LAN.address,
        port: 41_234,
      },
    );
    t.r.onPacket(
      { type: 'query', id: 1, questions: [{ name: '_muster._tcp.local', type: 'PTR' }] },
      {
        address: FAR.address,
        port: 41_234,
      },
    );
    expect(t.unicast).toEqual([]);
    expect(legacyResponse({ questions: [{ name: 'r-1.local', type: 'A' }] }, published)?.answers).toEqual([
      { name: 'r-1.local', type: 'A', ttl: 10, data: '198.18.0.10' },
    ]);
  });
});

describe('Receiver: untrusted shapes and failing handlers', () => {
  it('drops records that are not objects with a string name and type, and never throws', () => {
    const t = setup();
    const weird = {
      type: 'response',
      answers: [null, 7, { name: 5, type: 'PTR' }, { type: 'SRV' }, forged.ptr],
      additionals: 'not a list',
    } as unknown as DnsPacket;
    expect(() => t.r.onPacket(weird, LAN)).not.toThrow();
    expect(() => t.r.onPacket(null as unknown as DnsPacket, LAN)).not.toThrow();
    expect(() => t.r.onPacket(answer, undefined as unknown as Source)).not.toThrow();
    expect(t.failures).toEqual([]);
  });

  it('a handler that throws is reported and the others still run', () => {
    const t = setup();
    const host = (t.r as unknown as { host: ReceiverHost }).host;
    const seen: string[] = [];
    (host as { browsers: ReceiverHost['browsers'] }).browsers = () => [
      {
        onResponse: () => {
          throw new Error('boom');
        },
      },
      { onResponse: () => seen.push('second') },
    ];
    t.r.onPacket(answer, LAN);
    expect(t.failures).toEqual(['browser: Error: boom']);
    expect(seen).toEqual(['second']);
  });
});
