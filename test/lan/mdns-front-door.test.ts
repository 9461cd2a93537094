/**
 * The mDNS side of the front door (issue 8) on the test LAN: the real CLI (dist/cli/main.js) in
 * network namespaces on 198.18.0.0/24, a far subnet 198.18.1.0/24 behind a router that forwards
 * unicast but no multicast. Nothing here sends a packet outside those namespaces.
 *
 * - Hole 1: a host in the far subnet unicasts a forged `_muster-join._tcp` answer straight to the
 *   registrar's UDP 5353; an on-link host sends one from a port other than 5353. The registrar records
 *   neither (RFC 6762 §11, §6). The same packet from an on-link host on port 5353 is the control: it is
 *   heard, so the packet itself is a valid advertisement. A one-shot (legacy) query from another port
 *   still gets its unicast answer (§6.7).
 * - `install-mode off` is announced: an independent browser (python-zeroconf) that keeps running sees
 *   mode=open, then closed, then open, then closed again when `--for 2s` runs out.
 * - The network is not up at boot: the registrar serves HTTPS at once, warns, and publishes once its
 *   interface gets an address (a few seconds later).
 *
 * MUSTER_LAN_BIN runs these against another build of the CLI (e.g. the old main, to see them fail).
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { BIN } from '../helpers/cli.js';
import { netnsSuite, registrarReady, testLanFixture, type LanHost } from '../helpers/netlan.js';
import { buildRecords, type DnsPacket } from '../../src/advertiser/records.js';
import { nodeTxt } from '../../src/advertiser/txt.js';
import { startIndependentBrowser, type IndependentBrowser } from '../advertiser/zeroconf.js';

const CLI = process.env.MUSTER_LAN_BIN ?? BIN;
const dnsPacket = createRequire(import.meta.url)('dns-packet') as {
  encode(p: DnsPacket): Buffer;
  decode(b: Buffer): DnsPacket;
};
const gate = netnsSuite('test/lan/mdns-front-door.test.ts');

interface Reg {
  host: LanHost;
  child: ChildProcess;
  id: string;
  sock: string;
  out: () => string;
  /** The registrar's JSON log lines so far. */
  logs: () => { msg?: string; [k: string]: unknown }[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const fp = (seed: string): string => createHash('sha256').update(seed).digest('base64url');

/**
 * Sends one datagram (hex) from `port` (5353, or 0 for an ephemeral one) to `to`:5353, `count` times,
 * then listens `listenMs` for replies; prints each reply as a JSON line. Runs inside a namespace.
 */
const SENDER = `
const dgram = require('node:dgram');
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  const o = JSON.parse(input);
  const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  s.on('error', (e) => { process.stderr.write(String(e) + '\\n'); process.exit(1); });
  s.on('message', (m, r) => process.stdout.write(JSON.stringify({ from: r.address, port: r.port, hex: m.toString('hex') }) + '\\n'));
  s.bind(o.port, '0.0.0.0', () => {
    const msg = Buffer.from(o.hex, 'hex');
    let n = 0;
    const tick = () => {
      s.send(msg, 5353, o.to, (err) => err && process.stderr.write(String(err) + '\\n'));
      if (++n < o.count) setTimeout(tick, o.intervalMs);
      else setTimeout(() => s.close(), o.listenMs);
    };
    tick();
  });
});
`;

async function sendDatagram(
  from: LanHost,
  o: { packet: DnsPacket; port: number; to: string; count?: number; intervalMs?: number; listenMs?: number },
): Promise<{ from: string; port: number; packet: DnsPacket }[]> {
  const r = await from.exec(process.execPath, ['-e', SENDER], {
    input: JSON.stringify({
      hex: dnsPacket.encode(o.packet).toString('hex'),
      port: o.port,
      to: o.to,
      count: o.count ?? 3,
      intervalMs: o.intervalMs ?? 200,
      listenMs: o.listenMs ?? 0,
    }),
    timeoutMs: 15_000,
  });
  if (r.code !== 0) throw new Error(`sender in ${from.name} failed (${r.code}): ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const m = JSON.parse(l) as { from: string; port: number; hex: string };
      return { from: m.from, port: m.port, packet: dnsPacket.decode(Buffer.from(m.hex, 'hex')) };
    });
}

/** A `_muster-join._tcp` announcement for `name` at `address`, as a node would send it. */
function joinAnnouncement(name: string, address: string): DnsPacket {
  const r = buildRecords({
    kind: 'muster-join',
    name,
    host: `${name}.local`,
    port: 9,
    txt: nodeTxt({ v: 1, name, role: 'worker', cluster: '', key: fp(name), state: 'ready' }),
    addresses: [address],
  });
  return { type: 'response', answers: [r.ptr], additionals: [r.srv, r.txt, ...r.a] };
}

describe.skipIf(gate.skip)('the mDNS side of the front door on a test LAN (issue 8)', () => {
  const fx = testLanFixture('muster-lan-door-');
  let n = 0;
  const children = new Set<ChildProcess>();
  const browsers = new Set<IndependentBrowser>();

  afterEach(async () => {
    for (const b of browsers) await b.stop();
    browsers.clear();
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await exited;
      }
    }
    children.clear();
  });

  const host = (where: 'lan' | 'far' = 'lan'): Promise<LanHost> => fx.lan.addHost(`d${++n}`, where);

  /** Starts `muster registrar` in `h`; resolves at "registrar ready" (or rejects with its output). */
  async function startReg(h: LanHost, cluster: string, opts: { iface?: boolean } = {}): Promise<Reg> {
    const dir = path.join(fx.dir, `reg-${h.name}`);
    const sock = path.join(fx.dir, `${h.name}.sock`);
    const args = [CLI, 'registrar', '--listen', '0.0.0.0:8443', '--cluster', cluster];
    if (opts.iface !== false) args.push('--interface', h.ip);
    args.push('--state-dir', dir, '--admin-socket', sock);
    const child = h.spawn(process.execPath, args, {
      env: { ...process.env, MUSTER_LOG_FORMAT: 'json', MUSTER_LOG_LEVEL: 'info' },
    });
    children.add(child);
    const { ready, out } = await registrarReady<{ id: string }>(child, `registrar in ${h.name}`);
    const logs = (): { msg?: string }[] =>
      out()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg?: string });
    return { host: h, child, id: ready.id, sock, out, logs };
  }

  const admin = async (r: Reg, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    // The admin socket is a file: reach it from this process, with the same CLI build.
    const res = spawnSync(process.execPath, [CLI, ...args, '--admin-socket', r.sock], {
      encoding: 'utf8',
      env: { ...process.env, MUSTER_LOG_FORMAT: 'json' },
      timeout: 30_000,
    });
    return { code: res.status ?? -1, stdout: res.stdout, stderr: res.stderr };
  };
  const nodeNames = async (r: Reg): Promise<string[]> => {
    const res = await admin(r, ['nodes', 'list', '--json']);
    expect(res.code, res.stderr).toBe(0);
    const j = JSON.parse(res.stdout) as { items?: { name: string }[]; nodes?: { name: string }[] };
    return (j.items ?? j.nodes ?? []).map((x) => x.name);
  };
  const until = async (what: string, ms: number, fn: () => Promise<boolean>): Promise<void> => {
    const end = Date.now() + ms;
    while (!(await fn())) {
      if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
      await sleep(200);
    }
  };

  it('hole 1: a forged join answer from the far subnet, or from a port other than 5353, is not heard', async () => {
    const reg = await startReg(await host(), 'door');
    const far = await host('far');
    const near = await host();

    // The attack: a host behind the router unicasts its "advertisement" to the registrar's 5353.
    await sendDatagram(far, { packet: joinAnnouncement('far-forged', far.ip), port: 5353, to: reg.host.ip });
    // An on-link host, but not from port 5353: not an mDNS responder's answer (RFC 6762 §6).
    await sendDatagram(near, { packet: joinAnnouncement('port-forged', near.ip), port: 0, to: reg.host.ip });
    // The control, the same packet from an on-link host's 5353: heard, so the packets above are valid.
    await sendDatagram(near, {
      packet: joinAnnouncement('near-control', near.ip),
      port: 5353,
      to: reg.host.ip,
    });
    await until('the control advertisement is heard', 10_000, async () =>
      (await nodeNames(reg)).includes('near-control'),
    );
    await sleep(1000); // anything still in flight from the forged ones
    const names = await nodeNames(reg);
    expect(names).not.toContain('far-forged');
    expect(names).not.toContain('port-forged');
    const drops = reg.logs().filter((l) => /ignoring mDNS (packets|responses)/.test(l.msg ?? ''));
    expect(drops.map((l) => [l.from, l.port])).toEqual(
      expect.arrayContaining([
        [far.ip, 5353],
        [near.ip, expect.any(Number)],
      ]),
    );

    // A one-shot resolver (a query from another port to 224.0.0.251) is answered, by unicast (§6.7).
    const replies = await sendDatagram(near, {
      packet: { type: 'query', id: 4711, questions: [{ name: '_muster._tcp.local', type: 'PTR' }] },
      port: 0,
      to: '224.0.0.251',
      count: 1,
      listenMs: 2000,
    });
    const answer = replies.find((r) => r.from === reg.host.ip);
    expect(answer, JSON.stringify(replies)).toBeDefined();
    expect(answer!.port).toBe(5353);
    expect(answer!.packet.id).toBe(4711);
    expect(answer!.packet.answers?.map((a) => [a.type, a.data])).toEqual([
      ['PTR', `${reg.id}._muster._tcp.local`],
    ]);
    for (const a of [...(answer!.packet.answers ?? []), ...(answer!.packet.additionals ?? [])])
      expect(a.ttl).toBeLessThanOrEqual(10);
  });

  it('install mode on, off, and its expiry reach a browser that keeps running (python-zeroconf, not ours)', async () => {
    const reg = await startReg(await host(), 'toggle');
    const browser = await startIndependentBrowser(await host(), 'muster');
    browsers.add(browser);
    console.log(`[lan] independent browser: ${browser.kind}`);
    const mine = (e: { name: string }): boolean => e.name === reg.id;
    const modeSeen =
      (mode: string, after: number) =>
      (e: { name: string; ev: string; txt: Record<string, string | null>; t: number }) =>
        mine(e) && e.ev !== 'removed' && e.t >= after && e.txt.mode === mode;

    await browser.waitFor(modeSeen('closed', 0), 10_000, 'the registrar with mode=closed');
    let t0 = Date.now();
    expect((await admin(reg, ['install-mode', 'on', '--for', '10m'])).code).toBe(0);
    await browser.waitFor(modeSeen('open', t0), 8000, 'mode=open after install-mode on');
    t0 = Date.now();
    expect((await admin(reg, ['install-mode', 'off'])).code).toBe(0);
    await browser.waitFor(modeSeen('closed', t0), 8000, 'mode=closed after install-mode off');
    t0 = Date.now();
    expect((await admin(reg, ['install-mode', 'on', '--for', '2s'])).code).toBe(0);
    await browser.waitFor(modeSeen('open', t0), 8000, 'mode=open after install-mode on --for 2s');
    t0 = Date.now();
    await browser.waitFor(modeSeen('closed', t0), 10_000, 'mode=closed when the 2 s ran out');
    // Each change was an update of the running service, never a goodbye and a new service.
    expect(browser.events.filter((e) => mine(e) && e.ev === 'removed')).toEqual([]);
    expect(browser.events.filter((e) => mine(e) && e.ev === 'added')).toHaveLength(1);
  });

  it('the network is not up at boot: HTTPS at once, a warning, and the advertisement once an address appears', async () => {
    const h = await host();
    const browser = await startIndependentBrowser(await host(), 'muster');
    browsers.add(browser);
    // Boot before the network: no address and no route on the registrar's only link.
    expect((await h.exec('ip', ['addr', 'flush', 'dev', 'eth0'])).code).toBe(0);
    const reg = await startReg(h, 'late', { iface: false });
    const warned = reg.logs().find((l) => /no IPv4 address yet/.test(l.msg ?? ''));
    expect(warned, reg.out()).toBeDefined();
    expect(warned!.level === 'warn' || warned!.level === 40).toBe(true);

    // HTTPS is served at once (from inside the namespace, the only address it has is loopback).
    const info = await h.exec(process.execPath, [
      '-e',
      "require('node:https').get({host:'127.0.0.1',port:8443,path:'/v1/info',rejectUnauthorized:false},(r)=>{let b='';r.on('data',(d)=>b+=d);r.on('end',()=>{console.log(r.statusCode+' '+b)})}).on('error',(e)=>{console.log('ERR '+e.message);process.exit(1)})",
    ]);
    expect(info.stdout, info.stderr).toMatch(/^200 /);
    expect(JSON.parse(info.stdout.slice(4)).cluster).toBe('late');

    await sleep(3000);
    expect(reg.child.exitCode).toBeNull(); // no restart loop
    expect(browser.events.filter((e) => e.name === reg.id)).toEqual([]); // nothing to see yet

    // DHCP answers: the address and the routes arrive.
    const t0 = Date.now();
    for (const args of [
      ['addr', 'add', `${h.ip}/24`, 'dev', 'eth0'],
      ['route', 'add', 'default', 'via', '198.18.0.1'],
      ['route', 'add', '224.0.0.0/4', 'dev', 'eth0'],
    ])
      expect((await h.exec('ip', args)).code).toBe(0);
    const seen = await browser.waitFor(
      (e) => e.name === reg.id && e.ev !== 'removed' && e.txt.cluster === 'late',
      15_000,
      'the registrar advertisement after the address appeared',
    );
    console.log(`[bench] address up -> advertisement seen by a browser: ${seen.t - t0} ms`);
    expect(seen.addresses).toContain(h.ip);
    expect(reg.child.exitCode).toBeNull();
  });
});
