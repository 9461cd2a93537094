/**
 * One error shape for every HTTP answer muster gives: `{error, message}` with the status from the
 * error registry (DESIGN "HTTPS API", CONVENTIONS 3). Unexpected errors are logged in full and
 * answered with a generic message (no internals, no secrets, to the client).
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { MusterError } from '../common/errors.js';

/**
 * Errors fastify raises before it routes a request (a path that is not valid percent-encoding, a path
 * parameter longer than maxParamLength) never reach the error handler: without this factory option
 * (`Fastify({ frameworkErrors })`) they are answered in fastify's own shape, and the second as 414.
 */
export function frameworkErrors(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  if (err.code === 'FST_ERR_BAD_URL' || err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    void reply.code(400).send({
      error: 'bad_request',
      message:
        err.code === 'FST_ERR_BAD_URL'
          ? 'the request path is not valid percent-encoding'
          : 'a name in the request path is too long',
    });
    return;
  }
  req.log.error({ err }, 'unexpected error');
  void reply.code(500).send(INTERNAL_ERROR);
}

/** What a client is told of an error it cannot act on; the error itself goes to the log only. */
export const INTERNAL_ERROR = {
  error: 'internal',
  message: 'internal error; see the registrar log',
} as const;

/** The answer to a MusterError: its registry status, `{error, message, ...details}`, and Retry-After. */
export function musterErrorAnswer(err: MusterError): {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
} {
  return {
    status: err.status,
    headers: err.retryAfter !== undefined ? { 'retry-after': String(err.retryAfter) } : {},
    body: err.toJSON(),
  };
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | MusterError | Error, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof MusterError) {
      const a = musterErrorAnswer(err);
      return reply.code(a.status).headers(a.headers).send(a.body);
    }
    const fe = err as FastifyError & { error?: string };
    if (fe.validation) {
      return reply.code(400).send({
        error: 'bad_request',
        message: `invalid ${fe.validationContext ?? 'request'}: ${fe.message}`,
      });
    }
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ error: 'payload_too_large', message: 'the request body is too large' });
    }
    if (fe.statusCode === 415) {
      return reply
        .code(415)
        .send({ error: 'unsupported_media_type', message: 'send the body as application/json' });
    }
    if (fe.statusCode === 429) {
      return reply
        .code(429)
        .send({ error: 'rate_limited', message: fe.message || 'too many requests: slow down' });
    }
    if (fe.statusCode === 503) {
      return reply
        .code(503)
        .send({ error: 'busy', message: fe.message || 'the registrar is busy: retry later' });
    }
    if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
      return reply.code(fe.statusCode).send({ error: 'bad_request', message: fe.message });
    }
    req.log.error({ err }, 'unexpected error');
    return reply.code(500).send(INTERNAL_ERROR);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send({ error: 'not_found', message: `no endpoint ${req.method} ${req.url.split('?')[0]}` });
  });
}
