/**
 * The join's fast lane (issue 12, target 1): a well-formed `POST /v1/join` is read, parsed, checked
 * against the same generated validator and answered by the same join code as through fastify, without
 * fastify's per-request objects, hook chain, content-type parser and reply pipeline (~0.2 ms of a
 * registrar's ~2 ms of CPU per join, measured over HTTPS against the route through fastify;
 * docs/benchmarks.md). Everything else goes to fastify untouched, and so does every request the lane
 * would have to refuse before the join itself runs: a body that is not JSON, might carry a forbidden
 * key, or fails validation is handed back to fastify with the bytes already read, so its answer
 * (status, message, failure counting) is fastify's own, byte for byte. What the lane answers itself
 * is the join's outcome: 201 or 202, or the join's error (MusterError, or a 500 logged in full).
 */
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';

/** What the lane sends: a status, extra headers and a JSON body. */
export interface LaneAnswer {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

export interface JoinLaneOptions {
  /** The route's body limit (bytes): a longer declared body goes to fastify, which refuses it. */
  bodyLimit: number;
  /** The flood guard: true counts the request and lets it in; false hands it to fastify, which refuses it. */
  admit(req: IncomingMessage): boolean;
  /** The route's own body validator (the one fastify runs for it). */
  validate(body: unknown): boolean;
  /** The join, its errors mapped to answers (never rejects). */
  handle(body: unknown, socket: Socket): Promise<LaneAnswer>;
  /** Told of each answer the lane gave (metrics, failure counting), as fastify's onResponse hooks are. */
  answered(req: IncomingMessage, status: number, seconds: number): void;
  /** A fault of the lane itself (never expected): logged; the connection is closed unanswered. */
  fault(err: unknown): void;
}

/** JSON the lane takes: `application/json`, with no parameter but an explicit UTF-8 charset. */
const JSON_TYPE = /^application\/json(?:\s*;\s*charset="?utf-8"?)?$/i;
/**
 * Text that could make JSON.parse produce a key secure-json-parse refuses (fastify's default parser
 * refuses `__proto__` and `constructor.prototype`): written out, or hidden behind a \u escape. Such a
 * body is fastify's to parse; no join body needs either.
 */
const MAYBE_FORBIDDEN = /__proto__|constructor|\\u/;

export interface JoinLane {
  /**
   * A request the lane read and handed back: fastify's preParsing hook for the route returns its
   * body from here (fastify reads the request stream otherwise, which the lane has emptied).
   */
  handedBack(req: IncomingMessage, payload: Readable): Readable;
}

/** Puts the lane in the place of the server's first request listener: fastify's. */
export function installJoinLane(server: Server, o: JoinLaneOptions): JoinLane {
  // fastify registered its listener when it made the server, before anything else could (the
  // handshake gate's listener only observes answers, and stays where it is).
  const framework = server.listeners('request')[0] as RequestListener | undefined;
  if (!framework) throw new Error("the join lane expects fastify's request listener on the server");
  server.removeListener('request', framework);
  const bodies = new WeakMap<IncomingMessage, Buffer>();

  const takes = (req: IncomingMessage): boolean => {
    if (req.method !== 'POST' || req.url !== '/v1/join') return false;
    if (req.headers['transfer-encoding'] !== undefined) return false;
    const type = req.headers['content-type'];
    if (type === undefined || !JSON_TYPE.test(type)) return false;
    const length = req.headers['content-length'];
    if (length === undefined || !/^[1-9][0-9]{0,8}$/.test(length)) return false;
    return Number(length) <= o.bodyLimit;
  };

  const answer = async (req: IncomingMessage, res: ServerResponse, buf: Buffer, started: number) => {
    const text = buf.toString('utf8');
    let body: unknown;
    if (!MAYBE_FORBIDDEN.test(text)) {
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
    }
    if (body === undefined || !o.validate(body)) {
      bodies.set(req, buf);
      framework(req, res);
      return;
    }
    const a = await o.handle(body, req.socket);
    const payload = JSON.stringify(a.body);
    res.writeHead(a.status, {
      ...a.headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(payload)),
    });
    res.end(payload);
    o.answered(req, a.status, (performance.now() - started) / 1000);
  };

  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!takes(req) || !o.admit(req)) {
      framework(req, res);
      return;
    }
    const started = performance.now();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      chunks.push(c);
      size += c.length;
    });
    // A client that goes away mid-body: node destroys the request; there is nobody to answer.
    req.on('error', () => undefined);
    req.on('end', () => {
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      answer(req, res, buf, started).catch((err: unknown) => {
        o.fault(err);
        res.destroy();
      });
    });
  });

  return {
    handedBack(req, payload) {
      const buf = bodies.get(req);
      if (!buf) return payload;
      bodies.delete(req);
      const replay = new PassThrough();
      replay.end(buf);
      return replay;
    },
  };
}
