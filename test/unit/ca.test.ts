// The registrar's CA (src/registrar/ca.ts): created once in its state dir, loaded afterwards.
import { X509Certificate } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certFingerprint } from '../../src/common/x509.js';
import { issueServerIdentity, loadOrCreateCa, type CertificateAuthority } from '../../src/registrar/ca.js';

const NOW = new Date();
let root: string;
let caDir: string;
let first: { ca: CertificateAuthority; created: boolean };

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'muster-ca-'));
  caDir = path.join(root, 'state', 'ca');
  first = await loadOrCreateCa(caDir, 'muster-ca-test', NOW);
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('loadOrCreateCa', () => {
  it('creates a self-signed root CA on first call', () => {
    expect(first.created).toBe(true);
    const cert = new X509Certificate(first.ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toContain('CN=muster-ca-test');
    expect(cert.checkIssued(cert)).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(first.ca.issuer.privateKey)).toBe(true);
    expect(first.ca.fingerprint).toBe(certFingerprint(first.ca.certPem));
    expect(Date.parse(cert.validFrom)).toBeLessThanOrEqual(NOW.getTime());
    expect(Date.parse(cert.validTo)).toBeGreaterThan(NOW.getTime() + 9 * 365 * 86_400_000);
  });

  it('writes ca.key with mode 0600 (and the directory 0700)', () => {
    expect(statSync(path.join(caDir, 'ca.key')).mode & 0o777).toBe(0o600);
    expect(statSync(caDir).mode & 0o777).toBe(0o700);
  });

  it('loads the same CA on a second call', async () => {
    const again = await loadOrCreateCa(caDir, 'another-cn-is-ignored', NOW);
    expect(again.created).toBe(false);
    expect(again.ca.fingerprint).toBe(first.ca.fingerprint);
    expect(again.ca.certPem).toBe(first.ca.certPem);
    expect(again.ca.issuer.certDer.equals(first.ca.issuer.certDer)).toBe(true);
  });

  it('tightens a ca.key that became group/world readable', async () => {
    chmodSync(path.join(caDir, 'ca.key'), 0o644);
    const again = await loadOrCreateCa(caDir, 'muster-ca-test', NOW);
    expect(again.created).toBe(false);
    expect(statSync(path.join(caDir, 'ca.key')).mode & 0o777).toBe(0o600);
  });

  it('refuses a directory holding only ca.key, with a clear message', async () => {
    const d = path.join(root, 'only-key');
    mkdirSync(d);
    copyFileSync(path.join(caDir, 'ca.key'), path.join(d, 'ca.key'));
    await expect(loadOrCreateCa(d, 'x', NOW)).rejects.toThrow(/only one of ca\.key and ca\.crt/);
  });

  it('refuses a directory holding only ca.crt', async () => {
    const d = path.join(root, 'only-cert');
    mkdirSync(d);
    copyFileSync(path.join(caDir, 'ca.crt'), path.join(d, 'ca.crt'));
    await expect(loadOrCreateCa(d, 'x', NOW)).rejects.toThrow(/only one of ca\.key and ca\.crt/);
  });

  it('refuses a ca.key that does not belong to ca.crt', async () => {
    const other = await loadOrCreateCa(path.join(root, 'other'), 'other', NOW);
    expect(other.ca.fingerprint).not.toBe(first.ca.fingerprint);
    const d = path.join(root, 'mixed');
    mkdirSync(d);
    copyFileSync(path.join(caDir, 'ca.crt'), path.join(d, 'ca.crt'));
    copyFileSync(path.join(root, 'other', 'ca.key'), path.join(d, 'ca.key'));
    await expect(loadOrCreateCa(d, 'x', NOW)).rejects.toThrow(/does not belong/);
  });
});

describe('issueServerIdentity', () => {
  it('issues an EC server certificate for the registrar id, chained to the CA', () => {
    const id = issueServerIdentity(first.ca, 'reg-1', ['127.0.0.1'], NOW);
    const cert = new X509Certificate(id.certPem);
    expect(cert.subject).toContain('CN=reg-1.registrar.muster');
    expect(cert.subjectAltName).toBe('DNS:reg-1.registrar.muster, DNS:localhost, IP Address:127.0.0.1');
    expect(cert.checkIssued(new X509Certificate(first.ca.certPem))).toBe(true);
    expect(cert.verify(new X509Certificate(first.ca.certPem).publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyType).toBe('ec');
    expect(id.keyPem).toMatch(/BEGIN PRIVATE KEY/);
  });
});
