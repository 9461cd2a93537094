// The node's check of its credentials bundle (src/node/bundle-check.ts, DESIGN "The credentials bundle"):
// a real bundle from a real CA passes, and each single corruption is refused with a reason that names it.
import { createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleMac, type Bundle } from '../../src/common/proof.js';
import { buildCsr, issueCertificate, makeSerial, parseCsr, toPem, type CertificateSpec } from '../../src/common/x509.js';
import { checkBundle, type Expectations } from '../../src/node/bundle-check.js';
import { loadOrCreateCa, type CertificateAuthority } from '../../src/registrar/ca.js';

const NOW = Date.now();
const DAY = 86_400_000;
const SECRET = 'tokensecret-'.padEnd(43, 'x');

let dir: string;
let ca: CertificateAuthority;
/** Another CA with the very same subject name: only keys and signatures tell them apart. */
let twinCa: CertificateAuthority;
let nodeKey: KeyObject;
let nodeSpki: Buffer;
let otherSpki: Buffer;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'muster-bundle-'));
  ca = (await loadOrCreateCa(path.join(dir, 'ca'), 'muster-ca', new Date(NOW))).ca;
  twinCa = (await loadOrCreateCa(path.join(dir, 'twin'), 'muster-ca', new Date(NOW))).ca;
  nodeKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  // As the registrar does: the SPKI comes from the node's CSR.
  nodeSpki = parseCsr(buildCsr('node-1', nodeKey)).spki;
  otherSpki = createPublicKey(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey).export({
    type: 'spki',
    format: 'der',
  }) as Buffer;
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
function cert(over: Partial<CertificateSpec> = {}, issuer: CertificateAuthority = ca): string {
  const spec: CertificateSpec = {
    serial: makeSerial(++counter),
    subject: { cn: 'node-1', o: 'edge', ou: 'worker' },
    spki: nodeSpki,
    notBefore: new Date(NOW - 5 * 60_000),
    notAfter: new Date(NOW + 90 * DAY),
    dnsNames: ['node-1'],
    usage: 'client-server',
    ...over,
  };
  return toPem(issueCertificate(issuer.issuer, spec), 'CERTIFICATE');
}

/** A bundle as the registrar builds it (service.ts bundleFor), MAC'd with the token secret. */
function bundle(over: Partial<Bundle> = {}, secret: string | null = SECRET): Bundle {
  const b: Bundle = {
    v: 1,
    cluster: 'edge',
    node: 'node-1',
    role: 'worker',
    certificate: cert(),
    chain: [],
    ca: ca.certPem,
    registrar: { url: 'https://198.18.0.1:8443', id: 'reg-1' },
    config: { ntp: 'ntp.edge.example', 'log-level': 'info' },
    issuedAt: new Date(NOW).toISOString(),
    ...over,
  };
  delete b.mac;
  if (secret !== null) b.mac = bundleMac(secret, b);
  return b;
}

function expectations(over: Partial<Expectations> = {}): Expectations {
  return {
    name: 'node-1',
    role: 'worker',
    cluster: 'edge',
    spki: nodeSpki,
    sessionCaPem: ca.certPem,
    registrarId: 'reg-1',
    pin: ca.fingerprint,
    localCaPem: ca.certPem,
    localCluster: 'edge',
    tokenSecret: SECRET,
    now: NOW,
    ...over,
  };
}

function problems(raw: unknown, x: Expectations = expectations()): string[] {
  const r = checkBundle(raw, x);
  if (r.ok) return [];
  expect(r.problems.length).toBeGreaterThan(0);
  return r.problems;
}

describe('checkBundle: a good bundle', () => {
  it('passes with every expectation set', () => {
    const b = bundle();
    const r = checkBundle(b, expectations());
    expect(r).toMatchObject({ ok: true, bundle: b });
    // The parsed node certificate comes along (the agent logs, acks and reports from it).
    expect(r.ok && r.cert.toString()).toBe(new X509Certificate(b.certificate).toString());
  });

  it('passes with the minimum of expectations (no pin, no local state, no token)', () => {
    const x = expectations();
    delete x.pin;
    delete x.localCaPem;
    delete x.localCluster;
    delete x.tokenSecret;
    expect(checkBundle(bundle({}, null), { ...x, cluster: '' }).ok).toBe(true);
  });

  it('passes for a node that asked for no cluster', () => {
    expect(checkBundle(bundle(), expectations({ cluster: '', localCluster: undefined })).ok).toBe(true);
  });

  it('passes after a JSON round trip (as received over the wire)', () => {
    expect(checkBundle(JSON.parse(JSON.stringify(bundle())), expectations()).ok).toBe(true);
  });

  it('tolerates a certificate that starts a few minutes in the node clock future', () => {
    const c = cert({ notBefore: new Date(NOW + 5 * 60_000) });
    expect(checkBundle(bundle({ certificate: c }), expectations()).ok).toBe(true);
  });
});

describe('checkBundle: each corruption is refused', () => {
  it('a bundle for another node', () => {
    expect(problems(bundle({ node: 'node-2' }))).toEqual(['the bundle is for node node-2, not node-1']);
  });

  it('a certificate naming another node', () => {
    const c = cert({ subject: { cn: 'node-2', o: 'edge', ou: 'worker' }, dnsNames: ['node-2'] });
    const p = problems(bundle({ certificate: c }));
    expect(p).toContain('the certificate names node-2, not node-1');
    expect(p).toContain('the certificate has no DNS name node-1');
  });

  it('a certificate without the DNS name of the node', () => {
    expect(problems(bundle({ certificate: cert({ dnsNames: ['other'] }) }))).toEqual(['the certificate has no DNS name node-1']);
  });

  it('a cluster other than the one requested', () => {
    expect(problems(bundle(), expectations({ cluster: 'core', localCluster: undefined }))).toEqual([
      'the bundle is for cluster edge, not the requested core',
    ]);
  });

  it('a role other than the one requested', () => {
    expect(problems(bundle({ role: 'storage' }))).toEqual(['the bundle gives role storage, not the requested worker']);
  });

  it("a certificate for another key", () => {
    expect(problems(bundle({ certificate: cert({ spki: otherSpki }) }))).toEqual(["the certificate is not for this node's key"]);
  });

  it('a CA other than the one the registrar served over TLS', () => {
    const p = problems(bundle(), expectations({ sessionCaPem: twinCa.certPem }));
    expect(p).toEqual(['the bundle CA is not the CA that the registrar served over TLS']);
  });

  it('a CA that does not match the pin', () => {
    const p = problems(bundle(), expectations({ pin: twinCa.fingerprint }));
    expect(p).toHaveLength(1);
    expect(p[0]).toContain(`is not the pinned ${twinCa.fingerprint}`);
  });

  it('a CA that differs from the one the node already holds', () => {
    const p = problems(bundle(), expectations({ localCaPem: twinCa.certPem }));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/differs from the CA this node already holds/);
  });

  it('a cluster that differs from the one the node already belongs to', () => {
    const p = problems(bundle(), expectations({ cluster: '', localCluster: 'core' }));
    expect(p).toEqual(['this node already belongs to cluster core; the bundle is for edge']);
  });

  it('a MAC made with another secret', () => {
    expect(problems(bundle({}, 'another-secret'.padEnd(43, 'y')))).toEqual([
      'the bundle MAC does not match the join token: it was not made by the registrar that holds the token',
    ]);
  });

  it('a field changed after the MAC was made', () => {
    const b = bundle();
    b.config = { ...b.config, ntp: 'ntp.attacker.example' };
    expect(problems(b)).toEqual([expect.stringMatching(/MAC does not match/)]);
    const b2 = bundle();
    b2.registrar = { ...b2.registrar, url: 'https://203.0.113.66' };
    expect(problems(b2)).toEqual([expect.stringMatching(/MAC does not match/)]);
  });

  it('a missing MAC when the join used a token', () => {
    expect(problems(bundle({}, null))).toEqual([expect.stringMatching(/MAC does not match/)]);
    expect(problems({ ...bundle(), mac: 42 })).toEqual([expect.stringMatching(/MAC does not match/)]);
  });

  it('an expired certificate', () => {
    const c = cert({ notBefore: new Date(NOW - 91 * DAY), notAfter: new Date(NOW - DAY) });
    const p = problems(bundle({ certificate: c }));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^the certificate is not valid now/);
  });

  it('a certificate valid only from later', () => {
    const c = cert({ notBefore: new Date(NOW + DAY) });
    expect(problems(bundle({ certificate: c }))).toEqual([expect.stringMatching(/not valid now/)]);
  });

  it('a certificate signed by another CA (with the same name)', () => {
    const c = cert({}, twinCa);
    const p = problems(bundle({ certificate: c }));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/CN=node-1.* is not signed by .*CN=muster-ca/);
  });

  it('a certificate signed by another CA, delivered with that CA', () => {
    // The registrar pretends to be another CA: pin, session and local CA all disagree.
    const p = problems(bundle({ certificate: cert({}, twinCa), ca: twinCa.certPem }));
    expect(p.some((s) => s.includes('not the pinned'))).toBe(true);
    expect(p.some((s) => s.includes('already holds'))).toBe(true);
    expect(p.some((s) => s.includes('served over TLS'))).toBe(true);
  });

  it('a CA that is not a CA', () => {
    const leaf = cert();
    const p = problems(bundle({ ca: leaf }), expectations({ pin: undefined, localCaPem: undefined, sessionCaPem: leaf }));
    expect(p).toContain('the bundle CA certificate is not a CA');
  });

  it('a CA or certificate that cannot be parsed', () => {
    expect(problems(bundle({ ca: 'not a certificate' }))).toContain('the bundle CA certificate cannot be parsed');
    expect(problems(bundle({ certificate: 'not a certificate' }))).toContain('the node certificate cannot be parsed');
  });

  it('a chain entry that cannot be parsed', () => {
    expect(problems(bundle({ chain: ['garbage'] }))).toContain('a chain certificate cannot be parsed');
  });

  it('another registrar id', () => {
    expect(problems(bundle({ registrar: { url: 'https://198.18.0.1:8443', id: 'reg-2' } }))).toEqual([
      'the bundle names registrar reg-2, not reg-1',
    ]);
  });
});

describe('checkBundle: malformed input', () => {
  for (const raw of [null, undefined, 'a string', 42, true]) {
    it(`refuses ${JSON.stringify(raw)}`, () => {
      expect(checkBundle(raw, expectations())).toEqual({ ok: false, problems: ['the bundle is not a JSON object'] });
    });
  }

  it('refuses an array and an empty object', () => {
    expect(checkBundle([], expectations()).ok).toBe(false);
    const p = problems({});
    for (const f of ['cluster', 'node', 'role', 'certificate', 'ca', 'issuedAt']) expect(p).toContain(`bundle field ${f} is missing`);
    expect(p).toContain('bundle field chain is not a list of PEM certificates');
    expect(p).toContain('bundle field registrar is missing');
  });

  for (const field of ['cluster', 'node', 'role', 'certificate', 'ca', 'issuedAt'] as const) {
    it(`refuses a bundle without ${field}, or with a non-string ${field}`, () => {
      const b: Record<string, unknown> = { ...bundle() };
      delete b[field];
      expect(problems(b)).toEqual([`bundle field ${field} is missing`]);
      expect(problems({ ...bundle(), [field]: 7 })).toEqual([`bundle field ${field} is missing`]);
    });
  }

  it('refuses an unknown version', () => {
    expect(problems({ ...bundle(), v: 2 })).toEqual(['unknown bundle version 2']);
    const b: Record<string, unknown> = { ...bundle() };
    delete b.v;
    expect(problems(b)).toEqual(['unknown bundle version undefined']);
  });

  it('refuses a chain that is not a list of strings', () => {
    for (const chain of ['pem', [1], null, {}]) {
      expect(problems({ ...bundle(), chain })).toEqual(['bundle field chain is not a list of PEM certificates']);
    }
  });

  it('refuses a registrar that is missing or incomplete', () => {
    for (const registrar of [undefined, null, 'reg-1', { id: 'reg-1' }, { url: 'https://x' }, { id: 1, url: 'https://x' }]) {
      expect(problems({ ...bundle(), registrar })).toEqual(['bundle field registrar is missing']);
    }
  });

  it('refuses config with non-string values', () => {
    for (const config of [{ a: 1 }, { a: 'x', b: null }, { a: { nested: 'x' } }, { a: ['x'] }, null, 'a=b']) {
      expect(problems({ ...bundle(), config })).toEqual(['bundle field config must map names to strings']);
    }
  });
});
