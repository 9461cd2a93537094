// Proves the netns test network (test/helpers/netlan.ts) before anything relies on it: unicast works
// within the LAN and across the router, multicast stays on its link, and destroy() leaves nothing behind.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestLan,
  netnsSuite,
  startMulticastSniffer,
  type LanHost,
  type TestLan,
} from './helpers/netlan.js';

const gate = netnsSuite('test/netlan.test.ts', 'netlan');

function netnsList(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean);
}

// A TCP echo server in a namespace; prints "listening" once bound.
const ECHO_SERVER = `
const net = require('node:net');
const srv = net.createServer((s) => s.pipe(s));
srv.listen(Number(process.env.PORT), '0.0.0.0', () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
`;
const ECHO_CLIENT = `
const net = require('node:net');
const s = net.connect(Number(process.env.PORT), process.env.TARGET, () => s.end('hello ' + process.env.TARGET));
let got = '';
s.setEncoding('utf8').on('data', (d) => (got += d)).on('end', () => { console.log(got); process.exit(0); });
s.on('error', (e) => { console.error(e.message); process.exit(1); });
setTimeout(() => { console.error('timeout'); process.exit(2); }, 3000);
`;
const MCAST_SEND = `
const dgram = require('node:dgram');
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
s.bind(0, () => {
  s.setMulticastInterface(process.env.IFACE);
  s.setMulticastTTL(255); // as far as it could possibly go: only the absence of multicast routing stops it
  s.send(Buffer.from(process.env.MARK), 5353, '224.0.0.251', (err) => { if (err) { console.error(err.message); process.exit(1); } s.close(); });
});
`;

function waitForLine(child: ChildProcess, text: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no '${text}' within ${ms} ms: ${out}`)), ms);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

describe.skipIf(gate.skip)('netlan: a namespace LAN with a routed far subnet', () => {
  let lan: TestLan;
  let a: LanHost;
  let b: LanHost;
  let far: LanHost;

  beforeAll(async () => {
    lan = await createTestLan();
    a = await lan.addHost('a', 'lan');
    b = await lan.addHost('b', 'lan');
    far = await lan.addHost('far', 'far');
  });
  afterAll(async () => {
    await lan?.destroy();
  });

  it('allocates addresses on the right subnets and names namespaces with the run prefix', () => {
    expect(a.ip).toBe('198.18.0.10');
    expect(b.ip).toBe('198.18.0.11');
    expect(far.ip).toBe('198.18.1.10');
    for (const h of [a, b, far]) expect(h.ns.startsWith(`${lan.prefix}-`)).toBe(true);
    expect(netnsList()).toEqual(expect.arrayContaining([a.ns, b.ns, far.ns, lan.routerNs]));
  });

  it('sets up each host: lo up, default route via the router, a 224.0.0.0/4 route on eth0', async () => {
    const routes = await a.exec('ip', ['route', 'show']);
    expect(routes.stdout).toMatch(/default via 198\.18\.0\.1 dev eth0/);
    expect(routes.stdout).toMatch(/224\.0\.0\.0\/4 dev eth0/);
    const lo = await a.exec('ip', ['-o', 'link', 'show', 'lo']);
    expect(lo.stdout).toMatch(/UP/);
  });

  it('LAN hosts reach each other, and a far host reaches a LAN host through the router (TCP echo)', async () => {
    const server = b.spawn(process.execPath, ['-e', ECHO_SERVER], { env: { ...process.env, PORT: '7007' } });
    await waitForLine(server, 'listening', 5000);
    for (const from of [a, far]) {
      const r = await from.exec('env', [`PORT=7007`, `TARGET=${b.ip}`, process.execPath, '-e', ECHO_CLIENT]);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(`hello ${b.ip}`);
    }
    // and back: the LAN host reaches the far host
    const farServer = far.spawn(process.execPath, ['-e', ECHO_SERVER], {
      env: { ...process.env, PORT: '7008' },
    });
    await waitForLine(farServer, 'listening', 5000);
    const back = await a.exec('env', [`PORT=7008`, `TARGET=${far.ip}`, process.execPath, '-e', ECHO_CLIENT]);
    expect(back.stdout.trim()).toBe(`hello ${far.ip}`);
  });

  it('multicast sent on the LAN reaches a LAN sniffer and never the far subnet', async () => {
    const lanSniffer = await startMulticastSniffer(b);
    const farSniffer = await startMulticastSniffer(far);
    try {
      const mark = `netlan-mark-${process.pid}`;
      const sent = await a.exec('env', [`IFACE=${a.ip}`, `MARK=${mark}`, process.execPath, '-e', MCAST_SEND]);
      expect(sent.stderr).toBe('');
      const hex = Buffer.from(mark).toString('hex');
      const got = await lanSniffer.waitFor((p) => p.hex === hex, 3000);
      expect(got.from).toBe(a.ip);
      // Give the far side ample time: it must stay silent.
      await new Promise((r) => setTimeout(r, 1000));
      expect(farSniffer.packets().filter((p) => p.hex === hex)).toEqual([]);
    } finally {
      await lanSniffer.stop();
      await farSniffer.stop();
    }
  });

  it('destroy() kills spawned processes, removes every namespace it made, and is idempotent', async () => {
    const other = await createTestLan();
    const h = await other.addHost('x', 'lan');
    const sleeper = h.spawn('sleep', ['60']);
    expect(netnsList()).toContain(h.ns);
    await other.destroy();
    await other.destroy();
    expect(sleeper.exitCode !== null || sleeper.signalCode !== null).toBe(true);
    expect(netnsList().filter((n) => n.startsWith(`${other.prefix}-`))).toEqual([]);
    // The first LAN is untouched.
    expect(netnsList()).toContain(a.ns);
  });
});
