/**
 * The TLS connection gate in front of the registrar's HTTPS server (src/fallback/handshake-gate.ts):
 * at most `max` handshakes at once, the other connections waiting in arrival order; a connection
 * beyond the queue, or one that waited too long, is closed without a handshake; at most `maxOpen`
 * connections are open, and when that is what holds a connection back, the keep-alive ones of nodes
 * told to come back later (answered 503 or 429) are closed. Real sockets on 127.0.0.1; the gate's clock is a ManualClock.
 */
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { FRESH_IDLE_MS, HandshakeGate } from '../../src/fallback/handshake-gate.js';
import { issueServerIdentity, loadOrCreateCa } from '../../src/registrar/ca.js';
import { tempDir } from '../helpers/registrar.js';

let t: { dir: string; cleanup: () => void };
let server: https.Server;
let gate: HandshakeGate;
let port: number;
const clock = new ManualClock();
const open: net.Socket[] = [];

let identity: { keyPem: string; certPem: string };

beforeEach(async () => {
  t = tempDir('muster-gate-');
  const { ca } = await loadOrCreateCa(t.dir, 'gate test', new Date());
  identity = issueServerIdentity(ca, 'r-gate', ['127.0.0.1'], new Date());
});

/** An HTTPS server with the gate: one handshake at once, one waiting (unless `o` says otherwise). */
async function serve(o: {
  maxWaitMs: number;
  holdMs: number;
  max?: number;
  maxOpen?: number;
  maxQueued?: number;
}): Promise<void> {
  // GET /hang is never answered: its connection stays busy. GET /busy: 503, come back in 5 s.
  server = https.createServer({ key: identity.keyPem, cert: identity.certPem }, (req, res) => {
    if (req.url === '/busy') res.writeHead(503, { 'retry-after': '5' }).end();
    else if (req.url !== '/hang') res.end('ok');
  });
  gate = HandshakeGate.install(server, { max: 1, maxQueued: 1, ...o, clock });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
}

afterEach(async () => {
  for (const s of open) s.destroy();
  open.length = 0;
  if (server?.listening) {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
  t.cleanup();
});

/** Waits (polling, no time limit of its own) until the condition holds. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

/** A plain TCP connection that never sends a ClientHello: its handshake holds the slot. */
async function idle(): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  open.push(s);
  await new Promise((r) => s.once('connect', r));
  return s;
}

/** A TLS client; `events` records 'secure' or 'closed' (closed before any handshake). */
function client(): { socket: tls.TLSSocket; events: string[]; ended: Promise<void> } {
  const events: string[] = [];
  const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
  open.push(socket);
  socket.on('secureConnect', () => events.push('secure'));
  socket.on('error', () => undefined);
  const ended = new Promise<void>((r) =>
    socket.once('close', () => {
      events.push('closed');
      r();
    }),
  );
  return { socket, events, ended };
}

describe('HandshakeGate', () => {
  it('starts a waiting connection only when the handshake before it ends, and it is then served', async () => {
    await serve({ maxWaitMs: 5000, holdMs: 60_000 });
    const a = await idle();
    await until(() => gate.stats.active === 1);
    const b = client();
    await until(() => gate.stats.waiting === 1);
    expect(b.events).toEqual([]);
    a.destroy();
    await new Promise((r) => b.socket.once('secureConnect', r));
    expect(gate.stats).toMatchObject({ waiting: 0, shed: 0 });
    // The waiting connection's ClientHello was kept: it is an ordinary HTTPS connection.
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, rejectUnauthorized: false, agent: false }, (res) => {
          let s = '';
          res.on('data', (c: Buffer) => (s += c.toString()));
          res.on('end', () => resolve(s));
        })
        .on('error', reject);
    });
    expect(body).toBe('ok');
  });

  it('closes a connection beyond the queue at once, without a handshake', async () => {
    await serve({ maxWaitMs: 5000, holdMs: 60_000 });
    await idle();
    await until(() => gate.stats.active === 1);
    const b = client();
    await until(() => gate.stats.waiting === 1);
    const c = client();
    await c.ended;
    expect(c.events).toEqual(['closed']);
    expect(gate.stats).toMatchObject({ active: 1, waiting: 1, shed: 1 });
    expect(b.events).toEqual([]);
  });

  it('closes a connection that waited longer than maxWaitMs instead of starting it', async () => {
    await serve({ maxWaitMs: 5000, holdMs: 60_000 });
    const a = await idle();
    await until(() => gate.stats.active === 1);
    const b = client();
    await until(() => gate.stats.waiting === 1);
    clock.advance(5001);
    a.destroy();
    await b.ended;
    expect(b.events).toEqual(['closed']);
    expect(gate.stats).toMatchObject({ active: 0, waiting: 0, shed: 1 });
  });

  it('at most maxOpen connections are open: a new one waits unread, a handshake slot free, until one closes', async () => {
    await serve({ maxWaitMs: 60_000, holdMs: 60_000, max: 4, maxOpen: 1 });
    // A connection with a request in progress: not idle, so it keeps its place.
    const busy = https.get({
      host: '127.0.0.1',
      port,
      path: '/hang',
      rejectUnauthorized: false,
      agent: false,
    });
    busy.on('error', () => undefined);
    await until(() => gate.stats.open === 1 && gate.stats.active === 0);
    const b = client();
    await until(() => gate.stats.waiting === 1);
    expect(gate.stats).toMatchObject({ active: 0, open: 1, waiting: 1, shed: 0 });
    expect(b.events).toEqual([]);
    busy.destroy();
    await new Promise((r) => b.socket.once('secureConnect', r));
    expect(gate.stats).toMatchObject({ open: 1, waiting: 0, shed: 0 });
  });

  it('full of open connections, it closes those of nodes told to come back later (503, 429), not others', async () => {
    await serve({ maxWaitMs: 60_000, holdMs: 60_000, max: 4, maxOpen: 2, maxQueued: 2 });
    /** A keep-alive connection left idle after GET `path`. */
    const keptAfter = async (path: string): Promise<{ socket: net.Socket; agent: https.Agent }> => {
      const agent = new https.Agent({ keepAlive: true, rejectUnauthorized: false });
      const socket = await new Promise<net.Socket>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path, agent }, (res) => {
            const s = res.socket; // detached from the answer once it is back in the agent's pool
            res.resume();
            res.on('end', () => resolve(s));
          })
          .on('error', reject);
      });
      await until(() => Object.values(agent.freeSockets).some((l) => l?.length));
      return { socket, agent };
    };
    const sent = await keptAfter('/busy');
    const served = await keptAfter('/');
    expect(gate.stats).toMatchObject({ open: 2, waiting: 0 });
    const sentClosed = new Promise((r) => sent.socket.once('close', r));
    const b = client();
    await new Promise((r) => b.socket.once('secureConnect', r));
    await sentClosed;
    // Between two requests as far as the gate knows (a join's answer, then the ack): left open.
    expect(served.socket.destroyed).toBe(false);
    expect(gate.stats).toMatchObject({ open: 2, waiting: 0, shed: 0 });
    sent.agent.destroy();
    served.agent.destroy();
  });

  it('full of open connections, it closes those that never sent a request within FRESH_IDLE_MS of their handshake (an idle-connection flood), not a kept-alive one', async () => {
    await serve({ maxWaitMs: 60_000, holdMs: 60_000, max: 4, maxOpen: 3, maxQueued: 4 });
    // A node's keep-alive connection, idle between two requests: never closed for being idle.
    const agent = new https.Agent({ keepAlive: true, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) =>
      https
        .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          res.resume();
          res.on('end', () => resolve());
        })
        .on('error', reject),
    );
    await until(() => Object.values(agent.freeSockets).some((l) => l?.length));
    const kept = Object.values(agent.freeSockets).flat()[0]!;
    // The attack: connections that finish their handshake and then send nothing, holding the slots.
    const a = client();
    const b = client();
    await Promise.all([a, b].map((x) => new Promise((r) => x.socket.once('secureConnect', r))));
    await until(() => gate.stats.open === 3 && gate.stats.active === 0);
    const c = client();
    await until(() => gate.stats.waiting === 1);
    // Not yet: a client that is slow to send its request is given FRESH_IDLE_MS.
    clock.advance(FRESH_IDLE_MS - 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(a.events).toEqual(['secure']);
    expect(gate.stats).toMatchObject({ open: 3, waiting: 1 });
    // Then the request-less ones make way, without another connection arriving to prompt it.
    clock.advance(1);
    await Promise.all([a.ended, b.ended]);
    await new Promise((r) => c.socket.once('secureConnect', r));
    expect(kept.destroyed).toBe(false);
    expect(gate.stats).toMatchObject({ waiting: 0, shed: 0 });
    agent.destroy();
  });

  it('a slow client holds its slot for holdMs only: the next connection is served while it still waits', async () => {
    await serve({ maxWaitMs: 60_000, holdMs: 1000 });
    const slow = await idle();
    await until(() => gate.stats.active === 1);
    const b = client();
    await until(() => gate.stats.waiting === 1);
    clock.advance(999);
    expect(gate.stats).toMatchObject({ active: 1, waiting: 1 });
    clock.advance(1);
    await new Promise((r) => b.socket.once('secureConnect', r));
    expect(slow.destroyed).toBe(false);
    expect(gate.stats).toMatchObject({ waiting: 0, shed: 0 });
  });
});
