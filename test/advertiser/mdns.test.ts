// Real mDNS between processes in network namespaces (DESIGN "Testing the network for real"): nothing
// here opens a socket outside the namespaces that test/helpers/netlan.ts creates.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestLan,
  netnsSuite,
  startMulticastSniffer,
  type LanHost,
  type TestLan,
} from '../helpers/netlan.js';
import { nodeTxt, registrarTxt, validateNodeTxt, decodeTxt } from '../../src/advertiser/txt.js';
import { buildRecords, type DnsPacket } from '../../src/advertiser/records.js';
import { ensureAdvertiserBuilt, MdnsProc } from './driver.js';

const gate = netnsSuite('test/advertiser/mdns.test.ts', 'mdns');
const fp = (seed: string): string => createHash('sha256').update(seed).digest('base64url');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const dnsPacket = createRequire(import.meta.url)('dns-packet') as { encode(p: DnsPacket): Buffer };

/**
 * Sends each packet (hex) `copies` times, one packet's copies after the other, from UDP 5353 (an mDNS
 * response must come from 5353, RFC 6762 §6) to `to`:5353 as fast as the socket takes them; prints
 * how many went out. Runs inside a namespace.
 */
const BURST = `
const dgram = require('node:dgram');
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  const o = JSON.parse(input);
  const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  s.bind(5353, '0.0.0.0', async () => {
    let n = 0;
    for (const hex of o.packets) {
      const msg = Buffer.from(hex, 'hex');
      for (let i = 0; i < o.copies; i++) {
        await new Promise((r, j) => s.send(msg, 5353, o.to, (e) => (e ? j(e) : r())));
        n++;
      }
    }
    console.log(n);
    s.close();
  });
});
`;

describe.skipIf(gate.skip)('mdns publish/browse on a netns LAN', () => {
  let lan: TestLan;
  let a: LanHost;
  let b: LanHost;
  let c: LanHost;
  let far: LanHost;
  let procs: MdnsProc[] = [];
  let seq = 0;
  const uniq = (base: string): string => `${base}${++seq}`;

  const start = async (host: LanHost, opts?: Parameters<typeof MdnsProc.start>[1]): Promise<MdnsProc> => {
    const p = await MdnsProc.start(host, opts);
    procs.push(p);
    return p;
  };

  beforeAll(async () => {
    ensureAdvertiserBuilt();
    lan = await createTestLan();
    a = await lan.addHost('a', 'lan');
    b = await lan.addHost('b', 'lan');
    c = await lan.addHost('c', 'lan');
    far = await lan.addHost('far', 'far');
  });
  afterEach(async () => {
    await Promise.all(procs.map((p) => p.terminate()));
    procs = [];
  });
  afterAll(async () => {
    await lan?.destroy();
  });

  it('a browser on the LAN sees a node with its TXT, its own <name>.local host and a usable address', async () => {
    const name = uniq('node');
    const txt = nodeTxt({ v: 1, name, role: 'worker', cluster: '', key: fp(name), state: 'ready' });
    const pub = await start(a);
    const browser = await start(b);
    await browser.call('browse', { browse: 'j', type: 'muster-join' });
    const res = (await pub.call('publish', {
      pub: 'p',
      spec: { type: 'muster-join', name, port: 8443, txt },
    })) as { host: string };
    expect(res.host).toBe(`${name}.local`); // derived from the instance, never os.hostname()

    const up = await browser.waitFor((e) => e.ev === 'up' && e.service.name === name, 5000, 'up');
    if (up.ev !== 'up') throw new Error('unreachable');
    expect(up.service.host).toBe(`${name}.local`);
    expect(up.service.port).toBe(8443);
    expect(up.service.addresses).toEqual([a.ip]);
    expect(up.service.txt).toEqual(txt);
    expect(up.service.txt.cluster).toBe(''); // the empty value bonjour-service's decoder mangles
    const check = validateNodeTxt(decodeTxt(up.service.rawTxt.map((h) => Buffer.from(h, 'hex'))));
    expect(check.ok).toBe(true);
    expect(pub.errors()).toEqual([]);
  });

  it('a TXT update reaches a running browser as one update, with no down/up in between', async () => {
    const name = uniq('node');
    const base = { v: 1 as const, name, role: 'worker', cluster: 'edge', key: fp(name) };
    const pub = await start(a);
    const browser = await start(b);
    await browser.call('browse', { browse: 'j', type: 'muster-join' });
    await pub.call('publish', {
      pub: 'p',
      spec: { type: 'muster-join', name, port: 9000, txt: nodeTxt({ ...base, state: 'ready' }) },
    });
    await browser.waitFor((e) => e.ev === 'up' && e.service.name === name, 5000, 'up');
    await pub.waitFor((e) => e.ev === 'announced', 3000, 'announced');

    // The update is announced at once (its schedule: test/advertiser/publication.test.ts); the browser
    // gets it from that announcement, long before its TTL or a re-query would bring it.
    await pub.call('updateTxt', { pub: 'p', txt: nodeTxt({ ...base, state: 'registered' }) });
    const upd = await browser.waitFor((e) => e.ev === 'update' && e.service.name === name, 3000, 'update');
    if (upd.ev !== 'update') throw new Error('unreachable');
    expect(upd.service.txt.state).toBe('registered');
    await sleep(2500); // the rest of the update's announcements (RFC 6762 §8.4), and any stale re-announcement
    const kinds = browser
      .serviceEvents('j')
      .filter((e) => e.service.name === name)
      .map((e) => `${e.ev}:${e.service.txt.state}`);
    expect(kinds).toEqual(['up:ready', 'update:registered']);
  });

  it('stop() sends a goodbye: the browser sees the service go', async () => {
    const name = uniq('reg');
    const pub = await start(a);
    const browser = await start(b);
    await browser.call('browse', { browse: 'r', type: 'muster' });
    const txt = registrarTxt({ v: 1, role: 'main', cluster: 'edge', ca: fp('ca'), mode: 'closed', id: name });
    await pub.call('publish', {
      pub: 'p',
      spec: { type: 'muster', name, port: 8443, txt, host: 'registrar.local' },
    });
    const up = await browser.waitFor((e) => e.ev === 'up' && e.service.name === name, 5000, 'up');
    if (up.ev === 'up') expect(up.service.host).toBe('registrar.local');
    await pub.call('stop', { pub: 'p' });
    expect(await pub.call('state', { pub: 'p' })).toBe('stopped');
    // Without the goodbye the PTR would live on for its TTL (75 minutes); its timing (sent at stop(),
    // down one second later, RFC 6762 §10.1) is unit-tested in publication.test.ts and browser.test.ts.
    await browser.waitFor((e) => e.ev === 'down' && e.service.name === name, 3000, 'down');
  });

  it('SIGTERM closes the advertiser: goodbyes are sent before the socket closes', async () => {
    const name = uniq('node');
    const pub = await start(a);
    const browser = await start(b);
    await browser.call('browse', { browse: 'j', type: 'muster-join' });
    const txt = nodeTxt({ v: 1, name, role: 'worker', cluster: '', key: fp(name), state: 'ready' });
    await pub.call('publish', { pub: 'p', spec: { type: 'muster-join', name, port: 9000, txt } });
    await browser.waitFor((e) => e.ev === 'up' && e.service.name === name, 5000, 'up');
    await pub.terminate();
    expect(pub.child.exitCode).toBe(0);
    expect(pub.events.some((e) => e.ev === 'closed')).toBe(true);
    await browser.waitFor((e) => e.ev === 'down' && e.service.name === name, 3000, 'down after SIGTERM');
  });

  it('a browser that starts later finds an existing service by querying', async () => {
    const name = uniq('node');
    const pub = await start(a);
    const txt = nodeTxt({ v: 1, name, role: 'worker', cluster: '', key: fp(name), state: 'ready' });
    await pub.call('publish', { pub: 'p', spec: { type: 'muster-join', name, port: 9000, txt } });
    await pub.waitFor((e) => e.ev === 'announced', 3000, 'announced');
    await sleep(3500); // all three announcements (RFC 6762 §8.3) are over
    const browser = await start(b);
    await browser.call('browse', { browse: 'j', type: 'muster-join' });
    await browser.waitFor((e) => e.ev === 'up' && e.service.name === name, 3000, 'up from a query answer');
    const list = (await browser.call('list', { browse: 'j' })) as { name: string }[];
    expect(list.map((s) => s.name)).toContain(name);
  });

  it('a browser in the far subnet never sees a LAN service (mDNS is link-local)', async () => {
    const name = uniq('node');
    const farBrowser = await start(far);
    await farBrowser.call('browse', { browse: 'j', type: 'muster-join' });
    const lanBrowser = await start(b);
    await lanBrowser.call('browse', { browse: 'j', type: 'muster-join' });
    const pub = await start(a);
    const txt = nodeTxt({ v: 1, name, role: 'worker', cluster: '', key: fp(name), state: 'ready' });
    await pub.call('publish', { pub: 'p', spec: { type: 'muster-join', name, port: 9000, txt } });
    await lanBrowser.waitFor((e) => e.ev === 'up' && e.service.name === name, 5000, 'LAN up');
    await sleep(2500); // re-queries at 1 s and 2 s from the far browser, announcements at 1 s and 2 s
    expect(farBrowser.serviceEvents('j')).toEqual([]);
  });

  it('two publishers on one LAN: each host name is its own <name>.local with its own address', async () => {
    const [n1, n2] = [uniq('node'), uniq('node')];
    const p1 = await start(a);
    const p2 = await start(c);
    const browser = await start(b);
    await browser.call('browse', { browse: 'j', type: 'muster-join' });
    for (const [p, n] of [
      [p1, n1],
      [p2, n2],
    ] as const) {
      const txt = nodeTxt({ v: 1, name: n, role: 'worker', cluster: '', key: fp(n), state: 'ready' });
      await p.call('publish', { pub: 'p', spec: { type: 'muster-join', name: n, port: 9000, txt } });
    }
    const got = new Map<string, { host: string; addresses: string[] }>();
    await browser.waitFor(
      (e) => {
        if (e.ev === 'up' || e.ev === 'update') got.set(e.service.name, e.service);
        return got.has(n1) && got.has(n2);
      },
      5000,
      'both up',
    );
    expect(got.get(n1)).toMatchObject({ host: `${n1}.local`, addresses: [a.ip] });
    expect(got.get(n2)).toMatchObject({ host: `${n2}.local`, addresses: [c.ip] });
  });

  it('a name conflict is an error, and the first owner keeps its advertisement (no goodbye for it)', async () => {
    const name = uniq('node');
    const first = await start(a);
    const browser = await start(b);
    await browser.call('browse', { browse: 'j', type: 'muster-join' });
    const txt = nodeTxt({ v: 1, name, role: 'worker', cluster: '', key: fp(name), state: 'ready' });
    await first.call('publish', { pub: 'p', spec: { type: 'muster-join', name, port: 9000, txt } });
    await first.waitFor((e) => e.ev === 'announced', 3000, 'announced');
    await browser.waitFor((e) => e.ev === 'up' && e.service.name === name, 5000, 'up');

    // A clone: same node name, another machine (its host name is the same `<name>.local`, too).
    const clone = await start(c);
    const txt2 = nodeTxt({ v: 1, name, role: 'worker', cluster: '', key: fp('other key'), state: 'ready' });
    await clone.call('publish', { pub: 'p', spec: { type: 'muster-join', name, port: 9001, txt: txt2 } });
    const err = await clone.waitFor((e) => e.ev === 'error', 3000, 'conflict error');
    if (err.ev !== 'error') throw new Error('unreachable');
    expect(err.code).toBe('MUSTER_ERR_MDNS_NAME_CONFLICT');
    expect(err.message).toContain(a.ip);
    await clone.waitFor((e) => e.ev === 'not-announced', 1000, 'whenAnnounced rejected');
    expect(await clone.call('state', { pub: 'p' })).toBe('conflict');
    await sleep(1500);
    const seen = browser.serviceEvents('j').filter((e) => e.service.name === name);
    expect(seen.map((e) => e.ev)).toEqual(['up']);
    expect(seen[0]?.service.addresses).toEqual([a.ip]);
    expect(first.errors()).toEqual([]);
  });

  it('with mDNS closed nothing more is sent: a sniffer on the LAN stays silent', async () => {
    const sniffer = await startMulticastSniffer(c);
    try {
      const p = await start(a);
      const name = uniq('node');
      const txt = nodeTxt({ v: 1, name, role: 'worker', cluster: '', key: fp(name), state: 'ready' });
      await p.call('publish', { pub: 'p', spec: { type: 'muster-join', name, port: 9000, txt } });
      await sniffer.waitFor((pk) => pk.from === a.ip && pk.response, 3000);
      await p.call('close');
      // The goodbyes close() sent may still be on their way to the sniffer (another process reporting
      // over a pipe): count from after they have landed.
      await sleep(500);
      const n = sniffer.packets().length;
      await sleep(2500); // past the remaining announcements
      expect(
        sniffer
          .packets()
          .slice(n)
          .filter((pk) => pk.from === a.ip),
      ).toEqual([]);
    } finally {
      await sniffer.stop();
    }
  });

  it('UDP 5353 held exclusively by another process is a clear MUSTER_ERR_MDNS_SOCKET error, not a crash', async () => {
    // A socket without SO_REUSEADDR: Linux then refuses every other bind to 5353.
    const blocker = c.spawn(process.execPath, [
      '-e',
      "const s=require('node:dgram').createSocket({type:'udp4',reuseAddr:false});s.bind(5353,'0.0.0.0',()=>console.log('bound'));",
    ]);
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('blocker did not bind')), 5000);
        blocker.stdout?.setEncoding('utf8').on('data', (d: string) => {
          if (d.includes('bound')) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      const p = await start(c, { waitReady: false });
      const err = await p.waitFor((e) => e.ev === 'error', 5000, 'socket error');
      if (err.ev !== 'error') throw new Error('unreachable');
      expect(err.code).toBe('MUSTER_ERR_MDNS_SOCKET');
      expect(err.message).toMatch(/EADDRINUSE/);
      expect(err.message).toMatch(/5353/);
      await sleep(200);
      expect(p.child.exitCode).toBeNull(); // still alive: the error was reported, not thrown
    } finally {
      blocker.kill('SIGKILL');
    }
  });
  it('a burst of adverts that arrives while the process is busy is kept in the socket, not dropped', async () => {
    // A rack boots: every node probes and announces within a second or two, while the registrar is
    // busy (issue 12: 849 datagrams dropped for 200 nodes with the default 208 KiB receive buffer).
    // 30 nodes' announcements, 20 copies each, node after node, sent while the browser's event loop
    // is blocked: with a small buffer only the first few nodes' copies fit and the rest are lost.
    const browser = await start(b);
    await browser.call('browse', { browse: 'j', type: 'muster-join' });
    const names = Array.from({ length: 30 }, (_, i) => uniq(`burst${i}x`));
    const packets = names.map((name) => {
      const r = buildRecords({
        kind: 'muster-join',
        name,
        host: `${name}.local`,
        port: 9,
        // Unknown keys are ignored by readers (RFC 6763 §6.3); the padding makes datagrams of a
        // real advert's size with a few hundred bytes to spare.
        txt: {
          ...nodeTxt({ v: 1, name, role: 'worker', cluster: '', key: fp(name), state: 'ready' }),
          pad: 'x'.repeat(240),
          pad2: 'y'.repeat(240),
        },
        addresses: [a.ip],
      });
      return dnsPacket
        .encode({ type: 'response', answers: [r.ptr], additionals: [r.srv, r.txt, ...r.a] })
        .toString('hex');
    });
    const busy = browser.call('busy', { ms: 3000 });
    await browser.waitFor((e) => e.ev === 'busy', 5000, 'busy');
    const sent = await a.exec(process.execPath, ['-e', BURST], {
      input: JSON.stringify({ to: b.ip, copies: 20, packets }),
      timeoutMs: 15_000,
    });
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.stdout.trim()).toBe(String(30 * 20));
    await busy;
    for (const name of names)
      await browser.waitFor((e) => e.ev === 'up' && e.service.name === name, 10_000, `up ${name}`);
    expect(
      new Set(
        browser
          .serviceEvents('j')
          .filter((e) => e.ev === 'up')
          .map((e) => e.service.name),
      ),
    ).toEqual(new Set(names));
  });
});
