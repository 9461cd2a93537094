/**
 * The chain rules behind tier registrars (issue 11), on certificates made here: an intermediate is a
 * CA with pathLen 0, so it signs end entities only; a chain that does not lead to the anchor, or that
 * goes through a certificate that is no CA or past a pathLen, is refused (common/x509.ts chainProblem,
 * used by the node's TLS first contact and its bundle check).
 */
import { createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  chainProblem,
  issueCertificate,
  makeSerial,
  pathLenOf,
  toPem,
  type CertificateSpec,
  type IssuerKey,
} from '../../src/common/x509.js';
import { intermediateCa, loadOrCreateCa, type CertificateAuthority } from '../../src/registrar/ca.js';

let root: CertificateAuthority;
const now = Date.now();

function ec(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
}

function issue(issuer: IssuerKey, key: KeyObject, over: Partial<CertificateSpec>): X509Certificate {
  const der = issueCertificate(issuer, {
    serial: makeSerial(1),
    subject: { cn: 'x' },
    spki: createPublicKey(key).export({ type: 'spki', format: 'der' }),
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    usage: 'client-server',
    ...over,
  });
  return new X509Certificate(toPem(der, 'CERTIFICATE'));
}

const asIssuer = (cert: X509Certificate, privateKey: KeyObject): IssuerKey => ({
  certDer: cert.raw,
  privateKey,
});

beforeAll(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-chain-'));
  try {
    root = (await loadOrCreateCa(dir, 'muster CA chain', new Date())).ca;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('intermediate CA certificates and chains', () => {
  it('an intermediate is a CA with pathLen 0, and a node certificate it signs chains to the root through it', () => {
    const rootCert = new X509Certificate(root.certPem);
    const k = ec();
    const inter = issue(root.issuer, k, {
      subject: { cn: 'rack1', o: 'cloud', ou: 'cluster' },
      usage: 'ca',
      pathLen: 0,
    });
    expect(inter.ca).toBe(true);
    expect(pathLenOf(inter)).toBe(0);
    expect(pathLenOf(rootCert)).toBeUndefined();
    const leaf = issue(asIssuer(inter, k), ec(), { subject: { cn: 'node-1' }, dnsNames: ['node-1'] });
    expect(leaf.ca).toBe(false);
    expect(chainProblem(leaf, [inter], rootCert)).toBeUndefined();
    // Without the intermediate, or against another anchor, it does not chain.
    expect(chainProblem(leaf, [], rootCert)).toMatch(/is not signed by/);
    // The tier's CA object: the root stays the anchor and pin, the intermediate signs.
    const ca = intermediateCa(
      k.export({ type: 'pkcs8', format: 'pem' }) as string,
      inter.toString(),
      root.certPem,
    );
    expect(ca).toMatchObject({
      certPem: root.certPem,
      fingerprint: root.fingerprint,
      chain: [inter.toString()],
    });
  });

  it('an intermediate of pathLen 0 cannot make another CA: a chain through two intermediates is refused', () => {
    const rootCert = new X509Certificate(root.certPem);
    const k1 = ec();
    const k2 = ec();
    const inter = issue(root.issuer, k1, { subject: { cn: 'rack1' }, usage: 'ca', pathLen: 0 });
    const sub = issue(asIssuer(inter, k1), k2, { subject: { cn: 'rogue' }, usage: 'ca', pathLen: 0 });
    const leaf = issue(asIssuer(sub, k2), ec(), { subject: { cn: 'victim' }, dnsNames: ['victim'] });
    expect(chainProblem(leaf, [sub, inter], rootCert)).toMatch(/pathLen 0/);
  });

  it("a chain through a certificate that is not a CA is refused, and so is a key that is not the intermediate's", () => {
    const rootCert = new X509Certificate(root.certPem);
    const k = ec();
    const notCa = issue(root.issuer, k, { subject: { cn: 'node-9' }, dnsNames: ['node-9'] });
    const leaf = issue(asIssuer(notCa, k), ec(), { subject: { cn: 'victim' }, dnsNames: ['victim'] });
    // OpenSSL's issuer check already looks at keyUsage (no keyCertSign); the CA flag is checked too.
    expect(chainProblem(leaf, [notCa], rootCert)).toMatch(/is not signed by|is not a CA/);
    const inter = issue(root.issuer, k, { subject: { cn: 'rack2' }, usage: 'ca', pathLen: 0 });
    expect(() =>
      intermediateCa(ec().export({ type: 'pkcs8', format: 'pem' }) as string, inter.toString(), root.certPem),
    ).toThrow(/does not belong/);
    expect(() =>
      intermediateCa(k.export({ type: 'pkcs8', format: 'pem' }) as string, notCa.toString(), root.certPem),
    ).toThrow(/not a CA/);
  });
});
