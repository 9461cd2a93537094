/**
 * The server side of a benchmark, in its own process (forked by lib.ts ServerChild), so that
 * process.cpuUsage() here counts the server only. Modes:
 *   floor:     a bare node:https server: TLS handshake, read the body, one RSA-2048 signature of
 *              300 bytes, a small JSON answer. Same TLS identity kind as the registrar's (EC P-256
 *              leaf issued by an RSA-2048 CA), so the handshakes cost the same.
 *   registrar: muster's startRegistrar (mDNS off, 127.0.0.1:0), logging JSON to stdout (a file); on
 *              cfg.store (etcd://...) when given.
 * IPC: {cmd: 'cpu' | 'prof-start' | 'prof-stop' | 'stop'}.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { Session } from 'node:inspector';
import path from 'node:path';
import type { ChildConfig } from './lib.js';

const cfg = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;
const send = (m: Record<string, unknown>): void => void process.send?.(m);

let close: () => Promise<void> = async () => undefined;
let session: Session | undefined;

const post = <T>(method: string, params?: Record<string, unknown>): Promise<T> =>
  new Promise((resolve, reject) =>
    session!.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))),
  );

process.on('message', (m: { cmd: string; intervalUs?: number; file?: string }) => {
  void (async () => {
    switch (m.cmd) {
      case 'cpu': {
        const c = process.cpuUsage();
        // A registrar on etcd: its etcd calls and lost commits too (the scale bench, per join).
        const etcd = cfg.store?.startsWith('etcd')
          ? (await import('../store/etcd.js')).etcdStats()
          : undefined;
        send({ type: 'cpu', userMs: c.user / 1000, systemMs: c.system / 1000, ...(etcd ? { etcd } : {}) });
        break;
      }
      case 'prof-start':
        // The V8 CPU profiler (what --cpu-prof uses), started and stopped around the measured window.
        session = new Session();
        session.connect();
        await post('Profiler.enable');
        await post('Profiler.setSamplingInterval', { interval: m.intervalUs ?? 500 });
        await post('Profiler.start');
        send({ type: 'prof-started' });
        break;
      case 'prof-stop': {
        const { profile } = await post<{ profile: unknown }>('Profiler.stop');
        session!.disconnect();
        session = undefined;
        await fs.writeFile(m.file!, JSON.stringify(profile));
        send({ type: 'prof-stopped' });
        break;
      }
      case 'stop':
        await close();
        process.exit(0);
    }
  })().catch((err: Error) =>
    send({ type: m.cmd === 'prof-stop' ? 'prof-stopped' : m.cmd, error: err.message }),
  );
});

async function startFloor(): Promise<void> {
  const https = await import('node:https');
  const { loadOrCreateCa, issueServerIdentity } = await import('../registrar/ca.js');
  const { ca } = await loadOrCreateCa(path.join(cfg.dir, 'floor-ca'), 'muster bench floor', new Date());
  const identity = issueServerIdentity(ca, 'r-floor', ['127.0.0.1'], new Date());
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const server = https.createServer({ key: identity.keyPem, cert: identity.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const tbs = Buffer.alloc(300);
      body.copy(tbs, 0, 0, 300);
      const sig = sign('sha256', tbs, rsa);
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ sig: sig.toString('base64') }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  close = () => new Promise((r) => server.close(() => r()));
  send({ type: 'ready', url: `https://127.0.0.1:${port}`, port, readyAtMs: performance.now() });
}

async function startMuster(): Promise<void> {
  const t0 = performance.now();
  const [{ startRegistrar }, { createLogger }] = await Promise.all([
    import('../registrar/main.js'),
    import('../common/log.js'),
  ]);
  const t1 = performance.now();
  const adminSocket = path.join(cfg.dir, 'admin.sock');
  const reg = await startRegistrar({
    stateDir: cfg.stateDir ?? path.join(cfg.dir, 'registrar'),
    listen: '127.0.0.1:0',
    cluster: cfg.cluster ?? 'bench',
    autoregister: 'local',
    adminSocket,
    mdns: false,
    log: createLogger({ name: 'muster-registrar', fd: 1, format: 'json' }),
    ...(cfg.rateLimit ? { rateLimit: cfg.rateLimit } : {}),
    ...(cfg.maxInFlightJoins ? { maxInFlightJoins: cfg.maxInFlightJoins } : {}),
    ...(cfg.store ? { store: cfg.store } : {}),
  });
  const t2 = performance.now();
  close = () => reg.close();
  send({
    type: 'ready',
    url: `https://127.0.0.1:${reg.port}`,
    port: reg.port,
    adminSocket,
    importMs: t1 - t0,
    startMs: t2 - t1,
    readyAtMs: t2,
  });
}

/**
 * The steps of startRegistrar (registrar/main.ts) one by one, each timed (wall ms), for the cold
 * start breakdown. Imports are timed per module in the order main.ts needs them.
 */
async function startPhases(): Promise<void> {
  const phases: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string): void => {
    const now = performance.now();
    phases[name] = (phases[name] ?? 0) + now - t;
    t = now;
  };
  phases['process start -> bench child code (node bootstrap)'] = performance.now();
  t = performance.now();
  await import('fastify');
  lap('import fastify');
  await import('../registrar/metrics.js');
  lap('import prom-client (the four classes registrar/metrics.ts takes)');
  // The level backend with the level package under it: the module load the registrar pays at start.
  await import('../store/level.js');
  lap('import the level store (level, classic-level)');
  await import('pino');
  lap('import pino');
  await import('bonjour-service');
  lap('import bonjour-service');
  const { startRegistrar: _unused } = await import('../registrar/main.js');
  lap('import registrar/main.js (rest)');
  const { createLogger } = await import('../common/log.js');
  const { openRegistry } = await import('../store/index.js');
  const { loadOrCreateCa, issueServerIdentity } = await import('../registrar/ca.js');
  const { RegistrarService } = await import('../registrar/service.js');
  const { Metrics } = await import('../registrar/metrics.js');
  const { buildApi } = await import('../fallback/api.js');
  const { buildAdminApi } = await import('../registrar/admin-api.js');
  const { systemClock } = await import('../common/clock.js');
  lap('import registrar/main.js (rest)');
  const log = createLogger({ name: 'muster-registrar', fd: 1, format: 'json' });
  const stateDir = cfg.stateDir ?? path.join(cfg.dir, 'registrar');
  const registry = await openRegistry({ kind: 'level', dir: path.join(stateDir, 'registry') });
  lap('openRegistry (level open, counters, tokens)');
  const id = await registry.identity(() => {
    throw new Error(`no registrar id in ${stateDir}: build the store first`);
  });
  const { ca } = await loadOrCreateCa(path.join(stateDir, 'ca'), 'unused', new Date());
  lap('loadOrCreateCa (read CA key and cert)');
  const identity = issueServerIdentity(ca, id, ['127.0.0.1'], new Date());
  lap('issueServerIdentity (EC key + RSA signature)');
  const service = await RegistrarService.create({
    registry,
    ca,
    clock: systemClock,
    log,
    registrarId: id,
    cluster: cfg.cluster ?? 'bench',
    role: 'main',
    url: () => '',
    autoregister: 'local',
    isOnLink: () => false,
  });
  lap('RegistrarService.create (operator state, accepted scan)');
  const metrics = new Metrics({
    counts: () => service.operator.counts(),
    installModeOn: async () => (await service.operator.installModeStatus()).on,
  });
  const api = await buildApi({
    onResponse: (r) => metrics.observe(r),
    service,
    log,
    https: { key: identity.keyPem, cert: identity.certPem },
  });
  lap('buildApi (fastify, rate limit, routes)');
  await api.listen({ host: '127.0.0.1', port: 0 });
  lap('api.listen (ready: schema compilation, TLS context)');
  const adminSocket = path.join(cfg.dir, 'phases-admin.sock');
  await fs.rm(adminSocket, { force: true });
  const adminApi = await buildAdminApi(service, log, metrics);
  lap('buildAdminApi');
  await adminApi.listen({ path: adminSocket });
  lap('admin listen');
  close = async () => {
    service.close();
    await api.close();
    await adminApi.close();
    await registry.close();
  };
  send({ type: 'ready', url: '', port: 0, phases, readyAtMs: performance.now() });
}

(cfg.mode === 'floor' ? startFloor() : cfg.mode === 'phases' ? startPhases() : startMuster()).catch(
  (err: Error) => {
    process.stderr.write(`bench child: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
