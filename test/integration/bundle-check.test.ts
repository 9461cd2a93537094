/**
 * The node checks the whole bundle before writing anything (DESIGN "The credentials bundle"): a
 * registrar that answers with the wrong cluster, CA or key makes `muster join` abort with exit 5 and
 * leaves the files an earlier registration left untouched. The registrar here is a fake that signs
 * real certificates and then tampers with one part of the bundle.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { bundleMac, type Bundle } from '../../src/common/proof.js';
import { certFingerprint, issueCertificate, makeSerial, parseCsr, toPem } from '../../src/common/x509.js';
import { issueServerIdentity, loadOrCreateCa, type CertificateAuthority } from '../../src/registrar/ca.js';
import { musterAsync } from '../helpers/cli.js';
import { tempDir } from '../helpers/registrar.js';

type Tamper = (b: Bundle, ctx: { other: CertificateAuthority; csrSpki: Buffer }) => Bundle;

async function fakeRegistrar(dir: string, cluster: string, tamper: Tamper, tokenSecret?: string): Promise<{ app: FastifyInstance; url: string; ca: CertificateAuthority }> {
  const { ca } = await loadOrCreateCa(path.join(dir, 'ca'), 'fake CA', new Date());
  const { ca: other } = await loadOrCreateCa(path.join(dir, 'other-ca'), 'other CA', new Date());
  const id = 'r-fake';
  const ident = issueServerIdentity(ca, id, ['127.0.0.1'], new Date());
  const app = Fastify({ https: { key: ident.keyPem, cert: ident.certPem } });
  app.get('/v1/ca', async (_r, reply) => reply.type('application/x-pem-file').send(ca.certPem));
  app.get('/v1/info', async () => ({ v: 1, id, cluster, role: 'main', ca: ca.fingerprint, mode: 'token', version: 'x' }));
  let counter = 1;
  app.post('/v1/join', async (req, reply) => {
    const body = req.body as { name: string; role: string; csr: string };
    const csr = parseCsr(body.csr);
    const cert = issueCertificate(ca.issuer, {
      serial: makeSerial(counter++),
      subject: { cn: body.name, o: cluster, ou: body.role },
      spki: csr.spki,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      dnsNames: [body.name],
      usage: 'client-server',
    });
    const good: Bundle = {
      v: 1,
      cluster,
      node: body.name,
      role: body.role,
      certificate: toPem(cert, 'CERTIFICATE'),
      chain: [],
      ca: ca.certPem,
      registrar: { url: 'https://127.0.0.1', id },
      config: { ntp: 'pool.example' },
      issuedAt: new Date().toISOString(),
    };
    const b = tamper(good, { other, csrSpki: csr.spki });
    if (tokenSecret && b.mac === undefined) b.mac = bundleMac(tokenSecret, b);
    return reply.code(201).send(b);
  });
  app.post('/v1/join/:name/ack', async (_r, reply) => reply.code(204).send());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  return { app, url: `https://127.0.0.1:${port}`, ca };
}

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir)) out[f] = `${statSync(path.join(dir, f)).mtimeMs}:${readFileSync(path.join(dir, f), 'utf8')}`;
  return out;
}

let t: ReturnType<typeof tempDir>;
let fake: Awaited<ReturnType<typeof fakeRegistrar>> | undefined;
beforeEach(() => {
  t = tempDir();
});
afterEach(async () => {
  await fake?.app.close();
  fake = undefined;
  t.cleanup();
});

/** A node that was registered before (its certificate has since been lost), holding this CA. */
function oldNodeFiles(dir: string, caPem: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  writeFileSync(path.join(dir, 'node.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  writeFileSync(path.join(dir, 'ca.crt'), caPem);
  writeFileSync(path.join(dir, 'config.json'), '{"old": "config"}\n');
  writeFileSync(path.join(dir, 'bundle.json'), JSON.stringify({ v: 1, node: 'n1', cluster: 'lab', chain: [] }));
}

const certSpec = (name: string, spki: Buffer) => ({
  serial: makeSerial(9),
  subject: { cn: name },
  spki,
  notBefore: new Date(Date.now() - 60_000),
  notAfter: new Date(Date.now() + 86_400_000),
  dnsNames: [name],
  usage: 'client-server' as const,
});

const cases: [string, Tamper, RegExp][] = [
  ['the wrong cluster', (b) => ({ ...b, cluster: 'elsewhere' }), /cluster/],
  [
    'another CA',
    (b, { other, csrSpki }) => ({
      ...b,
      ca: other.certPem,
      certificate: toPem(issueCertificate(other.issuer, certSpec(b.node, csrSpki)), 'CERTIFICATE'),
    }),
    /CA/,
  ],
  [
    "another node's key",
    (b) => {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const spki = publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
      return { ...b, certificate: toPem(issueCertificate(fake!.ca.issuer, certSpec(b.node, spki)), 'CERTIFICATE') };
    },
    /not for this node's key/,
  ],
];

describe('muster join refuses a bad bundle and leaves the old files untouched', () => {
  it.each(cases)('%s', async (_what, tamper, why) => {
    fake = await fakeRegistrar(t.dir, 'lab', tamper);
    const nodeDir = path.join(t.dir, 'node');
    oldNodeFiles(nodeDir, fake.ca.certPem);
    const before = snapshot(nodeDir);
    const r = await musterAsync(['join', '--registrar', fake.url, '--name', 'n1', '--cluster', 'lab', '--state-dir', nodeDir, '--mdns', 'off']);
    expect(r.code, r.stderr).toBe(5);
    expect(r.stderr).toMatch(/nothing was written/);
    expect(r.stderr).toMatch(why);
    expect(snapshot(nodeDir)).toEqual(before);
  });

  it('a bundle without the MAC of the join token is refused (the registrar is not authenticated)', async () => {
    const secret = 'S'.repeat(43);
    fake = await fakeRegistrar(t.dir, 'lab', (b) => ({ ...b, mac: bundleMac('another-secret-entirely-0123456789abcdef', b) }), secret);
    const nodeDir = path.join(t.dir, 'node');
    const r = await musterAsync(['join', '--registrar', fake.url, '--name', 'n1', '--state-dir', nodeDir, '--mdns', 'off'], {
      MUSTER_TOKEN: `abcdef1234.${secret}`,
    });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/MAC/);
    expect(readdirSync(nodeDir).sort()).toEqual(['node.key']);
  });

  it('a registrar whose CA is not the pinned one is refused before anything is sent', async () => {
    fake = await fakeRegistrar(t.dir, 'lab', (b) => b);
    const nodeDir = path.join(t.dir, 'node');
    const pin = certFingerprint(readFileSync(path.join(t.dir, 'other-ca', 'ca.crt'), 'utf8'));
    const r = await musterAsync(['join', '--registrar', fake.url, '--name', 'n1', '--ca-fingerprint', pin, '--state-dir', nodeDir, '--mdns', 'off']);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/not the pinned/);
    expect(readdirSync(nodeDir)).toEqual(['node.key']);
  });

  it('an untampered bundle from the same fake is accepted (the checks are not what fails)', async () => {
    fake = await fakeRegistrar(t.dir, 'lab', (b) => b);
    const nodeDir = path.join(t.dir, 'node');
    const r = await musterAsync(['join', '--registrar', fake.url, '--name', 'n1', '--cluster', 'lab', '--state-dir', nodeDir, '--mdns', 'off']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(path.join(nodeDir, 'config.json'), 'utf8'))).toEqual({ ntp: 'pool.example' });
  });
});
