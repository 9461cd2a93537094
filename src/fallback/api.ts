/**
 * The registrar's HTTPS API (DESIGN "HTTPS API"): the fallback registration path for nodes outside
 * the broadcast domain and the key pick-up for every node. An app factory apart from listen, so
 * tests can inject() (CONVENTIONS: fastify).
 */
import Fastify, { LogController, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { systemClock } from '../common/clock.js';
import { MusterError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { normaliseAddress, sourceKey } from '../common/net.js';
import { toPem } from '../common/x509.js';
import { FailureLimiter } from './failure-limit.js';
import { frameworkErrors, installErrorHandling, INTERNAL_ERROR, musterErrorAnswer } from './http-errors.js';
import { HandshakeGate } from './handshake-gate.js';
import { GateFull, JoinGate } from './join-gate.js';
import { installJoinLane, type LaneAnswer } from './join-lane.js';
import { CrlQuery, JoinBody, LeaveBody, NameParams, RenewBody, SignedBody, WaitQuery } from './schemas.js';
import { precompiledValidator, schemaController } from './validate.js';
import type { JoinOutcome, RegistrationEndpoint } from './wire.js';

/** Refused requests a minute one source may make (bad proofs, refusals, malformed requests). */
export const DEFAULT_FAILURES_PER_MINUTE = 60;
/**
 * Joins worked on at once: enough to overlap the store's writes, few enough that each finishes soon
 * (the work is CPU on one thread: more at once only makes each take longer).
 */
export const DEFAULT_JOIN_SLOTS = 64;
/**
 * Joins waiting at most (about 2 kB each: the parsed body) and for how long: under the node's 15 s
 * request timeout (join-loop.ts REQUEST_SLACK_MS), so a node is answered before it gives up.
 */
export const DEFAULT_JOIN_QUEUE = { max: 4096, waitMs: 10_000 };
/**
 * Handshakes at once (more only share the CPU, each finishing later), new connections waiting their
 * turn, for how long (under the node's 15 s request timeout), and how long a slow client's handshake
 * may hold its slot: the handshake timeout, so by default a slot is held until the handshake ends.
 * A 1 s hold did worse on a loaded machine (1,000 agents: 279 registered in 180 s against all 1,000
 * without it): the handshakes it let start shared the CPU and timed out together (docs/benchmarks.md).
 */
export const DEFAULT_HANDSHAKES = { max: 128, maxQueued: 8192, waitMs: 10_000, holdMs: 10_000 };
/**
 * The listen backlog: a herd's connections wait in the kernel rather than having their SYNs dropped
 * (a dropped SYN costs the node 1 s, then 3 s). Linux caps it at net.core.somaxconn.
 */
export const LISTEN_BACKLOG = 4096;

/** Told of every answer (the registrar counts them in its metrics). */
export type ResponseObserver = (r: {
  method: string;
  route: string;
  status: number;
  seconds: number;
}) => void;

export interface ApiOptions {
  service: RegistrationEndpoint;
  log: Logger;
  https?: { key: string; cert: string };
  /**
   * Refused requests per minute per source (IPv4 address or IPv6 /64) before it is answered 429;
   * successful ones are not counted (issue 8: rate-limit failures, not herds).
   */
  rateLimit?: number;
  /** Long polls parked at once: in all, and per source. */
  maxPolls?: { total: number; perSource: number };
  /** Concurrent TLS connections at most. */
  maxConnections?: number;
  /** Time for the clock of the failure limiter (tests). */
  now?: () => number;
  /** TLS handshakes at once, connections waiting for one, and how long (handshake-gate.ts). */
  handshakes?: { max: number; maxQueued: number; waitMs: number; holdMs: number };
  /** Join requests worked on at once; the rest wait in a bounded queue (join-gate.ts). */
  maxInFlightJoins?: number;
  /**
   * Join requests waiting at most, and how long one may wait (ms), beyond which the registrar sheds
   * load with 503 + a Retry-After from its drain rate (join-gate.ts).
   */
  joinQueue?: { max: number; waitMs: number };
  bodyLimit?: number;
  onResponse?: ResponseObserver;
}

export async function buildApi(opts: ApiOptions): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: opts.log as unknown as import('fastify').FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit ?? 16 * 1024,
    // A TLS handshake must finish in 10 s (Node's default of 120 s lets idle sockets pile up).
    ...(opts.https
      ? { https: { key: opts.https.key, cert: opts.https.cert, handshakeTimeout: 10_000 } }
      : {}),
    // Long polls hold a request up to 60 s; headers must arrive in 10 s; an idle keep-alive socket
    // is closed after 65 s.
    requestTimeout: 90_000,
    keepAliveTimeout: 65_000,
    connectionTimeout: 120_000,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    schemaController,
    frameworkErrors,
  }) as unknown as FastifyInstance;
  installErrorHandling(app);
  const observe = opts.onResponse;
  if (observe) {
    app.addHook('onResponse', async (req, reply) => {
      observe({
        method: req.method,
        route: req.routeOptions.url ?? 'unknown',
        status: reply.statusCode,
        seconds: reply.elapsedTime / 1000,
      });
    });
  }

  app.server.maxConnections = opts.maxConnections ?? 20_000;
  app.server.headersTimeout = 10_000;
  if (opts.https) {
    const h = opts.handshakes ?? DEFAULT_HANDSHAKES;
    HandshakeGate.install(app.server as unknown as TlsServer, {
      max: h.max,
      maxQueued: h.maxQueued,
      maxWaitMs: h.waitMs,
      holdMs: h.holdMs,
      clock: systemClock,
    });
  }

  // Failures are limited per source and in total (see failure-limit.ts); successful requests only by
  // a generous flood guard (100 a second per source), so a herd behind one NAT address gets through.
  const sourceOf = (socket: Socket): string => sourceKey(socket.remoteAddress ?? 'unknown');
  const source = (req: FastifyRequest): string => sourceOf(req.socket);
  const perSource = opts.rateLimit ?? DEFAULT_FAILURES_PER_MINUTE;
  const failures = new FailureLimiter({
    perSource,
    global: Math.max(1200, 20 * perSource),
    windowMs: 60_000,
    now: opts.now ?? Date.now,
  });
  // The flood guard: every request counts, per source, in a one-minute window; never below the
  // failure limit (a source allowed that many refusals may make as many good requests). A plain
  // counter where @fastify/rate-limit was: the same answer without its per-answer x-ratelimit-*
  // headers, its IPv6 library and its load at every start (issue 12, target 2).
  const requests = new FailureLimiter({
    perSource: Math.max(6000, perSource),
    global: Infinity,
    windowMs: 60_000,
    now: opts.now ?? Date.now,
  });
  /** Counts a request from `src` and says nothing, or says how long it must wait and whether for refusals. */
  const floodGuard = (src: string): { wait: number; refused: boolean } | undefined => {
    const refused = failures.blocked(src);
    const wait = refused ?? requests.blocked(src);
    if (wait === undefined) {
      requests.record(src);
      return undefined;
    }
    return { wait, refused: refused !== undefined };
  };
  // Requests the join's fast lane let in (and counted) before handing them to fastify.
  const counted = new WeakSet<IncomingMessage>();
  app.addHook('onRequest', async (req, reply) => {
    if (counted.has(req.raw)) return;
    const held = floodGuard(source(req));
    if (!held) return;
    const { wait, refused } = held;
    void reply.header('retry-after', String(wait));
    return reply.code(429).send({
      error: 'rate_limited',
      message: refused
        ? `too many refused requests from this address: retry in ${wait} s`
        : `too many requests from this address: retry in ${wait} s`,
    });
  });
  const countFailure = (src: string, status: number): void => {
    if (status >= 400 && status < 500 && status !== 429) failures.record(src);
  };
  app.addHook('onResponse', async (req, reply) => countFailure(source(req), reply.statusCode));

  const svc = opts.service;
  const addr = (socketAddr: string | undefined): string => normaliseAddress(socketAddr ?? '');
  // A herd waits in a FIFO queue rather than being refused at once (join-gate.ts); a flood beyond the
  // queue's bounds is answered 503 with a Retry-After from the drain rate.
  const gate = new JoinGate({
    slots: opts.maxInFlightJoins ?? DEFAULT_JOIN_SLOTS,
    maxQueued: opts.joinQueue?.max ?? DEFAULT_JOIN_QUEUE.max,
    maxWaitMs: opts.joinQueue?.waitMs ?? DEFAULT_JOIN_QUEUE.waitMs,
    clock: systemClock,
  });
  let parked = 0;
  const polls = new Map<string, number>();
  const maxPolls = opts.maxPolls ?? { total: 10_000, perSource: 512 };

  const outcomeAnswer = (out: JoinOutcome): LaneAnswer =>
    out.status === 202
      ? {
          status: 202,
          headers: { 'retry-after': String(out.retryAfter) },
          body: { state: out.state, retryAfter: out.retryAfter, message: out.reason },
        }
      : { status: out.status, headers: {}, body: out.bundle };
  const send = (reply: import('fastify').FastifyReply, out: JoinOutcome) => {
    const a = outcomeAnswer(out);
    return reply.code(a.status).headers(a.headers).send(a.body);
  };

  // A join waits its turn at the gate; a node that hangs up meanwhile leaves the queue.
  const runJoin = async (body: Static<typeof JoinBody>, socket: Socket): Promise<JoinOutcome> => {
    const gone = new AbortController();
    const onClose = (): void => gone.abort();
    socket.once('close', onClose);
    try {
      return await gate.run(() => svc.join(body, addr(socket.remoteAddress)), gone.signal);
    } catch (err) {
      if (!(err instanceof GateFull)) throw err;
      throw new MusterError(
        'busy',
        `the registrar is signing as fast as it can (${err.why}): retry in ${err.retryAfterS} s`,
        { retryAfter: err.retryAfterS },
      );
    } finally {
      socket.off('close', onClose);
    }
  };

  const bodyLimit = opts.bodyLimit ?? 16 * 1024;
  const lane = installJoinLane(app.server as unknown as HttpServer, {
    bodyLimit,
    admit(req) {
      // Held back: fastify's own hook answers it (429 with Retry-After).
      if (floodGuard(sourceOf(req.socket))) return false;
      counted.add(req);
      return true;
    },
    validate: precompiledValidator({
      schema: JoinBody,
      method: 'POST',
      url: '/v1/join',
      httpPart: 'body',
    }) as (body: unknown) => boolean,
    async handle(body, socket) {
      try {
        return outcomeAnswer(await runJoin(body as Static<typeof JoinBody>, socket));
      } catch (err) {
        if (err instanceof MusterError) return musterErrorAnswer(err);
        opts.log.error({ err }, 'unexpected error');
        return { status: 500, headers: {}, body: INTERNAL_ERROR };
      }
    },
    fault(err) {
      opts.log.error({ err }, 'unexpected error');
    },
    answered(req, status, seconds) {
      countFailure(sourceOf(req.socket), status);
      observe?.({ method: 'POST', route: '/v1/join', status, seconds });
    },
  });

  app.get('/v1/info', async () => svc.info());

  app.get('/v1/ca', async (_req, reply) => reply.type('application/x-pem-file').send(svc.caPem()));

  // RFC 5280 §4.2.1.13 / RFC 2585 §4.2: a CRL distribution point serves DER as
  // application/pkix-crl; PEM on request, for tools and people that want text.
  app.get('/v1/crl', { schema: { querystring: CrlQuery } }, async (req, reply) => {
    const { format } = req.query as Static<typeof CrlQuery>;
    const der = await svc.crl();
    const pem =
      format === 'pem' || (format === undefined && /application\/x-pem-file/i.test(req.headers.accept ?? ''));
    void reply.header('cache-control', 'no-cache');
    if (pem) return reply.type('application/x-pem-file').send(toPem(der, 'X509 CRL'));
    return reply.type('application/pkix-crl').send(der);
  });

  // The route for what the fast lane (join-lane.ts) does not take, or hands back to be refused.
  app.post(
    '/v1/join',
    {
      schema: { body: JoinBody },
      preParsing: async (req, _reply, payload) => lane.handedBack(req.raw, payload),
    },
    async (req, reply) => send(reply, await runJoin(req.body as Static<typeof JoinBody>, req.socket)),
  );

  app.get(
    '/v1/join/:name',
    { schema: { params: NameParams, querystring: WaitQuery } },
    async (req, reply) => {
      const { name } = req.params as Static<typeof NameParams>;
      const q = req.query as Static<typeof WaitQuery>;
      let wait = Math.min(Number(q.wait ?? 0), 60);
      // A parked poll holds a socket and memory: bounded in all and per source. Over the bound the
      // poll still answers, without parking (the node comes back after Retry-After).
      const src = source(req);
      const mine = polls.get(src) ?? 0;
      if (parked >= maxPolls.total || mine >= maxPolls.perSource) wait = 0;
      parked++;
      polls.set(src, mine + 1);
      try {
        return send(reply, await svc.poll(name, q.key, wait * 1000, { ts: Number(q.ts), sig: q.sig }));
      } finally {
        parked--;
        const n = (polls.get(src) ?? 1) - 1;
        if (n > 0) polls.set(src, n);
        else polls.delete(src);
      }
    },
  );

  app.post('/v1/join/:name/ack', { schema: { params: NameParams, body: SignedBody } }, async (req, reply) => {
    const { name } = req.params as Static<typeof NameParams>;
    await svc.ack(name, req.body as Static<typeof SignedBody>);
    return reply.code(204).send();
  });

  app.post('/v1/leave', { schema: { body: LeaveBody } }, async (req, reply) => {
    const { name, ...signed } = req.body as Static<typeof LeaveBody>;
    await svc.leave(name, signed);
    return reply.code(204).send();
  });

  // DESIGN "HTTPS API": a registered node renews (and checks in); 200 with the bundle, 410 if removed.
  app.post('/v1/renew', { schema: { body: RenewBody } }, async (req, reply) => {
    const { name, ...signed } = req.body as Static<typeof RenewBody>;
    return reply.code(200).send(await svc.renew(name, signed));
  });

  return app;
}
