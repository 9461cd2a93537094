/**
 * The registrar's HTTPS API (DESIGN "HTTPS API"): the fallback registration path for nodes outside
 * the broadcast domain and the key pick-up for every node. An app factory apart from listen, so
 * tests can inject() (CONVENTIONS: fastify).
 */
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import type { Static } from '@sinclair/typebox';
import { MusterError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { normaliseAddress } from '../common/net.js';
import { installErrorHandling } from './http-errors.js';
import { JoinBody, LeaveBody, NameParams, SignedBody, WaitQuery } from './schemas.js';
import type { JoinOutcome, RegistrationEndpoint } from './wire.js';

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
  /** Requests per minute per client address (all endpoints). */
  rateLimit?: number;
  /** Join requests in flight beyond which the registrar sheds load with 503 + Retry-After. */
  maxInFlightJoins?: number;
  bodyLimit?: number;
  onResponse?: ResponseObserver;
}

export async function buildApi(opts: ApiOptions): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: opts.log as unknown as import('fastify').FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit ?? 16 * 1024,
    ...(opts.https ? { https: { key: opts.https.key, cert: opts.https.cert } } : {}),
    // Long polls hold a request up to 60 s.
    requestTimeout: 90_000,
    keepAliveTimeout: 65_000,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
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

  await app.register(rateLimit, {
    max: opts.rateLimit ?? 600,
    timeWindow: 60_000,
    keyGenerator: (req) => normaliseAddress(req.socket.remoteAddress ?? 'unknown'),
    errorResponseBuilder: (_req, ctx) => ({
      statusCode: 429,
      error: 'rate_limited',
      message: `too many requests from this address: retry in ${Math.ceil(ctx.ttl / 1000)} s`,
    }),
  });

  const svc = opts.service;
  const addr = (socketAddr: string | undefined): string => normaliseAddress(socketAddr ?? '');
  let inFlight = 0;
  const maxInFlight = opts.maxInFlightJoins ?? 256;

  const send = (reply: import('fastify').FastifyReply, out: JoinOutcome) => {
    if (out.status === 202) {
      void reply.header('retry-after', String(out.retryAfter));
      return reply.code(202).send({ state: out.state, retryAfter: out.retryAfter, message: out.reason });
    }
    return reply.code(out.status).send(out.bundle);
  };

  app.get('/v1/info', async () => svc.info());

  app.get('/v1/ca', async (_req, reply) => reply.type('application/x-pem-file').send(svc.caPem()));

  app.post('/v1/join', { schema: { body: JoinBody } }, async (req, reply) => {
    if (inFlight >= maxInFlight) {
      throw new MusterError('busy', 'the registrar is signing as fast as it can: retry shortly', {
        retryAfter: 2,
      });
    }
    inFlight++;
    try {
      const body = req.body as Static<typeof JoinBody>;
      return send(reply, await svc.join(body, addr(req.socket.remoteAddress)));
    } finally {
      inFlight--;
    }
  });

  app.get(
    '/v1/join/:name',
    { schema: { params: NameParams, querystring: WaitQuery } },
    async (req, reply) => {
      const { name } = req.params as Static<typeof NameParams>;
      const q = req.query as Static<typeof WaitQuery>;
      const wait = Math.min(Number(q.wait ?? 0), 60);
      return send(reply, await svc.poll(name, q.key, wait * 1000, { ts: Number(q.ts), sig: q.sig }));
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

  return app;
}
