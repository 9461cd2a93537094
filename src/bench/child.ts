/**
 * The server side of a benchmark, in its own process (forked by lib.ts ServerChild), so that
 * process.cpuUsage() here counts the server only. Modes:
 *   floor:     a bare node:https server: TLS handshake, read the body, one RSA-2048 signature of
 *              300 bytes, a small JSON answer. Same TLS identity kind as the registrar's (EC P-256
 *              leaf issued by an RSA-2048 CA), so the handshakes cost the same.
 *   essential: the work no registrar can skip for a token join, with plain node primitives (see
 *              startEssential): the floor's handshake and RSA signature, plus the CSR's proof of
 *              possession, the token proof, an fsync'd group-committed write and a ~3 kB answer.
 *   registrar: muster's startRegistrar (mDNS off, 127.0.0.1:0), logging JSON to stdout (a file); on
 *              cfg.store (etcd://...) when given.
 * IPC: {cmd: 'cpu' | 'prof-start' | 'prof-stop' | 'stop'}.
 */
import { createHash, createHmac, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
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

// ---- essential: a token join with only the work no registrar can skip ----

/** One DER TLV: its tag, where its value starts and where it ends. Short and long lengths (X.690 8.1.3). */
interface Tlv {
  tag: number;
  start: number;
  end: number;
}

function tlv(der: Buffer, at: number): Tlv {
  if (at + 2 > der.length) throw new Error('truncated DER');
  const tag = der[at]!;
  let len = der[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 3) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  const end = start + len;
  if (end > der.length) throw new Error('truncated DER');
  return { tag, start, end };
}

function want(t: Tlv, tag: number): Tlv {
  if (t.tag !== tag) throw new Error(`DER tag ${t.tag} where ${tag} was expected`);
  return t;
}

/** AlgorithmIdentifier { id-ecPublicKey, prime256v1 } (RFC 5480 2.1.1): a P-256 SPKI starts with it. */
const P256_ALG = Buffer.from('301306072a8648ce3d020106082a8648ce3d030107', 'hex');
/** AlgorithmIdentifier { ecdsa-with-SHA256 } (RFC 5758 3.2). */
const ECDSA_SHA256_ALG = Buffer.from('300a06082a8648ce3d040302', 'hex');

/**
 * The proof of possession (RFC 2986 4.2): a minimal DER walk of the CSR, the node's P-256 key
 * imported through JWK (what muster's importNodeKey measured cheapest), one ECDSA-SHA256 verify over
 * the CertificationRequestInfo. Returns the SPKI, or undefined when the CSR does not prove the key.
 */
function provenSpki(csrPem: string): Buffer | undefined {
  const b64 = csrPem
    .replace('-----BEGIN CERTIFICATE REQUEST-----', '')
    .replace('-----END CERTIFICATE REQUEST-----', '');
  const der = Buffer.from(b64, 'base64');
  const top = want(tlv(der, 0), 0x30);
  const cri = want(tlv(der, top.start), 0x30);
  const alg = want(tlv(der, cri.end), 0x30);
  const sig = want(tlv(der, alg.end), 0x03);
  if (!der.subarray(cri.end, alg.end).equals(ECDSA_SHA256_ALG) || der[sig.start] !== 0) return undefined;
  const version = want(tlv(der, cri.start), 0x02);
  const subject = want(tlv(der, version.end), 0x30);
  const spki = want(tlv(der, subject.end), 0x30);
  if (!der.subarray(spki.start, spki.start + P256_ALG.length).equals(P256_ALG)) return undefined;
  const bits = want(tlv(der, spki.start + P256_ALG.length), 0x03);
  // BIT STRING: 0 unused bits, then the uncompressed point 04 || X || Y (SEC 1 2.3.3).
  if (bits.end - bits.start !== 66 || der[bits.start] !== 0 || der[bits.start + 1] !== 4) return undefined;
  const x = der.subarray(bits.start + 2, bits.start + 34).toString('base64url');
  const y = der.subarray(bits.start + 34, bits.start + 66).toString('base64url');
  const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x, y }, format: 'jwk' });
  const criBytes = der.subarray(top.start, cri.end);
  return verify('sha256', criBytes, key, der.subarray(sig.start + 1, sig.end))
    ? der.subarray(subject.end, spki.end)
    : undefined;
}

interface JoinBody {
  name?: unknown;
  role?: unknown;
  cluster?: unknown;
  csr?: unknown;
  proof?: { id?: unknown; ts?: unknown; hmac?: unknown };
}

/**
 * Issue 12 target 1's "why the rest cannot go": a bare node:https server doing, per token join, only
 * what any registrar must, each with the cheapest native primitive, so that the cpu bench can put
 * muster's cost beside the essential cost in the same run (docs/benchmarks.md, the cpu entry):
 *   - the TLS handshake (same identity kind as the floor's and muster's: EC P-256 leaf, RSA-2048 CA);
 *   - JSON.parse of the join body;
 *   - the proof of possession: the CSR's ECDSA-SHA256 signature with the node's imported P-256 key;
 *   - the token proof: one HMAC-SHA256 (common/proof.ts joinProofMac) over the key's fingerprint (a
 *     SHA-256 of its SPKI), the name and the timestamp, compared in constant time, within the window;
 *   - the certificate: one RSA-2048 signature of a ~600-byte to-be-signed buffer, wrapped as PEM;
 *   - the acceptance written durably before the answer (exactly once through SIGKILL): one put of a
 *     ~2.5 kB record per join, group commit (the joins that arrive while a batch is being fsync'd go
 *     together in the next db.batch(..., { sync: true })), in a classic-level database;
 *   - a ~3 kB JSON answer (certificate, CA, an HMAC over both).
 * It deliberately leaves out what muster adds on top: a framework (routing, schema validation,
 * serialisation), logging, metrics, the admission policy beyond the one token (provisioners, cluster,
 * install mode, approval, caps), events, rate limits and load shedding, a real X.509 encoding, and any
 * read of the store (a name already held by another key is refused from memory).
 */
async function startEssential(): Promise<void> {
  const https = await import('node:https');
  // The bench's own database, not muster's registry: the point is what a store write costs bare.
  // eslint-disable-next-line muster/no-restricted-dynamic-imports -- the essential server is not muster
  const { ClassicLevel } = await import('classic-level');
  const { joinProofMac, safeEqual, PROOF_WINDOW_S } = await import('../common/proof.js');
  const { loadOrCreateCa, issueServerIdentity } = await import('../registrar/ca.js');
  const token = cfg.token;
  if (!token) throw new Error('the essential server needs cfg.token');
  const { ca } = await loadOrCreateCa(
    path.join(cfg.dir, 'essential-ca'),
    'muster bench essential',
    new Date(),
  );
  const identity = issueServerIdentity(ca, 'r-essential', ['127.0.0.1'], new Date());
  const caKey = ca.issuer.privateKey;
  const db = new ClassicLevel<string, string>(path.join(cfg.dir, 'essential-db'), {
    keyEncoding: 'utf8',
    valueEncoding: 'utf8',
  });
  await db.open();
  const keyOf = new Map<string, string>();

  // Group commit: one batch in flight; whatever queues meanwhile is the next batch.
  let queue: { key: string; value: string; done: (err?: Error) => void }[] = [];
  let writing = false;
  const flush = async (): Promise<void> => {
    writing = true;
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      let err: Error | undefined;
      try {
        await db.batch(
          batch.map((j) => ({ type: 'put' as const, key: j.key, value: j.value })),
          { sync: true },
        );
      } catch (e) {
        err = e as Error;
      }
      for (const j of batch) j.done(err);
    }
    writing = false;
  };
  const write = (key: string, value: string): Promise<void> =>
    new Promise((resolve, reject) => {
      queue.push({ key, value, done: (err) => (err ? reject(err) : resolve()) });
      if (!writing) void flush();
    });

  let serial = 0;
  let port = 0;
  const answer = (res: import('node:http').ServerResponse, status: number, body: string): void => {
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const join = async (
    raw: Buffer,
    remote: string,
    res: import('node:http').ServerResponse,
  ): Promise<void> => {
    let b: JoinBody;
    try {
      b = JSON.parse(raw.toString('utf8')) as JoinBody;
    } catch {
      return answer(res, 400, '{"error":"bad json"}');
    }
    const { name, role, cluster, csr, proof } = b;
    if (
      typeof name !== 'string' ||
      typeof role !== 'string' ||
      typeof cluster !== 'string' ||
      typeof csr !== 'string' ||
      typeof proof?.hmac !== 'string' ||
      typeof proof.ts !== 'number'
    )
      return answer(res, 400, '{"error":"bad join"}');
    let spki: Buffer | undefined;
    try {
      spki = provenSpki(csr);
    } catch {
      spki = undefined;
    }
    if (!spki) return answer(res, 400, '{"error":"the CSR does not prove the key"}');
    const fp = createHash('sha256').update(spki).digest('base64url');
    const ts = proof.ts;
    if (
      proof.id !== token.id ||
      Math.abs(Date.now() / 1000 - ts) > PROOF_WINDOW_S ||
      !safeEqual(joinProofMac(token.secret, { name, role, cluster, key: fp, ts }), proof.hmac)
    )
      return answer(res, 401, '{"error":"bad token proof"}');
    const held = keyOf.get(name);
    if (held !== undefined && held !== fp) return answer(res, 409, '{"error":"name held by another key"}');
    keyOf.set(name, fp);

    // The to-be-signed bytes: the size of a real TBSCertificate (serial, names, validity, the
    // node's SPKI, extensions), with the name and key in it.
    const tbs = Buffer.alloc(600);
    tbs.writeUInt32BE(++serial, 0);
    spki.copy(tbs, 8);
    tbs.write(name, 8 + spki.length, 'utf8');
    const sig = sign('sha256', tbs, caKey);
    const certB64 = Buffer.concat([tbs, sig]).toString('base64');
    let certificate = '-----BEGIN CERTIFICATE-----\n';
    for (let i = 0; i < certB64.length; i += 64) certificate += certB64.slice(i, i + 64) + '\n';
    certificate += '-----END CERTIFICATE-----\n';

    const now = new Date();
    const issuedAt = now.toISOString();
    const mac = createHmac('sha256', token.secret).update(certificate).update(ca.certPem).digest('hex');
    // What a node record holds (muster's NodeRecord: key, SPKI, decision, times, certificate...).
    const record = JSON.stringify({
      name,
      state: 'accepted',
      key: fp,
      spki: spki.toString('base64'),
      role,
      cluster,
      addresses: [remote],
      decision: { by: 'token', token: token.id, at: issuedAt },
      times: { accepted: issuedAt },
      lastSeen: issuedAt,
      serial,
      csr,
      certificate,
      notAfter: new Date(now.getTime() + 365 * 86_400_000).toISOString(),
      issuedAt,
      mac,
    });
    await write(`n!${name}`, record);
    // The bundle's fields (common/proof.ts Bundle), with a MAC over the certificate and the CA.
    answer(
      res,
      201,
      JSON.stringify({
        v: 1,
        cluster,
        node: name,
        role,
        certificate,
        chain: [],
        ca: ca.certPem,
        registrar: { url: `https://127.0.0.1:${port}`, id: 'r-essential' },
        config: {},
        issuedAt,
        mac,
      }),
    );
  };

  const server = https.createServer({ key: identity.keyPem, cert: identity.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      join(Buffer.concat(chunks), req.socket.remoteAddress ?? '', res).catch(() =>
        answer(res, 500, '{"error":"internal"}'),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  close = async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await db.close();
  };
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

const starts: Record<ChildConfig['mode'], () => Promise<void>> = {
  floor: startFloor,
  essential: startEssential,
  phases: startPhases,
  registrar: startMuster,
};
(starts[cfg.mode] ?? startMuster)().catch((err: Error) => {
  process.stderr.write(`bench child: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
