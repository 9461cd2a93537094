/**
 * Tier registrars (issue 11) on loopback: a parent (main) registrar, tier registrars joined to it with
 * `--parent https://127.0.0.1:P` (real level stores, real HTTPS, mDNS off), and nodes joining a tier
 * with the parent's root pinned. The chains are checked with openssl, as a relying party would.
 */
import { spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { isMusterError } from '../../src/common/errors.js';
import { memoryLogger } from '../../src/common/log.js';
import { issueCertificate, makeSerial, toPem } from '../../src/common/x509.js';
import { buildApi } from '../../src/fallback/api.js';
import { checkBundle } from '../../src/node/bundle-check.js';
import { issueServerIdentity, loadOrCreateCa, type CertificateAuthority } from '../../src/registrar/ca.js';
import { RegistrarService } from '../../src/registrar/service.js';
import { MemoryRegistry } from '../../src/store/memory.js';
import {
  joinNode,
  opensslVerify,
  startTestRegistrar,
  tempDir,
  type TestRegistrar,
} from '../helpers/registrar.js';

const HOUR = 3_600_000;
const BACKOFF = { baseMs: 50, maxMs: 300 };

function openssl(...args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: (r.stdout + r.stderr).trim() };
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let work: ReturnType<typeof tempDir>;
let parent: TestRegistrar;
const running: TestRegistrar[] = [];

/** A one-use token of `reg`, for `roles`, valid for an hour. */
async function oneUseToken(reg: TestRegistrar, roles: string[]): Promise<string> {
  return (await reg.service.operator.createToken({ ttlMs: HOUR, maxUses: 1, roles, clusters: [] })).token;
}

const tierToken = (roles: string[]): Promise<string> => oneUseToken(parent, roles);

async function startTier(name: string, token: string, over: { listen?: string; signal?: AbortSignal } = {}) {
  const t = await startTestRegistrar(path.join(work.dir, name), {
    cluster: name,
    ...(over.listen ? { listen: over.listen } : {}),
    parent: {
      url: parent.url,
      token,
      checkIntervalMs: 24 * HOUR, // checks run when the test says (tier.check())
      backoff: BACKOFF,
      ...(over.signal ? { signal: over.signal } : {}),
    },
  });
  running.push(t);
  return t;
}

beforeAll(async () => {
  work = tempDir('muster-tier-');
  parent = await startTestRegistrar(path.join(work.dir, 'parent'), { cluster: 'cloud' });
  running.push(parent);
});

afterAll(async () => {
  for (const r of running.reverse()) await r.close().catch(() => undefined);
  work.cleanup();
});

describe('tier registrar (--parent URL)', () => {
  let tier: TestRegistrar;
  const nodeDir = () => path.join(work.dir, 'rack1-node');

  it('joins the parent with a token scoped to role cluster and gets an intermediate CA (pathLen 0)', async () => {
    tier = await startTier('rack1', await tierToken(['cluster']));
    expect(tier.tier).toBeDefined();
    const rec = await parent.service.registry.getNode('rack1');
    expect(rec).toMatchObject({ state: expect.stringMatching(/^(issued|active)$/), role: 'cluster' });
    const inter = path.join(tier.opts.stateDir, 'parent', 'node.crt');
    const text = openssl('x509', '-in', inter, '-noout', '-text').out;
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Certificate Sign, CRL Sign/);
    expect(text).toMatch(/Subject: .*CN ?= ?rack1/);
    // The intermediate chains to the parent's root, which stays the anchor everywhere.
    const root = path.join(tier.opts.stateDir, 'parent', 'ca.crt');
    expect(opensslVerify(root, inter)).toMatchObject({ ok: true });
    const info = await tier.service.info();
    expect(info).toMatchObject({ role: 'cluster', cluster: 'rack1', ca: parent.caFingerprint });
    expect(tier.caFingerprint).toBe(parent.caFingerprint);
  });

  it('signs its nodes with the intermediate: the node, pinned to the root, verifies with openssl', async () => {
    const t = await oneUseToken(tier, ['worker']);
    const r = await joinNode(tier, nodeDir(), {
      token: t,
      caFingerprint: parent.caFingerprint,
      cluster: 'rack1',
    });
    expect(r.status).toBe('registered');
    const dir = nodeDir();
    const bundle = JSON.parse(readFileSync(path.join(dir, 'bundle.json'), 'utf8'));
    expect(bundle.chain).toHaveLength(1);
    expect(bundle.cluster).toBe('rack1');
    expect(r.fingerprint).toBe(parent.caFingerprint);
    const v = opensslVerify(
      path.join(dir, 'ca.crt'),
      path.join(dir, 'node.crt'),
      path.join(dir, 'chain.pem'),
    );
    expect(v).toMatchObject({ ok: true });
    expect(v.out).toMatch(/node\.crt: OK/);
    // Without the intermediate the node certificate does not verify to the root: it is not the root's.
    expect(opensslVerify(path.join(dir, 'ca.crt'), path.join(dir, 'node.crt')).ok).toBe(false);
  });

  it('renews its intermediate with the same key: the node certificates already issued still chain', async () => {
    const interFile = path.join(tier.opts.stateDir, 'parent', 'node.crt');
    const before = readFileSync(interFile, 'utf8');
    expect(await tier.tier!.check({ renewNow: true })).toBe('renewed');
    const after = readFileSync(interFile, 'utf8');
    expect(after).not.toBe(before);
    expect(new X509Certificate(after).serialNumber).not.toBe(new X509Certificate(before).serialNumber);
    const dir = nodeDir();
    writeFileSync(path.join(dir, 'chain-renewed.pem'), after);
    const old = opensslVerify(
      path.join(dir, 'ca.crt'),
      path.join(dir, 'node.crt'),
      path.join(dir, 'chain-renewed.pem'),
    );
    expect(old).toMatchObject({ ok: true });
    // The tier now serves and signs with the renewed intermediate (TLS chain included).
    const t = await oneUseToken(tier, ['worker']);
    const dir2 = path.join(work.dir, 'rack1-node2');
    await joinNode(tier, dir2, { name: 'node-2', token: t, caFingerprint: parent.caFingerprint });
    expect(readFileSync(path.join(dir2, 'chain.pem'), 'utf8')).toBe(after);
    expect(await tier.tier!.check()).toBe('current');
  });

  it('removing the tier revokes its intermediate in the parent CRL; the tier then stops issuing', async () => {
    const rec = await parent.service.registry.getNode('rack1');
    await parent.service.operator.remove('rack1', 'test');
    const crl = path.join(work.dir, 'parent.crl');
    // The CRL is re-signed on the removal event (registrar/crl.ts), just after the removal lands.
    await until('the parent CRL to list the intermediate', async () => {
      writeFileSync(crl, await parent.service.crl());
      const text = openssl('crl', '-inform', 'DER', '-in', crl, '-noout', '-text').out;
      return text.includes(`Serial Number: ${rec!.serial}`) ? true : undefined;
    });
    const crlPem = path.join(work.dir, 'parent-crl.pem');
    writeFileSync(crlPem, toPem(await parent.service.crl(), 'X509 CRL'));
    const inter = path.join(tier.opts.stateDir, 'parent', 'node.crt');
    const root = path.join(tier.opts.stateDir, 'parent', 'ca.crt');
    const v = openssl('verify', '-crl_check', '-CAfile', root, '-CRLfile', crlPem, inter);
    expect(v.ok).toBe(false);
    expect(v.out).toMatch(/certificate revoked/);

    expect(await tier.tier!.check()).toBe('removed');
    const before = (await tier.service.registry.counts()).pending;
    const err = await joinNode(tier, path.join(work.dir, 'rack1-late'), {
      name: 'late-1',
      caFingerprint: parent.caFingerprint,
      timeoutMs: 10_000,
    }).catch((e: unknown) => e);
    expect(isMusterError(err, 'tier_removed')).toBe(true);
    // Nothing was recorded or issued for it.
    expect(await tier.service.registry.getNode('late-1')).toBeUndefined();
    expect((await tier.service.registry.counts()).pending).toBe(before);
    expect(existsSync(path.join(work.dir, 'rack1-late', 'node.crt'))).toBe(false);
  });
});

describe('admission of a tier is explicit', () => {
  it('attack: an unscoped token, or install mode not opened for role cluster, leaves the tier pending with no CA certificate', async () => {
    const stop = new AbortController();
    const token = await tierToken([]);
    const starting = startTier('rack2', token, { signal: stop.signal });
    starting.catch(() => undefined);
    const pending = await until('rack2 pending at the parent', async () => {
      const r = await parent.service.registry.getNode('rack2');
      return r?.state === 'pending' ? r : undefined;
    });
    expect(pending.pendingReason).toMatch(/not scoped to role cluster/);
    // Install mode opened without --role cluster, even for remote peers, does not admit it either.
    await parent.service.operator.installModeOn({ forMs: 60_000, max: null, remote: true });
    await parent.service.operator.installModeOff();
    const still = await parent.service.registry.getNode('rack2');
    expect(still).toMatchObject({ state: 'pending' });
    expect(still?.certificate).toBeUndefined();
    expect(still?.serial).toBeUndefined();
    stop.abort(new Error('test over'));
    await expect(starting).rejects.toThrow();
    expect(existsSync(path.join(work.dir, 'rack2', 'registrar', 'parent', 'node.crt'))).toBe(false);
    expect((await parent.service.registry.getNode('rack2'))?.certificate).toBeUndefined();

    // Started again (same key), it is admitted when the parent's operator approves it: the token it
    // proved stays with its request, so the approved bundle carries the MAC the tier checks.
    const again = startTestRegistrar(path.join(work.dir, 'rack2'), {
      cluster: 'rack2',
      parent: { url: parent.url, token, checkIntervalMs: 24 * HOUR, backoff: BACKOFF },
    });
    again.then((t) => running.push(t)).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    await parent.service.operator.approve('rack2', 'test');
    const tier = await again;
    expect(tier.tier).toBeDefined();
    expect(await parent.service.registry.getNode('rack2')).toMatchObject({
      role: 'cluster',
      tokenId: expect.any(String),
    });
  });

  it('a node that asks before the tier is registered is admitted once the parent operator approves the tier', async () => {
    const port = await freePort();
    // No token: the tier waits for the operator of the parent (its root pinned).
    const starting = startTestRegistrar(path.join(work.dir, 'rack3'), {
      cluster: 'rack3',
      listen: `127.0.0.1:${port}`,
      parent: {
        url: parent.url,
        caFingerprint: parent.caFingerprint,
        checkIntervalMs: 24 * HOUR,
        backoff: BACKOFF,
      },
    });
    starting.then((t) => running.push(t)).catch(() => undefined);
    await until('rack3 pending at the parent', async () =>
      (await parent.service.registry.getNode('rack3'))?.state === 'pending' ? true : undefined,
    );
    // The node asks meanwhile: the tier has nothing it could verify yet (no TLS endpoint), so it retries.
    const nodeDir = path.join(work.dir, 'rack3-node');
    const joining = joinNode({ url: `https://127.0.0.1:${port}` }, nodeDir, {
      name: 'early-1',
      cluster: 'rack3',
      caFingerprint: parent.caFingerprint,
      timeoutMs: 60_000,
    });
    joining.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(path.join(nodeDir, 'node.crt'))).toBe(false);

    await parent.service.operator.approve('rack3', 'test');
    const tier = await starting;
    await tier.service.operator.installModeOn({ forMs: 60_000, max: null, remote: false });
    const r = await joining;
    expect(r.status).toBe('registered');
    expect(r.fingerprint).toBe(parent.caFingerprint);
    const v = opensslVerify(
      path.join(nodeDir, 'ca.crt'),
      path.join(nodeDir, 'node.crt'),
      path.join(nodeDir, 'chain.pem'),
    );
    expect(v.ok, v.out).toBe(true);
  });

  it('a tier refuses role cluster (no tiers below a tier)', async () => {
    const tier = running.find((r) => r.opts.cluster === 'rack3')!;
    await tier.service.operator.installModeOn({ forMs: 60_000, max: null, remote: false });
    const err = await joinNode(tier, path.join(work.dir, 'rack2-sub'), {
      name: 'sub-1',
      role: 'cluster',
      caFingerprint: parent.caFingerprint,
      timeoutMs: 10_000,
    }).catch((e: unknown) => e);
    expect(isMusterError(err, 'forbidden_role')).toBe(true);
    expect(await tier.service.registry.getNode('sub-1')).toBeUndefined();
  });
});

describe('a node pinned to the root refuses a tier whose intermediate another root issued', () => {
  let other: CertificateAuthority;
  let rootPem: string;
  let forged: CertificateAuthority;
  let key: KeyObject;

  beforeAll(async () => {
    const d = tempDir('muster-other-ca-');
    try {
      other = (await loadOrCreateCa(d.dir, 'muster CA other', new Date())).ca;
    } finally {
      d.cleanup();
    }
    rootPem = readFileSync(path.join(parent.opts.stateDir, 'ca', 'ca.crt'), 'utf8');
    key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    // An intermediate with the tier's subject, but issued by another root; served with the parent's root.
    const der = issueCertificate(other.issuer, {
      serial: makeSerial(7),
      subject: { cn: 'rack9', o: 'cloud', ou: 'cluster' },
      spki: createPublicKey(key).export({ type: 'spki', format: 'der' }),
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + HOUR),
      usage: 'ca',
      pathLen: 0,
    });
    const interPem = toPem(der, 'CERTIFICATE');
    forged = {
      certPem: rootPem,
      fingerprint: parent.caFingerprint,
      issuer: { certDer: der, privateKey: key },
      chain: [interPem],
    };
  });

  it('over TLS: the join stops before anything is sent or written', async () => {
    const clock = new ManualClock(Date.now());
    const registry = await MemoryRegistry.create({ now: () => clock.now() });
    const logs = memoryLogger('forged');
    const svc = await RegistrarService.create({
      registry,
      ca: forged,
      clock,
      log: logs.log,
      registrarId: 'r-forged',
      cluster: 'rack9',
      role: 'cluster',
      url: () => 'https://127.0.0.1:1',
      autoregister: 'any',
      isOnLink: () => true,
    });
    const id = issueServerIdentity(forged, 'r-forged', ['127.0.0.1'], new Date());
    const app = await buildApi({ service: svc, log: logs.log, https: { key: id.keyPem, cert: id.certPem } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      await svc.operator.installModeOn({ forMs: 60_000, max: null, remote: true });
      const port = (app.server.address() as net.AddressInfo).port;
      const dir = path.join(work.dir, 'forged-node');
      const err = await joinNode({ url: `https://127.0.0.1:${port}` }, dir, {
        name: 'victim-1',
        caFingerprint: parent.caFingerprint,
        timeoutMs: 10_000,
      }).catch((e: unknown) => e);
      expect(isMusterError(err, 'MUSTER_ERR_TLS')).toBe(true);
      expect(await registry.getNode('victim-1')).toBeUndefined();
      expect(existsSync(path.join(dir, 'node.crt'))).toBe(false);
    } finally {
      svc.close();
      await app.close();
      await registry.close();
    }
  });

  it('in the bundle: a chain that does not lead to the pinned root is refused', () => {
    const nodeKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const spki = createPublicKey(nodeKey).export({ type: 'spki', format: 'der' });
    const now = Date.now();
    const cert = toPem(
      issueCertificate(forged.issuer, {
        serial: makeSerial(8),
        subject: { cn: 'victim-2', o: 'rack9', ou: 'worker' },
        spki,
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + HOUR),
        dnsNames: ['victim-2'],
        usage: 'client-server',
      }),
      'CERTIFICATE',
    );
    const bundle = {
      v: 1,
      cluster: 'rack9',
      node: 'victim-2',
      role: 'worker',
      certificate: cert,
      chain: forged.chain,
      ca: rootPem,
      registrar: { url: 'https://127.0.0.1:1', id: 'r-forged' },
      config: {},
      issuedAt: new Date(now).toISOString(),
    };
    const x = {
      name: 'victim-2',
      role: 'worker',
      cluster: '',
      spki,
      sessionCaPem: rootPem,
      registrarId: 'r-forged',
      pin: parent.caFingerprint,
      now,
    };
    const checked = checkBundle(bundle, x);
    expect(checked.ok).toBe(false);
    expect(!checked.ok && checked.problems.join('; ')).toMatch(/CN ?= ?rack9.* is not signed by/);
  });
});
