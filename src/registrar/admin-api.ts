/**
 * The admin API on a Unix socket (mode 0600: only the registrar's user, normally root, can operate it).
 * The operator CLI is its only client (DESIGN "CLI"). No TLS: the socket's file permission is the
 * authentication.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
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
import { TOKEN_TTL_DEFAULT_MS } from '../common/limits.js';
import type { MusterEvent, NodeRecord, NodeState } from '../store/types.js';
import type { GroupChange } from './groups.js';
import type { Metrics } from './metrics.js';
import type { RegistrarService } from './service.js';

export async function buildAdminApi(
  svc: RegistrarService,
  log: Logger,
  metrics?: Metrics,
): Promise<FastifyInstance> {
  const op = svc.operator;
  const app = Fastify({
    loggerInstance: log as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 16 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    frameworkErrors,
  }) as unknown as FastifyInstance;
  installErrorHandling(app);
  const operator = (body: unknown): string => {
    const who = (body as Static<typeof OperatorBody> | undefined)?.operator;
    return `operator ${who || 'unknown'} (admin socket)`;
  };

  app.get('/v1/admin/status', async () => ({
    ...(await svc.info()),
    counts: await op.counts(),
    installMode: await op.installModeStatus(),
  }));

  app.get('/metrics', async (_req, reply) => {
    if (!metrics) return reply.code(404).send({ error: 'not_found', message: 'metrics are off' });
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  app.get('/v1/admin/install-mode', async () => op.installModeStatus());
  app.post('/v1/admin/install-mode', { schema: { body: InstallModeBody } }, async (req) => {
    const b = req.body as Static<typeof InstallModeBody>;
    if (!b.on) return op.installModeOff();
    return op.installModeOn({
      forMs: b.forMs,
      max: b.max ?? null,
      remote: b.remote ?? false,
      ...(b.role ? { role: b.role } : {}),
      ...(b.cluster ? { cluster: b.cluster } : {}),
    });
  });

  app.post('/v1/admin/tokens', { schema: { body: CreateTokenBody } }, async (req, reply) => {
    const b = req.body as Static<typeof CreateTokenBody>;
    const { token, view } = await op.createToken({
      ttlMs: b.ttlMs === undefined ? TOKEN_TTL_DEFAULT_MS : b.ttlMs,
      maxUses: b.uses ?? null,
      roles: b.roles ?? [],
      clusters: b.clusters ?? [],
      ...(b.description ? { description: b.description } : {}),
    });
    return reply.code(201).send({ token, ...view });
  });
  app.get('/v1/admin/tokens', async () => ({ tokens: await op.listTokens() }));
  app.delete('/v1/admin/tokens/:id', { schema: { params: TokenIdParams } }, async (req) =>
    op.revokeToken((req.params as Static<typeof TokenIdParams>).id),
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
      nodes: nodes.map(({ certificate: _c, spki: _s, ...n }) => n),
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
        const { certificate: _c, spki: _s, ...node } = await op[action](name, operator(req.body));
        return node;
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
      return reply.code(201).send(await op.preapprove(name, preapproveOpts(b), operator(b)));
    },
  );
  app.post(
    '/v1/admin/nodes/:name/rebuild',
    { schema: { params: NameParams, body: PreapproveBody } },
    async (req) => {
      const { name } = req.params as Static<typeof NameParams>;
      const b = req.body as Static<typeof PreapproveBody>;
      const { removed, preapproval } = await op.rebuild(name, preapproveOpts(b), operator(b));
      const { certificate: _c, spki: _s, ...node } = removed ?? ({} as Partial<NodeRecord>);
      return { ...(removed ? { removed: node } : {}), preapproval };
    },
  );
  app.post(
    '/v1/admin/nodes/:name/force-approve',
    { schema: { params: NameParams, body: ForceApproveBody } },
    async (req) => {
      const { name } = req.params as Static<typeof NameParams>;
      const b = req.body as Static<typeof ForceApproveBody>;
      const { removed, preapproval } = await op.forceApprove(name, b.key, operator(b));
      const { certificate: _c, spki: _s, ...node } = removed ?? ({} as Partial<NodeRecord>);
      return { ...(removed ? { removed: node } : {}), preapproval };
    },
  );
  // Groups (DESIGN "Groups"): the node learns its group at its next contact, nothing is restarted.
  const groupChange = ({ node: { certificate: _c, spki: _s, ...node }, ...r }: GroupChange) => ({
    ...r,
    node,
  });
  app.post(
    '/v1/admin/nodes/:name/group',
    { schema: { params: NameParams, body: GroupBody } },
    async (req) => {
      const { name } = req.params as Static<typeof NameParams>;
      const b = req.body as Static<typeof GroupBody>;
      return groupChange(await op.groups.set(name, b.group, { force: b.force ?? false }, operator(b)));
    },
  );
  app.delete(
    '/v1/admin/nodes/:name/group',
    { schema: { params: NameParams, body: OperatorBody } },
    async (req) => {
      const { name } = req.params as Static<typeof NameParams>;
      return groupChange(await op.groups.unset(name, operator(req.body)));
    },
  );
  app.get('/v1/admin/groups', async () => ({ groups: await op.groups.list() }));

  app.get('/v1/admin/preapprovals', async () => ({ preapprovals: await op.listPreapprovals() }));
  const banTarget = (b: Static<typeof BanBody>) =>
    'name' in b ? { kind: 'name' as const, value: b.name } : { kind: 'key' as const, value: b.key };
  app.post('/v1/admin/bans', { schema: { body: BanBody } }, async (req, reply) => {
    const b = req.body as Static<typeof BanBody>;
    return reply.code(201).send(await op.ban(banTarget(b), operator(b), b.reason));
  });
  app.post('/v1/admin/bans/lift', { schema: { body: BanBody } }, async (req) => {
    const b = req.body as Static<typeof BanBody>;
    return op.unban(banTarget(b), operator(b));
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
    if (q.follow !== 'true')
      return { events: await op.listEvents(after, Math.min(Math.max(Number(q.limit ?? 1000), 1), 10_000)) };
    // Follow: NDJSON, first the stored events after `after`, then live ones, until the client goes.
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    let last = after;
    const buffered: MusterEvent[] = [];
    let replaying = true;
    const write = (ev: MusterEvent): void => {
      if (ev.seq <= last) return;
      last = ev.seq;
      raw.write(JSON.stringify(ev) + '\n');
    };
    const onEvent = (ev: MusterEvent): void => {
      if (replaying) buffered.push(ev);
      else write(ev);
    };
    const unwatch = svc.registry.watch(onEvent);
    followers.add(raw);
    const stop = (): void => {
      followers.delete(raw);
      unwatch();
    };
    raw.on('close', stop);
    for (;;) {
      const page = await op.listEvents(last, 1000);
      for (const ev of page) write(ev);
      if (page.length < 1000) break;
    }
    replaying = false;
    for (const ev of buffered.splice(0)) write(ev);
  });

  return app;
}
