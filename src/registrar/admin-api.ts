/**
 * The admin API on a Unix socket (mode 0600: only the registrar's user, normally root, can operate it).
 * The operator CLI is its only client (DESIGN "CLI"). No TLS: the socket's file permission is the
 * authentication.
 */
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
} from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { Logger } from '../common/log.js';
import { frameworkErrors, installErrorHandling } from '../fallback/http-errors.js';
import {
  BanBody,
  CreateTokenBody,
  EventsQuery,
  ForceApproveBody,
  GroupBody,
  InstallModeBody,
  ListNodesQuery,
  NameParams,
  OperatorBody,
  PreapproveBody,
  TokenIdParams,
} from '../admin/schemas.js';
import { schemaController } from '../fallback/validate.js';
import { TOKEN_TTL_DEFAULT_MS } from '../common/limits.js';
import { EVENT_TYPES, type MusterEvent, type NodeRecord, type NodeState } from '../store/types.js';
import { MusterError } from '../common/errors.js';
import { followEvents } from './event-follow.js';
import type { GroupChange } from './groups.js';
import type { Metrics } from './metrics.js';
import { PeerIdentity } from './peer-cred.js';
import type { Operator } from './operator.js';
import type { RegistrarService } from './service.js';

/** Events one filtered `GET /v1/admin/events` reads at most before it answers with `next`. */

/** A node record as the admin API shows it: without the certificate and key bytes (`nodes show` has them). */
function listed({
  certificate: _c,
  spki: _s,
  ...node
}: NodeRecord): Omit<NodeRecord, 'certificate' | 'spki'> {
  return node;
}

/** The answer of rebuild and approve --force: the record the name passed from, if any, and the pre-approval. */
function replaced<P>(r: { removed?: NodeRecord; preapproval: P }) {
  return { ...(r.removed ? { removed: listed(r.removed) } : {}), preapproval: r.preapproval };
}
export const EVENT_SCAN_BUDGET = 100_000;

/** The `type` filter: each of a comma list must be an event type (bad_request names the unknown one). */
function eventTypes(q: string): Set<string> {
  const types = new Set(q.split(','));
  for (const t of types) {
    if (!(EVENT_TYPES as readonly string[]).includes(t)) {
      throw new MusterError(
        'bad_request',
        `${JSON.stringify(t)} is not an event type (known: ${EVENT_TYPES.join(', ')})`,
      );
    }
  }
  return types;
}

/** The admin web page (registrar/admin-web.ts), when --admin-listen is set: it mints login links. */
export interface AdminWebLinks {
  loginLink(by: string): { url: string; expiresAt: string };
}

/** An install-mode body (admin API and web page) applied through the operator service. */
export function setInstallMode(op: Operator, b: Static<typeof InstallModeBody>) {
  if (!b.on) return op.installModeOff();
  return op.installModeOn({
    forMs: b.forMs,
    max: b.max ?? null,
    remote: b.remote ?? false,
    ...(b.role ? { role: b.role } : {}),
    ...(b.cluster ? { cluster: b.cluster } : {}),
  });
}

/** A token-create body (admin API and web page) applied through the operator service. */
export function createToken(op: Operator, b: Static<typeof CreateTokenBody>) {
  return op.createToken({
    ttlMs: b.ttlMs === undefined ? TOKEN_TTL_DEFAULT_MS : b.ttlMs,
    maxUses: b.uses ?? null,
    roles: b.roles ?? [],
    clusters: b.clusters ?? [],
    ...(b.description ? { description: b.description } : {}),
  });
}

export async function buildAdminApi(
  svc: RegistrarService,
  log: Logger,
  metrics?: Metrics,
  web?: AdminWebLinks,
): Promise<FastifyInstance> {
  const op = svc.operator;
  const app = Fastify({
    loggerInstance: log as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 16 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    schemaController,
    frameworkErrors,
  }) as unknown as FastifyInstance;
  installErrorHandling(app);
  // The operator is who the kernel says is at the other end of the admin socket (SO_PEERCRED,
  // registrar/peer-cred.ts), e.g. `alice (uid 1000)`: never the body's `operator` field, which old
  // CLIs still send and the schema still accepts (issue 10, item 3).
  const peers = new PeerIdentity(log);
  const operator = (req: FastifyRequest): Promise<string> => peers.of(req.socket);

  app.get('/v1/admin/status', async () => ({
    ...(await svc.info()),
    counts: await op.counts(),
    installMode: await op.installModeStatus(),
  }));

  app.get('/metrics', async (_req, reply) => {
    if (!metrics) return reply.code(404).send({ error: 'not_found', message: 'metrics are off' });
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  // `muster admin url` (issue 13): a one-time login link for the web page, for whoever holds this
  // socket; the page acts as that operator. The link is the answer only: never logged.
  app.post('/v1/admin/web/login-link', async (req, reply) => {
    if (!web) {
      throw new MusterError(
        'web_page_off',
        'the admin web page is off: start the registrar with --admin-listen 127.0.0.1:PORT',
      );
    }
    return reply.header('cache-control', 'no-store').send(web.loginLink(await operator(req)));
  });

  app.get('/v1/admin/install-mode', async () => op.installModeStatus());
  app.post('/v1/admin/install-mode', { schema: { body: InstallModeBody } }, async (req) => {
    return setInstallMode(op, req.body as Static<typeof InstallModeBody>);
  });

  app.post('/v1/admin/tokens', { schema: { body: CreateTokenBody } }, async (req, reply) => {
    const { token, view } = await createToken(op, req.body as Static<typeof CreateTokenBody>);
    return reply.code(201).send({ token, ...view });
  });
  app.get('/v1/admin/tokens', async () => ({ tokens: await op.listTokens() }));
  app.delete('/v1/admin/tokens/:id', { schema: { params: TokenIdParams } }, async (req) =>
    op.revokeToken((req.params as Static<typeof TokenIdParams>).id),
  );
  // A token locked by too many bad proofs admits again (DESIGN "Lockout").
  app.post('/v1/admin/tokens/:id/unlock', { schema: { params: TokenIdParams } }, async (req) =>
    op.unlockToken((req.params as Static<typeof TokenIdParams>).id, await operator(req)),
  );

  app.get('/v1/admin/nodes', { schema: { querystring: ListNodesQuery } }, async (req) => {
    const q = req.query as Static<typeof ListNodesQuery>;
    const limit = Math.min(Math.max(Number(q.limit ?? 100), 1), 1000);
    const opts = {
      limit,
      ...(q.state ? { state: q.state as NodeState } : {}),
      ...(q.after ? { after: q.after } : {}),
      ...(q.group ? { group: q.group } : {}),
    };
    let nodes: NodeRecord[];
    let next: string | undefined;
    if (q.stale !== undefined) {
      ({ nodes, next } = await op.listStaleNodes({ ...opts, staleMs: Number(q.stale) * 1000 }));
    } else {
      nodes = await op.listNodes(opts);
      if (nodes.length === limit) next = nodes[nodes.length - 1]?.name;
    }
    return {
      nodes: nodes.map(listed),
      counts: await op.counts(),
      ...(next !== undefined ? { next } : {}),
    };
  });
  app.get('/v1/admin/nodes/:name', { schema: { params: NameParams } }, async (req) =>
    op.showNode((req.params as Static<typeof NameParams>).name),
  );
  for (const action of ['approve', 'reject', 'remove'] as const) {
    app.post(
      `/v1/admin/nodes/:name/${action}`,
      { schema: { params: NameParams, body: OperatorBody } },
      async (req) => {
        const { name } = req.params as Static<typeof NameParams>;
        return listed(await op[action](name, await operator(req)));
      },
    );
  }

  // Pre-approval, rebuild and bans (issue 9, item 3).
  const preapproveOpts = (b: Static<typeof PreapproveBody>) => ({
    // Absent: a day, like a join token (a pre-approval without --key admits any key that asks first).
    ttlMs: b.ttlMs === undefined ? TOKEN_TTL_DEFAULT_MS : b.ttlMs,
    ...(b.key ? { key: b.key } : {}),
    ...(b.role ? { role: b.role } : {}),
  });
  app.post(
    '/v1/admin/nodes/:name/preapprove',
    { schema: { params: NameParams, body: PreapproveBody } },
    async (req, reply) => {
      const { name } = req.params as Static<typeof NameParams>;
      const b = req.body as Static<typeof PreapproveBody>;
      return reply.code(201).send(await op.preapprove(name, preapproveOpts(b), await operator(req)));
    },
  );
  app.post(
    '/v1/admin/nodes/:name/rebuild',
    { schema: { params: NameParams, body: PreapproveBody } },
    async (req) => {
      const { name } = req.params as Static<typeof NameParams>;
      const b = req.body as Static<typeof PreapproveBody>;
      return replaced(await op.rebuild(name, preapproveOpts(b), await operator(req)));
    },
  );
  app.post(
    '/v1/admin/nodes/:name/force-approve',
    { schema: { params: NameParams, body: ForceApproveBody } },
    async (req) => {
      const { name } = req.params as Static<typeof NameParams>;
      const b = req.body as Static<typeof ForceApproveBody>;
      return replaced(await op.forceApprove(name, b.key, await operator(req)));
    },
  );
  // Groups (DESIGN "Groups"): the node learns its group at its next contact, nothing is restarted.
  const groupChange = ({ node, ...r }: GroupChange) => ({ ...r, node: listed(node) });
  app.post(
    '/v1/admin/nodes/:name/group',
    { schema: { params: NameParams, body: GroupBody } },
    async (req) => {
      const { name } = req.params as Static<typeof NameParams>;
      const b = req.body as Static<typeof GroupBody>;
      return groupChange(
        await op.groups.set(name, b.group, { force: b.force ?? false }, await operator(req)),
      );
    },
  );
  app.delete(
    '/v1/admin/nodes/:name/group',
    { schema: { params: NameParams, body: OperatorBody } },
    async (req) => {
      const { name } = req.params as Static<typeof NameParams>;
      return groupChange(await op.groups.unset(name, await operator(req)));
    },
  );
  app.get('/v1/admin/groups', async () => ({ groups: await op.groups.list() }));

  app.get('/v1/admin/preapprovals', async () => ({ preapprovals: await op.listPreapprovals() }));
  const banTarget = (b: Static<typeof BanBody>) =>
    'name' in b ? { kind: 'name' as const, value: b.name } : { kind: 'key' as const, value: b.key };
  app.post('/v1/admin/bans', { schema: { body: BanBody } }, async (req, reply) => {
    const b = req.body as Static<typeof BanBody>;
    return reply.code(201).send(await op.ban(banTarget(b), await operator(req), b.reason));
  });
  app.post('/v1/admin/bans/lift', { schema: { body: BanBody } }, async (req) => {
    const b = req.body as Static<typeof BanBody>;
    return op.unban(banTarget(b), await operator(req));
  });
  app.get('/v1/admin/bans', async () => ({ bans: await op.listBans() }));

  // Streams of `events --follow` end when the registrar stops (or close() would wait for them).
  const followers = new Set<import('node:http').ServerResponse>();
  app.addHook('preClose', async () => {
    for (const raw of followers) raw.end();
  });

  app.get('/v1/admin/events', { schema: { querystring: EventsQuery } }, async (req, reply) => {
    const q = req.query as Static<typeof EventsQuery>;
    const after = Number(q.after ?? 0);
    const types = q.type === undefined ? undefined : eventTypes(q.type);
    const wanted = (ev: MusterEvent): boolean => types === undefined || types.has(ev.type);
    const limit = Math.min(Math.max(Number(q.limit ?? 1000), 1), 10_000);
    if (q.follow !== 'true') {
      if (!types) return { events: await op.listEvents(after, limit) };
      // Filtered: read on until the page is full or the log ends, within a budget; `next` is where
      // the next page starts when the read stopped with more of the log to go.
      const events: MusterEvent[] = [];
      let cursor = after;
      for (let read = 0; ;) {
        const page = await op.listEvents(cursor, 1000);
        read += page.length;
        for (const ev of page) {
          cursor = ev.seq;
          if (wanted(ev)) events.push(ev);
          if (events.length === limit) return { events, next: cursor };
        }
        if (page.length < 1000) return { events };
        if (read >= EVENT_SCAN_BUDGET) return { events, next: cursor };
      }
    }
    // Follow: NDJSON, first the stored events after `after`, then live ones, until the client goes.
    // A client that reconnects (events --follow after a restart) asks after the last seq it printed.
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const stop = followEvents(
      svc,
      after,
      (ev) => {
        if (wanted(ev)) raw.write(JSON.stringify(ev) + '\n');
      },
      (err) => {
        // The store failed the replay: end the stream; the CLI reconnects from its last event.
        log.warn({ err: err.message }, 'events --follow: the event stream failed');
        raw.end();
      },
    );
    followers.add(raw);
    raw.on('close', () => {
      followers.delete(raw);
      stop();
    });
  });

  return app;
}
