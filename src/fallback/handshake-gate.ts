/**
 * Admission of TLS connections: at most `max` handshakes at once, the other new connections waiting
 * their turn in arrival order, unread (their ClientHello stays in the socket buffer).
 *
 * Why: a node:tls server starts the handshake of every accepted connection at once. When a herd of
 * thousands connects together and the CPU cannot do their handshakes within the timeouts (10 s on
 * the server, 15 s in the node's client), every handshake progresses a little and almost none
 * finishes: the work is thrown away, and the nodes back off and come again. In arrival order, each
 * handshake finishes in the time of a few, so the registrar's throughput goes to nodes that then
 * finish. Measured on a loaded 2-core machine with 1,000 agents at once: 3,279 connection retries
 * and 176 s without the gate, 2,153 and 160 s with it.
 *
 * A handshake gives its slot back when it ends, or after `holdMs` when the client is slow. Most of
 * the server's work is done on the ClientHello; after that it waits for the client's Finished. A
 * short hold frees slots that slow clients would otherwise hold until the handshake timeout. It
 * also lets more handshakes share the CPU at once, and on a loaded machine a 1 s hold did worse
 * than none. The API therefore sets the hold to the handshake timeout (api.ts DEFAULT_HANDSHAKES).
 *
 * Bounded: a connection that waited `maxWaitMs` is closed rather than started (its client is about to
 * give up), and beyond `maxQueued` waiting ones a new connection is closed at once (a flood of idle
 * connections cannot grow the queue; server.maxConnections bounds the connections in all). A closed
 * connection is, for the node, an unreachable registrar: it backs off and comes again (join-loop.ts).
 *
 * Memory: at most `maxOpen` TLS connections are open at once (in their handshake or past it); a new
 * one waits in the queue, unread, until one closes. An open connection costs the registrar ~36 kB
 * (Node's TLS and HTTP state, most of it OpenSSL's record buffers, kept while the connection lives;
 * measured with 2,000 keep-alive connections: 36 kB each on a bare node:https server too) against ~5 kB
 * for one waiting in the queue. A node keeps one connection for its whole join (client.ts
 * RegistrarAgent), so in a herd of 5,000 every node would hold one, 180 MB in all, when only the
 * joins the queue can serve in time need to (issue 12, target 3: RSS <= 300 MB). When connections
 * wait for that reason, the keep-alive connections of nodes told to come back later are closed
 * (looked at once a second at most): the last answer on them was a 503 or 429 (busy, rate limited),
 * after which a node pauses for the Retry-After or its back-off, and opens a new connection when it comes back. Any other idle connection is
 * left alone: its node is between two requests (the join's answer and the ack, with files written in
 * between), and closing it would cost a retry and a handshake. Measured in a 5,000 herd: closing every
 * idle connection, or those idle for 1 s, made 2,207 and 2,793 acks retry and cost the registrar
 * 40 % more CPU.
 */
import type { Socket } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Clock, TimerHandle } from '../common/clock.js';

export interface HandshakeGateOptions {
  /** Handshakes in progress at most. */
  max: number;
  /** Connections waiting for a handshake slot at most. */
  maxQueued: number;
  /** A connection that waited this long is closed instead of started. */
  maxWaitMs: number;
  /** A started handshake gives its slot back after this long even if it has not ended. */
  holdMs: number;
  /** TLS connections open at most (default DEFAULT_MAX_OPEN); beyond, new ones wait their turn. */
  maxOpen?: number;
  clock: Pick<Clock, 'now' | 'setTimeout' | 'clearTimeout'>;
}

/**
 * 1,024 connections x ~36 kB: ~37 MB of the registrar's memory at most (see the header), still 16
 * times the joins that run at once. 5,000-node herds on this project's 2-core bench machine (load
 * 3-4, paired runs): peak RSS 327-361 MB with no bound, 278-306 MB with 2,048, 204-242 MB with 1,024,
 * and p99 and registrar CPU no worse (docs/benchmarks.md "Herds of real agents").
 */
export const DEFAULT_MAX_OPEN = 1024;
/** How often at most the gate, full, closes the connections of nodes told to come back later. */
const CLOSE_IDLE_EVERY_MS = 1000;
/** Answers after which a node pauses (Retry-After or back-off): its connection may then be closed. */
const COME_BACK_LATER = new Set([429, 503]);
/**
 * A connection past its handshake that has sent no request for this long, while the gate is full and
 * others wait, is closed: a client sends its request as soon as its handshake ends, so such a
 * connection only holds a slot (1,024 idle connections from one host held every slot until node's
 * headers timeout reaped them, ~15 s; a request made meanwhile waited 14.5 s and was reset). Generous
 * for a client process that is itself busy (a herd's agents on a loaded machine).
 */
export const FRESH_IDLE_MS = 5_000;

export class HandshakeGate {
  /** Sockets whose handshake holds a slot, with the timer that ends the hold. */
  private readonly active = new Map<Socket, TimerHandle>();
  /** Connections started and not yet closed (handshaking or established). */
  private readonly open = new Set<Socket>();
  private idleClosedAt = -Infinity;
  /** Established connections whose node was told to come back later (and has not yet). */
  private readonly sleeping = new Set<TLSSocket>();
  /** Connections past their handshake that have not sent a request yet, with when the handshake ended (oldest first). */
  private readonly fresh = new Map<TLSSocket, number>();
  private freshCheck: TimerHandle | undefined;
  private readonly waiting: { socket: Socket; since: number }[] = [];
  /** Connections closed unstarted (queue full or waited too long), for the log and tests. */
  shed = 0;

  private constructor(
    private readonly server: TlsServer,
    private readonly start: (socket: Socket) => void,
    private readonly o: HandshakeGateOptions,
  ) {}

  /**
   * Puts the gate in front of the server's own connection listener (node:tls's, which wraps the socket
   * and starts the handshake).
   */
  static install(server: TlsServer, o: HandshakeGateOptions): HandshakeGate {
    const listeners = server.listeners('connection') as ((s: Socket) => void)[];
    server.removeAllListeners('connection');
    const gate = new HandshakeGate(server, (s) => listeners.forEach((f) => f.call(server, s)), o);
    server.on('connection', (s: Socket) => gate.arrive(s));
    // The raw socket a TLSSocket wraps is its `_parent` (node:_tls_wrap). Should that ever be missing,
    // the raw socket's 'close' still frees the slot, at the end of the connection instead.
    const done = (t: TLSSocket): void => gate.release((t as unknown as { _parent?: Socket })._parent ?? t);
    server.on('secureConnection', done);
    server.on('tlsClientError', (_err: Error, t: TLSSocket) => done(t));
    // An https.Server's requests: a connection sleeps from a come-back-later answer to the next request.
    type Answer = {
      statusCode: number;
      once(e: 'close', f: () => void): void;
    };
    server.on('request', (req: { socket: TLSSocket }, res: Answer) => {
      const t = req.socket;
      gate.sleeping.delete(t);
      gate.fresh.delete(t);
      res.once('close', () => {
        // By status alone: fastify passes its headers to writeHead, where getHeader does not see them.
        if (!t.destroyed && COME_BACK_LATER.has(res.statusCode)) gate.sleeping.add(t);
      });
    });
    server.on('secureConnection', (t: TLSSocket) => {
      gate.fresh.set(t, gate.o.clock.now());
      t.once('close', () => {
        gate.sleeping.delete(t);
        gate.fresh.delete(t);
      });
    });
    return gate;
  }

  get stats(): { active: number; open: number; waiting: number; shed: number } {
    return { active: this.active.size, open: this.open.size, waiting: this.waiting.length, shed: this.shed };
  }

  private get maxOpen(): number {
    return this.o.maxOpen ?? DEFAULT_MAX_OPEN;
  }

  /** A handshake may start: a slot is free and the open connections are below their bound. */
  private get room(): boolean {
    return this.active.size < this.o.max && this.open.size < this.maxOpen;
  }

  private arrive(socket: Socket): void {
    // A waiting socket has no other listener yet: a reset must not be an uncaught 'error'.
    socket.on('error', () => undefined);
    socket.once('close', () => this.gone(socket));
    if (this.room && this.waiting.length === 0) return this.begin(socket);
    if (this.waiting.length >= this.o.maxQueued) return this.drop(socket);
    this.waiting.push({ socket, since: this.o.clock.now() });
    if (this.open.size >= this.maxOpen) this.makeRoom();
  }

  /**
   * Full of open connections: those that never sent a request within FRESH_IDLE_MS of their handshake
   * make way, and those of nodes told to come back later (once a second at most). While connections
   * still wait, the gate looks again when the oldest request-less one reaches FRESH_IDLE_MS.
   */
  private makeRoom(): void {
    const now = this.o.clock.now();
    for (const [t, since] of this.fresh) {
      if (now - since < FRESH_IDLE_MS) break; // oldest first
      this.fresh.delete(t);
      t.destroy();
    }
    if (now - this.idleClosedAt >= CLOSE_IDLE_EVERY_MS) {
      this.idleClosedAt = now;
      for (const t of this.sleeping) t.destroy();
      this.sleeping.clear();
    }
    const [oldest] = this.fresh.values();
    if (this.freshCheck === undefined && oldest !== undefined && this.waiting.length > 0) {
      this.freshCheck = this.o.clock.setTimeout(
        () => {
          this.freshCheck = undefined;
          if (this.waiting.length > 0 && this.open.size >= this.maxOpen) this.makeRoom();
        },
        oldest + FRESH_IDLE_MS - now,
      );
    }
  }

  private begin(socket: Socket): void {
    this.open.add(socket);
    this.active.set(
      socket,
      this.o.clock.setTimeout(() => this.release(socket), this.o.holdMs),
    );
    this.start(socket);
  }

  private drop(socket: Socket): void {
    this.shed++;
    socket.destroy();
  }

  /** The handshake of `socket` ended (done or failed): the next waiting connection starts. */
  release(socket: Socket): void {
    if (!this.free(socket)) return;
    this.next();
  }

  /** Takes the socket's slot back; false when it held none (already released). */
  private free(socket: Socket): boolean {
    const timer = this.active.get(socket);
    if (timer === undefined) return false;
    this.o.clock.clearTimeout(timer);
    this.active.delete(socket);
    return true;
  }

  private gone(socket: Socket): void {
    const wasOpen = this.open.delete(socket);
    if (this.free(socket) || wasOpen) return this.next();
    const i = this.waiting.findIndex((w) => w.socket === socket);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  private next(): void {
    const now = this.o.clock.now();
    while (this.room && this.waiting.length > 0) {
      const w = this.waiting.shift()!;
      if (w.socket.destroyed) continue;
      if (now - w.since > this.o.maxWaitMs) this.drop(w.socket);
      else this.begin(w.socket);
    }
  }
}
