/**
 * The admin web page (issue 13, item 1; README "Admin web page"): plain HTML, CSS and ES modules from
 * the package's web/ folder, and a small JSON API over the same operator service the admin socket
 * uses (registrar/operator.ts), served on a loopback address (--admin-listen) over plain HTTP.
 *
 * Who may use it: whoever holds a login link minted by `muster admin url` over the admin socket (so:
 * whoever may use the socket, normally root). The link is single use, short lived and kept hashed in
 * memory; using it opens a server-side session held by a random 256-bit cookie (HttpOnly,
 * SameSite=Strict) that expires when idle. Every change is checked three ways against cross-site
 * requests (OWASP CSRF cheat sheet): the SameSite cookie, a per-session token the page sends in a
 * header, and the Origin; and every request's Host must be the listen address itself, so that a
 * page of another site whose name was rebound to 127.0.0.1 (DNS rebinding) is refused.
 *
 * Actions are recorded as the operator who minted the link, "via the web page" (issue 10, item 3:
 * the peer of the admin socket, never what a request says).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { Clock } from '../common/clock.js';
import { MusterError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { CreateTokenBody, InstallModeBody, NameParams, TokenIdParams } from '../admin/schemas.js';
import { frameworkErrors, installErrorHandling } from '../fallback/http-errors.js';
import type { Registry } from '../store/registry.js';
import type { NodeRecord, NodeState } from '../store/types.js';
import { createToken, setInstallMode } from './admin-api.js';
import { schemaController } from '../fallback/validate.js';
import { followEvents } from './event-follow.js';
import type { RegistrarService } from './service.js';

/** A login link works once, within this (README "Admin web page"). */
export const LOGIN_LINK_TTL_MS = 5 * 60_000;
/** A session unused for this long is gone: the next request gets 401 and a fresh link is needed. */
export const SESSION_IDLE_MS = 30 * 60_000;
/** Unused login links and sessions held at most (each minting or login beyond drops the oldest). */
const MAX_HELD = 1000;
/** Records one filtered node page reads at most (role has no index) before it answers with `next`. */
export const WEB_NODE_SCAN_BUDGET = 5000;
/** Events the stream replays when the page first connects (later: from Last-Event-ID). */
const EVENTS_TAIL = 50;

/**
 * Where to start a fresh stream so that it shows (at least) the last `n` events. Sequence numbers
 * need not be dense (on etcd they are the commit's revision x 256 plus the event's place in it), so
 * `last - n` may hold far fewer than n events: the window doubles until it holds n, or reaches the
 * start of the log. Each step reads at most n events.
 */
export async function tailStart(
  registry: Pick<Registry, 'lastEventSeq' | 'listEvents'>,
  n: number,
): Promise<number> {
  const last = await registry.lastEventSeq();
  for (let w = n; ; w *= 2) {
    const after = Math.max(0, last - w);
    if (after === 0 || (await registry.listEvents(after, n)).length >= n) return after;
  }
}
/** A comment line on an idle event stream, so proxies and the browser keep it open. */
const HEARTBEAT_MS = 25_000;

export const SESSION_COOKIE = 'muster_session';
export const CSRF_HEADER = 'x-muster-csrf';

/** A listen address the page may use: loopback only (plain HTTP; reach it from afar over ssh -L). */
export function loopbackListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen);
  const host = m ? (m[1] ?? m[2]!) : '';
  const port = m ? Number(m[3]) : NaN;
  const loopback = (net.isIPv4(host) && host.startsWith('127.')) || (net.isIPv6(host) && host === '::1');
  if (!m || port > 65535 || !loopback) {
    throw new MusterError(
      'MUSTER_ERR_CONFIG',
      `--admin-listen ${JSON.stringify(listen)} must be a loopback address and port such as 127.0.0.1:8440 ` +
        '(the page is plain HTTP: reach it from another machine through ssh -L, never over the network)',
    );
  }
  return { host, port };
}

/**
 * The package's web/ folder, found from this module's own place by walking up to the package.json
 * named muster: the same from src/ (tests), dist/ (tsc) or a bundle in dist/, and once installed.
 */
export function webAssetsDir(from: string = path.dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'muster') {
          return path.join(dir, 'web');
        }
      } catch {
        // Not ours; keep walking.
      }
    }
    if (path.dirname(dir) === dir) {
      throw new MusterError('MUSTER_ERR_CONFIG', `cannot find muster's web/ folder above ${from}`);
    }
  }
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');
const sameSecret = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

interface Session {
  by: string;
  csrf: string;
  lastUsed: number;
  /** Logged out or expired: its event streams end too. */
  ended?: boolean;
}

/** Login links and sessions, in memory (a restart logs everyone out), on the injected clock. */
export class WebSessions {
  /** sha256(link token) -> who minted it and until when. */
  private readonly links = new Map<string, { by: string; expiresAt: number }>();
  /** sha256(cookie) -> the session. */
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly clock: Clock,
    private readonly linkTtlMs = LOGIN_LINK_TTL_MS,
    private readonly idleMs = SESSION_IDLE_MS,
  ) {}

  private sweep(): void {
    const now = this.clock.now();
    for (const [k, l] of this.links) if (l.expiresAt <= now) this.links.delete(k);
    for (const [k, s] of this.sessions) {
      if (now - s.lastUsed < this.idleMs) continue;
      s.ended = true;
      this.sessions.delete(k);
    }
  }

  /** A new one-time login token for `by`: only its hash is kept. */
  mint(by: string): { token: string; expiresAt: number } {
    this.sweep();
    if (this.links.size >= MAX_HELD) this.links.delete(this.links.keys().next().value!);
    const token = randomBytes(32).toString('base64url');
    const expiresAt = this.clock.now() + this.linkTtlMs;
    this.links.set(sha256(token), { by, expiresAt });
    return { token, expiresAt };
  }

  /** Spends a login token (once, before it expires) for a new session: its cookie value. */
  login(token: string): { cookie: string; session: Session } | undefined {
    this.sweep();
    const key = sha256(token);
    const link = this.links.get(key);
    this.links.delete(key);
    if (!link) return undefined;
    if (this.sessions.size >= MAX_HELD) this.sessions.delete(this.sessions.keys().next().value!);
    const cookie = randomBytes(32).toString('base64url');
    const session = { by: link.by, csrf: randomBytes(32).toString('base64url'), lastUsed: this.clock.now() };
    this.sessions.set(sha256(cookie), session);
    return { cookie, session };
  }

  /** The session a cookie holds, touched (idle expiry counts from now), or undefined. */
  session(cookie: string | undefined): Session | undefined {
    if (!cookie) return undefined;
    const key = sha256(cookie);
    const s = this.sessions.get(key);
    if (!s) return undefined;
    if (!this.live(s)) {
      s.ended = true;
      this.sessions.delete(key);
      return undefined;
    }
    s.lastUsed = this.clock.now();
    return s;
  }

  /** Not logged out and not idle for too long (without touching it: an open stream is not use). */
  live(s: Session): boolean {
    return !s.ended && this.clock.now() - s.lastUsed < this.idleMs;
  }

  logout(cookie: string | undefined): void {
    if (!cookie) return;
    const key = sha256(cookie);
    const s = this.sessions.get(key);
    if (s) s.ended = true;
    this.sessions.delete(key);
  }
}

/** The value of one cookie in a Cookie header. */
function cookieOf(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/**
 * The name just before every name that starts with `prefix`, among DNS labels (a-z, 0-9, '-', at most
 * 63 characters): a search starts its index walk there, never at the first node.
 */
export function beforePrefix(prefix: string): string {
  const last = prefix.at(-1)!;
  const head = prefix.slice(0, -1);
  if (last === '-') return head;
  const prev = last === 'a' ? '9' : last === '0' ? '-' : String.fromCharCode(last.charCodeAt(0) - 1);
  return head + prev + 'z'.repeat(63 - prefix.length);
}

const WebNodesQuery = Type.Object(
  {
    prefix: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,63}$' })),
    state: Type.Optional(
      Type.Union(
        ['heard', 'pending', 'accepted', 'issued', 'active', 'rejected', 'removed'].map((s) =>
          Type.Literal(s),
        ),
      ),
    ),
    role: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,63}$' })),
    group: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,63}$' })),
    after: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,63}$' })),
    limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,2}$' })),
  },
  { additionalProperties: false },
);
const LoginBody = Type.Object(
  { token: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' }) },
  { additionalProperties: false },
);
const EventsStreamQuery = Type.Object(
  { after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })) },
  { additionalProperties: false },
);

/** A node as the page shows it: no certificate bytes. */
function shown({ certificate: _c, spki: _s, ...node }: NodeRecord): Omit<NodeRecord, 'certificate' | 'spki'> {
  return node;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Same-origin scripts and styles only: no inline script, no CDN, no framing. */
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export interface AdminWebOptions {
  service: RegistrarService;
  log: Logger;
  clock: Clock;
  /** --admin-listen: a loopback HOST:PORT (port 0: any free one). */
  listen: string;
  /** The web/ folder (default: the package's). */
  assetsDir?: string;
  loginLinkTtlMs?: number;
  sessionIdleMs?: number;
}

export class AdminWeb {
  private constructor(
    readonly app: FastifyInstance,
    readonly sessions: WebSessions,
    private readonly origin: { host: string; port: number },
  ) {}

  /** http://HOST:PORT of the page. */
  get url(): string {
    const h = this.origin.host.includes(':') ? `[${this.origin.host}]` : this.origin.host;
    return `http://${h}:${this.origin.port}`;
  }

  /** A one-time login link for `by` (the admin socket's peer); its token is never logged. */
  loginLink(by: string): { url: string; expiresAt: string } {
    const { token, expiresAt } = this.sessions.mint(by);
    return { url: `${this.url}/login#${token}`, expiresAt: new Date(expiresAt).toISOString() };
  }

  async close(): Promise<void> {
    await this.app.close();
  }

  static async start(o: AdminWebOptions): Promise<AdminWeb> {
    const { host, port } = loopbackListen(o.listen);
    const assets = o.assetsDir ?? webAssetsDir();
    // The files the page is made of, read once: nothing else under web/ (or above it) is ever served.
    const files = new Map<string, { type: string; body: Buffer }>();
    for (const name of await fs.readdir(assets)) {
      const type = CONTENT_TYPES[path.extname(name)];
      if (type) files.set(name, { type, body: await fs.readFile(path.join(assets, name)) });
    }
    if (!files.has('index.html') || !files.has('login.html')) {
      throw new MusterError('MUSTER_ERR_CONFIG', `the web page's files are missing from ${assets}`);
    }
    const sessions = new WebSessions(o.clock, o.loginLinkTtlMs, o.sessionIdleMs);
    const app = Fastify({
      loggerInstance: o.log as unknown as FastifyBaseLogger,
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: 16 * 1024,
      ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    schemaController,
      frameworkErrors,
    }) as unknown as FastifyInstance;
    installErrorHandling(app);
    const web = new AdminWeb(app, sessions, { host, port });
    await web.routes(o, files);
    await app.listen({ host, port });
    web.origin.port = (app.server.address() as net.AddressInfo).port;
    o.log.info({ url: web.url }, 'admin web page listening (log in with: muster admin url)');
    return web;
  }

  /** Host (DNS rebinding) and Origin (CSRF) checks; the origins this page is served under. */
  private hosts(): Set<string> {
    const p = this.origin.port;
    const h = this.origin.host.includes(':') ? `[${this.origin.host}]` : this.origin.host;
    return new Set([`${h}:${p}`, ...(this.origin.host.startsWith('127.') ? [`localhost:${p}`] : [])]);
  }

  private async routes(
    o: AdminWebOptions,
    files: Map<string, { type: string; body: Buffer }>,
  ): Promise<void> {
    const app = this.app;
    const op = o.service.operator;
    const sessions = this.sessions;

    // Every request: the Host must be this page's own (a rebound name of another site is refused).
    app.addHook('onRequest', async (req) => {
      if (!this.hosts().has(req.headers.host ?? '')) {
        throw new MusterError(
          'host_refused',
          `this page answers only as ${this.url}, not as ${JSON.stringify(req.headers.host ?? '')}`,
        );
      }
    });

    /** A change: same origin, and the session's CSRF token in its header. */
    const checkOrigin = (req: FastifyRequest): void => {
      const origin = req.headers.origin;
      const site = req.headers['sec-fetch-site'];
      const allowed = [...this.hosts()].map((h) => `http://${h}`);
      if (origin !== undefined ? !allowed.includes(origin) : site !== undefined && site !== 'same-origin') {
        throw new MusterError('csrf_refused', 'a request from another site; nothing was changed');
      }
    };
    const session = (req: FastifyRequest): Session => {
      const s = sessions.session(cookieOf(req.headers.cookie, SESSION_COOKIE));
      if (!s)
        throw new MusterError(
          'session_required',
          'not logged in (or the session expired): run muster admin url',
        );
      return s;
    };
    /** The session of a change, after the Origin and CSRF checks; `by` acts. */
    const changer = (req: FastifyRequest): string => {
      const s = session(req);
      checkOrigin(req);
      const sent = req.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !sameSecret(sent, s.csrf)) {
        throw new MusterError('csrf_refused', `missing or wrong ${CSRF_HEADER} header; nothing was changed`);
      }
      return `${s.by} via the web page`;
    };

    const page = (name: string) => async (_req: FastifyRequest, reply: FastifyReply) => {
      const f = files.get(name)!;
      return reply.headers(PAGE_HEADERS).type(f.type).send(f.body);
    };
    app.get('/', page('index.html'));
    app.get('/login', page('login.html'));
    app.get('/assets/:file', async (req, reply) => {
      const f = files.get((req.params as { file: string }).file);
      if (!f) throw new MusterError('not_found', 'no such file');
      return reply.headers(PAGE_HEADERS).type(f.type).send(f.body);
    });

    // ---- session ----
    app.post('/api/login', { schema: { body: LoginBody } }, async (req, reply) => {
      checkOrigin(req);
      const got = sessions.login((req.body as Static<typeof LoginBody>).token);
      if (!got) {
        throw new MusterError(
          'session_required',
          'this login link was used already or has expired: run muster admin url for a new one',
        );
      }
      o.log.info({ by: got.session.by }, 'admin web page: logged in');
      return reply
        .header(
          'set-cookie',
          // A browser-session cookie; the server ends the session itself when idle (SESSION_IDLE_MS).
          `${SESSION_COOKIE}=${got.cookie}; HttpOnly; SameSite=Strict; Path=/`,
        )
        .header('cache-control', 'no-store')
        .send({ by: got.session.by });
    });
    // The event streams of each session: they end with it (logout), not only when the page goes.
    const streams = new Map<Session, Set<ServerResponse>>();
    app.addHook('preClose', async () => {
      for (const set of streams.values()) for (const raw of set) raw.end();
    });

    app.post('/api/logout', async (req, reply) => {
      const s = session(req);
      changer(req);
      sessions.logout(cookieOf(req.headers.cookie, SESSION_COOKIE));
      for (const raw of streams.get(s) ?? []) raw.end();
      return reply
        .header('set-cookie', `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`)
        .send({ ok: true });
    });
    app.get('/api/session', async (req, reply) => {
      const s = session(req);
      return reply.header('cache-control', 'no-store').send({ by: s.by, csrf: s.csrf });
    });

    // ---- reads ----
    app.get('/api/status', async (req) => {
      session(req);
      return {
        ...(await o.service.info()),
        counts: await op.counts(),
        installMode: await op.installModeStatus(),
      };
    });
    app.get('/api/pending', async (req) => {
      session(req);
      const nodes = await op.listNodes({ state: 'pending', limit: 200 });
      return { nodes: nodes.map(shown) };
    });
    app.get('/api/tokens', async (req) => {
      session(req);
      return { tokens: await op.listTokens() };
    });
    app.get('/api/nodes', { schema: { querystring: WebNodesQuery } }, async (req) => {
      session(req);
      return this.nodesPage(o, req.query as Static<typeof WebNodesQuery>);
    });
    app.get('/api/nodes/:name', { schema: { params: NameParams } }, async (req) => {
      session(req);
      const { node, history } = await op.showNode((req.params as Static<typeof NameParams>).name);
      return { node: shown(node), history: history.map(shown) };
    });

    // ---- changes ----
    for (const action of ['approve', 'reject'] as const) {
      app.post(`/api/nodes/:name/${action}`, { schema: { params: NameParams } }, async (req) => {
        const by = changer(req);
        return shown(await op[action]((req.params as Static<typeof NameParams>).name, by));
      });
    }
    app.post('/api/install-mode', { schema: { body: InstallModeBody } }, async (req) => {
      changer(req);
      return setInstallMode(op, req.body as Static<typeof InstallModeBody>);
    });
    app.post('/api/tokens', { schema: { body: CreateTokenBody } }, async (req, reply) => {
      changer(req);
      const { token, view } = await createToken(op, req.body as Static<typeof CreateTokenBody>);
      // The secret goes to this answer only (shown once by the page, never stored by it).
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .send({ token, ...view });
    });
    app.delete('/api/tokens/:id', { schema: { params: TokenIdParams } }, async (req) => {
      changer(req);
      return op.revokeToken((req.params as Static<typeof TokenIdParams>).id);
    });

    // ---- the event stream (SSE): `id:` is the event's sequence number ----
    app.get('/api/events', { schema: { querystring: EventsStreamQuery } }, async (req, reply) => {
      const s = session(req);
      // A reconnecting EventSource sends the last id it saw: the stream goes on from there.
      const lastId = req.headers['last-event-id'];
      const q = (req.query as Static<typeof EventsStreamQuery>).after;
      let after: number;
      if (typeof lastId === 'string' && /^[0-9]{1,15}$/.test(lastId)) after = Number(lastId);
      else if (q !== undefined) after = Number(q);
      else after = await tailStart(o.service.registry, EVENTS_TAIL);
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
      });
      raw.write('retry: 1000\n\n');
      const mine = streams.get(s) ?? new Set<ServerResponse>();
      streams.set(s, mine.add(raw));
      // A session that expired while its stream was open gets nothing more (the page then asks for
      // a new login); an open stream does not count as use.
      const send = (text: string): void => {
        if (sessions.live(s)) raw.write(text);
        else raw.end();
      };
      const heartbeat = setInterval(() => send(': still here\n\n'), HEARTBEAT_MS);
      const stop = followEvents(
        o.service,
        after,
        (ev) => send(`id: ${ev.seq}\nevent: muster\ndata: ${JSON.stringify(ev)}\n\n`),
        (err) => {
          // The store failed the replay: end the stream; the browser reconnects from its last id.
          o.log.warn({ err: err.message }, 'admin web page: the event stream failed');
          raw.end();
        },
      );
      raw.on('close', () => {
        mine.delete(raw);
        if (!mine.size) streams.delete(s);
        clearInterval(heartbeat);
        stop();
      });
    });
  }

  /**
   * One page of the node table. Name prefix, state and group are index reads (the walk starts at the
   * prefix, on the state or group index, and stops past it); role has no index, so it filters the
   * walk within WEB_NODE_SCAN_BUDGET records and `next` says where to go on. Never a full scan.
   */
  private async nodesPage(
    o: AdminWebOptions,
    q: Static<typeof WebNodesQuery>,
  ): Promise<{ nodes: ReturnType<typeof shown>[]; next?: string }> {
    const limit = Number(q.limit ?? 50);
    const start = q.prefix ? beforePrefix(q.prefix) : undefined;
    let cursor = q.after !== undefined && (start === undefined || q.after > start) ? q.after : start;
    const chunk = q.role ? 500 : limit;
    const nodes: NodeRecord[] = [];
    let scanned = 0;
    for (;;) {
      const page = await o.service.operator.listNodes({
        limit: chunk,
        ...(q.state ? { state: q.state as NodeState } : {}),
        ...(q.group ? { group: q.group } : {}),
        ...(cursor !== undefined ? { after: cursor } : {}),
      });
      for (const rec of page) {
        if (q.prefix && !rec.name.startsWith(q.prefix)) return { nodes: nodes.map(shown) };
        scanned++;
        cursor = rec.name;
        if (q.role && rec.role !== q.role) continue;
        nodes.push(rec);
        if (nodes.length === limit) return { nodes: nodes.map(shown), next: rec.name };
      }
      if (page.length < chunk) return { nodes: nodes.map(shown) };
      if (scanned >= WEB_NODE_SCAN_BUDGET) return { nodes: nodes.map(shown), next: cursor! };
    }
  }
}
