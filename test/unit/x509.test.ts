// CSRs and certificates on the hot path (src/common/x509.ts): real node:crypto keys, a real CA from
// loadOrCreateCa in a temp dir, and certificates checked by `openssl verify` (CONVENTIONS 8).
import { spawnSync } from 'node:child_process';
import { createHash, createPublicKey, generateKeyPairSync, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bitString, children, DerError, explicit, oid, readTlv, bytes, seq, set, smallInt, utf8 } from '../../src/common/der.js';
import {
  allPem,
  buildCsr,
  certFingerprint,
  encodeName,
  fromPem,
  issueCertificate,
  issueCertificateAsync,
  keyFingerprint,
  keyProblem,
  makeSerial,
  OID,
  parseCsr,
  serialHex,
  sha256b64url,
  toPem,
  type CertificateSpec,
} from '../../src/common/x509.js';
import { loadOrCreateCa, type CertificateAuthority } from '../../src/registrar/ca.js';
import { buildCrl, buildCrlAsync, type CrlSpec } from '../../src/common/crl.js';

const NOW = new Date();
let dir: string;
let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let ecKey: KeyObject;
let rsaKey: KeyObject;
let p384Key: KeyObject;
let rsa1024Key: KeyObject;

const spkiOf = (k: KeyObject): Buffer => createPublicKey(k).export({ type: 'spki', format: 'der' }) as Buffer;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'muster-x509-'));
  ca = (await loadOrCreateCa(path.join(dir, 'ca'), 'muster-test-ca', NOW)).ca;
  otherCa = (await loadOrCreateCa(path.join(dir, 'other-ca'), 'muster-test-ca', NOW)).ca;
  ecKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  rsaKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  p384Key = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
  rsa1024Key = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
  writeFileSync(path.join(dir, 'ca.pem'), ca.certPem);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function openssl(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

let fileNo = 0;
function writeTemp(content: string): string {
  const f = path.join(dir, `f${++fileNo}.pem`);
  writeFileSync(f, content);
  return f;
}

/** Rebuilds a CSR's DER with a transformation applied to its raw bytes. */
function csrDer(pem: string): Buffer {
  return Buffer.from(fromPem(pem, 'CERTIFICATE REQUEST'));
}
const csrPem = (der: Buffer): string => toPem(der, 'CERTIFICATE REQUEST');

describe('buildCsr + parseCsr', () => {
  for (const kind of ['ec', 'rsa'] as const) {
    it(`round-trips a ${kind} CSR: name, SPKI, fingerprint`, () => {
      const key = kind === 'ec' ? ecKey : rsaKey;
      const pem = buildCsr('node-1', key);
      expect(pem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/);
      const parsed = parseCsr(pem);
      expect(parsed.commonName).toBe('node-1');
      expect(parsed.spki.equals(spkiOf(key))).toBe(true);
      expect(parsed.fingerprint).toBe(keyFingerprint(createPublicKey(key)));
      expect(parsed.fingerprint).toBe(keyFingerprint(spkiOf(key)));
      expect(parsed.publicKey.asymmetricKeyType).toBe(kind);
    });

    it(`produces a ${kind} CSR that openssl req -verify accepts`, () => {
      const f = writeTemp(buildCsr('node-openssl', kind === 'ec' ? ecKey : rsaKey));
      const r = openssl('req', '-in', f, '-noout', '-verify', '-subject');
      expect(r.status, r.out).toBe(0);
      expect(r.out).toMatch(/CN ?= ?node-openssl/);
    });
  }

  it('rejects a CSR whose signature was tampered with', () => {
    for (const key of [ecKey, rsaKey]) {
      const der = csrDer(buildCsr('node-1', key));
      der[der.length - 1] = der[der.length - 1]! ^ 0x01;
      expect(() => parseCsr(csrPem(der))).toThrow(/signature does not verify/);
    }
  });

  it('rejects a CSR whose subject was changed after signing', () => {
    const der = csrDer(buildCsr('node-1', ecKey));
    const at = der.indexOf(Buffer.from('node-1'));
    expect(at).toBeGreaterThan(0);
    der[at + 5] = '2'.charCodeAt(0);
    expect(() => parseCsr(csrPem(der))).toThrow(/signature does not verify/);
  });

  it('rejects an EC key that is not on P-256', () => {
    const pem = buildCsr('node-1', p384Key);
    expect(() => parseCsr(pem)).toThrow(/P-256/);
  });

  it('rejects an RSA key shorter than 2048 bits', () => {
    const pem = buildCsr('node-1', rsa1024Key);
    expect(() => parseCsr(pem)).toThrow(/2048/);
  });

  it('rejects trailing data after the CSR', () => {
    const der = Buffer.concat([csrDer(buildCsr('node-1', ecKey)), Buffer.from([0x00])]);
    expect(() => parseCsr(csrPem(der))).toThrow(DerError);
    expect(() => parseCsr(csrPem(der))).toThrow(/trailing/);
  });

  it('rejects input that is not a PEM CSR', () => {
    expect(() => parseCsr('hello')).toThrow(DerError);
    expect(() => parseCsr('')).toThrow(DerError);
    expect(() => parseCsr(ca.certPem)).toThrow(DerError); // a certificate is not a CSR
    expect(() => parseCsr(csrPem(Buffer.from('not der at all')))).toThrow(DerError);
    expect(() => parseCsr(csrPem(Buffer.alloc(0)))).toThrow(DerError);
  });

  it('rejects a CSR whose signature algorithm does not match its key', () => {
    // An RSA-signed CSR relabelled as ECDSA, and an EC-signed one relabelled as RSA.
    for (const [key, wrongAlg] of [
      [rsaKey, seq(oid(OID.ecdsaWithSHA256))],
      [ecKey, seq(oid(OID.sha256WithRSA), Buffer.from([0x05, 0x00]))],
      [rsaKey, seq(oid('1.2.840.113549.1.1.5'), Buffer.from([0x05, 0x00]))], // sha1WithRSA
    ] as const) {
      const der = csrDer(buildCsr('node-1', key));
      const [cri, , sig] = children(der, readTlv(der, 0));
      const swapped = seq(bytes(der, cri!), wrongAlg, bytes(der, sig!));
      expect(() => parseCsr(csrPem(swapped))).toThrow(/SHA-256/);
    }
  });

  it('rejects a signature BIT STRING with unused bits', () => {
    const der = csrDer(buildCsr('node-1', ecKey));
    const [cri, alg, sig] = children(der, readTlv(der, 0));
    const sigBytes = Buffer.from(bytes(der, sig!));
    const hdr = sigBytes.length - (sig!.end - sig!.valueStart);
    sigBytes[hdr] = 3;
    expect(() => parseCsr(csrPem(seq(bytes(der, cri!), bytes(der, alg!), sigBytes)))).toThrow(/unused bits/);
  });

  it('rejects a correctly signed CSR without a common name', () => {
    const subject = seq(set(seq(oid(OID.organization), utf8('acme'))));
    const cri = seq(smallInt(0), subject, spkiOf(ecKey), explicit(0));
    const der = seq(cri, seq(oid(OID.ecdsaWithSHA256)), bitString(sign('sha256', cri, ecKey)));
    expect(() => parseCsr(csrPem(der))).toThrow(/no common name/);
  });
});

describe('keyProblem', () => {
  it('accepts P-256 and RSA-2048, names the problem otherwise', () => {
    expect(keyProblem(createPublicKey(ecKey))).toBeUndefined();
    expect(keyProblem(createPublicKey(rsaKey))).toBeUndefined();
    expect(keyProblem(createPublicKey(p384Key))).toMatch(/P-256/);
    expect(keyProblem(createPublicKey(rsa1024Key))).toMatch(/2048/);
    const ed = generateKeyPairSync('ed25519').publicKey;
    expect(keyProblem(ed)).toMatch(/ed25519 is not accepted/);
  });

  it('refuses an RSA public exponent other than 65537 (e=3 forgeable paddings, e=1 trivial, huge e 100x CPU): the CSR is refused before its signature is checked', () => {
    const e3 = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).privateKey;
    expect(keyProblem(createPublicKey(e3))).toMatch(/exponent 65537/);
    expect(() => parseCsr(buildCsr('n1', e3))).toThrow(/exponent 65537/);
    // e = 2^64+1 (no key generator makes one; written by hand into the SPKI).
    const jwk = createPublicKey(rsaKey).export({ format: 'jwk' });
    const huge = createPublicKey({ key: { ...jwk, e: Buffer.from('010000000000000001', 'hex').toString('base64url') }, format: 'jwk' });
    expect(keyProblem(huge)).toMatch(/exponent 65537/);
  });
});

describe('encodeName', () => {
  it('puts O, OU, CN in that order and omits empty fields', () => {
    const full = encodeName({ cn: 'n', o: 'c', ou: 'r' });
    expect(children(full, readTlv(full, 0))).toHaveLength(3);
    const cnOnly = encodeName({ cn: 'n', o: '', ou: '' });
    expect(children(cnOnly, readTlv(cnOnly, 0))).toHaveLength(1);
  });
});

describe('issueCertificate', () => {
  const spec = (key: KeyObject, over: Partial<CertificateSpec> = {}): CertificateSpec => ({
    serial: makeSerial(42),
    subject: { cn: 'node-1', o: 'edge', ou: 'worker' },
    spki: parseCsr(buildCsr('node-1', key)).spki,
    notBefore: new Date(NOW.getTime() - 5 * 60_000),
    notAfter: new Date(NOW.getTime() + 90 * 86_400_000),
    dnsNames: ['node-1'],
    usage: 'client-server',
    ...over,
  });

  for (const kind of ['ec', 'rsa'] as const) {
    it(`issues a ${kind} node certificate that openssl verify accepts`, () => {
      const key = kind === 'ec' ? ecKey : rsaKey;
      const s = spec(key);
      const pem = toPem(issueCertificate(ca.issuer, s), 'CERTIFICATE');
      const f = writeTemp(pem);
      const strict = openssl('verify', '-x509_strict', '-CAfile', path.join(dir, 'ca.pem'), f);
      expect(strict.status, strict.out).toBe(0);
      expect(strict.out).toContain(': OK');
      for (const purpose of ['sslclient', 'sslserver']) {
        const r = openssl('verify', '-purpose', purpose, '-CAfile', path.join(dir, 'ca.pem'), f);
        expect(r.status, `${purpose}: ${r.out}`).toBe(0);
      }

      const cert = new X509Certificate(pem);
      expect(cert.subject).toBe('O=edge\nOU=worker\nCN=node-1');
      expect(cert.issuer).toBe(new X509Certificate(ca.certPem).subject);
      expect(cert.subjectAltName).toBe('DNS:node-1');
      expect(cert.serialNumber).toBe(serialHex(s.serial));
      expect(cert.ca).toBe(false);
      expect(cert.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
      expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
      expect((cert.publicKey.export({ type: 'spki', format: 'der' }) as Buffer).equals(s.spki)).toBe(true);
      // Validity is kept to the second.
      expect(Date.parse(cert.validFrom)).toBe(Math.floor(s.notBefore.getTime() / 1000) * 1000);
      expect(Date.parse(cert.validTo)).toBe(Math.floor(s.notAfter.getTime() / 1000) * 1000);
    });
  }

  it('signs the same certificate on the main thread and on libuv\'s pool (the join path picks by core count)', async () => {
    const s = spec(ecKey, { dnsNames: ['node-1'] });
    const [main, pool] = await Promise.all([issueCertificateAsync(ca.issuer, s, false), issueCertificateAsync(ca.issuer, s, true)]);
    // RSA PKCS#1 v1.5 signatures are deterministic: the same TBSCertificate gives the same bytes.
    expect(pool.equals(main)).toBe(true);
    expect(main.equals(issueCertificate(ca.issuer, s))).toBe(true);
    const f = writeTemp(toPem(pool, 'CERTIFICATE'));
    expect(openssl('verify', '-CAfile', path.join(dir, 'ca.pem'), f).status).toBe(0);
  });

  it("carries an AKI equal to the CA's SKI, and the expected extensions", () => {
    const f = writeTemp(toPem(issueCertificate(ca.issuer, spec(rsaKey)), 'CERTIFICATE'));
    const text = openssl('x509', '-in', f, '-noout', '-text').out;
    const caText = openssl('x509', '-in', path.join(dir, 'ca.pem'), '-noout', '-text').out;
    const ski = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(caText)?.[1];
    const aki = /Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)/.exec(text)?.[1];
    expect(ski).toMatch(/^([0-9A-F]{2}:){19}[0-9A-F]{2}$/);
    expect(aki).toBe(ski);
    // Its own SKI: SHA-1 of the SPKI (as the code documents).
    const ownSki = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(text)?.[1];
    const spki = spkiOf(rsaKey);
    expect(ownSki?.replace(/:/g, '').toLowerCase()).toBe(createHash('sha1').update(spki).digest('hex'));
    expect(text).toMatch(/Basic Constraints: critical\s*\n\s*CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s*\n\s*Digital Signature, Key Encipherment/);
    expect(text).toMatch(/Extended Key Usage:\s*\n\s*TLS Web Server Authentication, TLS Web Client Authentication/);
  });

  it('EC keys get digitalSignature only; usage server/client restricts the EKU', () => {
    const server = writeTemp(toPem(issueCertificate(ca.issuer, spec(ecKey, { usage: 'server' })), 'CERTIFICATE'));
    const st = openssl('x509', '-in', server, '-noout', '-text').out;
    expect(st).toMatch(/Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
    expect(st).toMatch(/Extended Key Usage:\s*\n\s*TLS Web Server Authentication\s*\n/);
    expect(openssl('verify', '-purpose', 'sslclient', '-CAfile', path.join(dir, 'ca.pem'), server).status).not.toBe(0);
    const client = writeTemp(toPem(issueCertificate(ca.issuer, spec(ecKey, { usage: 'client' })), 'CERTIFICATE'));
    expect(openssl('x509', '-in', client, '-noout', '-text').out).toMatch(/Extended Key Usage:\s*\n\s*TLS Web Client Authentication\s*\n/);
    expect(openssl('verify', '-purpose', 'sslserver', '-CAfile', path.join(dir, 'ca.pem'), client).status).not.toBe(0);
  });

  it('encodes IPv4 and IPv6 addresses in the SAN', () => {
    const der = issueCertificate(ca.issuer, spec(ecKey, { dnsNames: ['node-1', 'localhost'], ipAddresses: ['192.0.2.7', '2001:db8::5', '::1', 'fe80::1:2:3:4:5:6'] }));
    expect(new X509Certificate(der).subjectAltName).toBe(
      'DNS:node-1, DNS:localhost, IP Address:192.0.2.7, IP Address:2001:DB8:0:0:0:0:0:5, IP Address:0:0:0:0:0:0:0:1, IP Address:FE80:0:1:2:3:4:5:6',
    );
    expect(() => issueCertificate(ca.issuer, spec(ecKey, { ipAddresses: ['not-an-ip'] }))).toThrow(/not an IP address/);
    // A dotted IPv4 tail (RFC 4291 §2.2 form 3), and text that is no address or more than one.
    const mapped = issueCertificate(ca.issuer, spec(ecKey, { ipAddresses: ['::ffff:192.0.2.1', '64:ff9b::10.0.0.1'] }));
    expect(new X509Certificate(mapped).subjectAltName).toBe('DNS:node-1, IP Address:0:0:0:0:0:FFFF:C000:201, IP Address:64:FF9B:0:0:0:0:A00:1');
    for (const bad of ['1::2::3', '12345::1', '::1]@example.org/[', '::1%eth0', '192.0.2.256', ''])
      expect(() => issueCertificate(ca.issuer, spec(ecKey, { ipAddresses: [bad] })), bad).toThrow(/not an IP address/);
  });

  it('uses GeneralizedTime for a notAfter from 2050, which openssl accepts', () => {
    const s = spec(ecKey, { notAfter: new Date(Date.UTC(2051, 0, 1)) });
    const pem = toPem(issueCertificate(ca.issuer, s), 'CERTIFICATE');
    expect(new X509Certificate(pem).validTo).toBe('Jan  1 00:00:00 2051 GMT');
    const r = openssl('verify', '-CAfile', path.join(dir, 'ca.pem'), writeTemp(pem));
    expect(r.status, r.out).toBe(0);
  });

  it('a serial with its high bit set is encoded positive and printed as serialHex', () => {
    const serial = Buffer.from('80112233445566778899aabbccddeeff', 'hex');
    const pem = toPem(issueCertificate(ca.issuer, spec(ecKey, { serial })), 'CERTIFICATE');
    expect(new X509Certificate(pem).serialNumber).toBe('80112233445566778899AABBCCDDEEFF');
    expect(serialHex(serial)).toBe('80112233445566778899AABBCCDDEEFF');
    expect(openssl('x509', '-in', writeTemp(pem), '-noout', '-serial').out.trim()).toBe('serial=80112233445566778899AABBCCDDEEFF');
  });

  it('carries a CRL distribution point when asked, and openssl verify still accepts it', () => {
    const pem = toPem(issueCertificate(ca.issuer, spec(ecKey, { crlUrl: 'https://192.0.2.1:8443/v1/crl' })), 'CERTIFICATE');
    const f = writeTemp(pem);
    const text = openssl('x509', '-in', f, '-noout', '-text').out;
    expect(text).toMatch(/X509v3 CRL Distribution Points:\s*\n\s*Full Name:\s*\n\s*URI:https:\/\/192\.0\.2\.1:8443\/v1\/crl/);
    const r = openssl('verify', '-x509_strict', '-CAfile', path.join(dir, 'ca.pem'), f);
    expect(r.status, r.out).toBe(0);
    // Without crlUrl there is none (the registrar's own TLS certificate).
    expect(openssl('x509', '-in', writeTemp(toPem(issueCertificate(ca.issuer, spec(ecKey)), 'CERTIFICATE')), '-noout', '-text').out).not.toContain('CRL Distribution');
  });

  it('the extensions shared by every certificate follow the issuer, the CRL URL and the key type from one certificate to the next', () => {
    const ext = (der: Buffer): string => openssl('x509', '-in', writeTemp(toPem(der, 'CERTIFICATE')), '-noout', '-text').out;
    const akiOf = (text: string): string | undefined =>
      /Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)/.exec(text)?.[1];
    const skiOf = (pem: string): string | undefined =>
      /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(openssl('x509', '-in', writeTemp(pem), '-noout', '-text').out)?.[1];
    const url1 = 'https://192.0.2.1:8443/v1/crl';
    const url2 = 'https://192.0.2.2:8443/v1/crl';
    const first = ext(issueCertificate(ca.issuer, spec(ecKey, { crlUrl: url1 })));
    // The next CA (a rotated or another issuer) gets its own AKI, not the first one's.
    const other = issueCertificate(otherCa.issuer, spec(ecKey, { crlUrl: url1 }));
    expect(akiOf(ext(other))).toBe(skiOf(otherCa.certPem));
    expect(akiOf(ext(other))).not.toBe(akiOf(first));
    expect(new X509Certificate(other).verify(new X509Certificate(otherCa.certPem).publicKey)).toBe(true);
    // The registrar's address changed: the new URL, from the same issuer.
    expect(ext(issueCertificate(ca.issuer, spec(ecKey, { crlUrl: url2 })))).toContain('URI:https://192.0.2.2:8443/v1/crl');
    expect(first).toContain('URI:https://192.0.2.1:8443/v1/crl');
    // An RSA node right after an EC one from the same issuer: keyEncipherment, then not again.
    expect(ext(issueCertificate(ca.issuer, spec(rsaKey, { crlUrl: url1 })))).toMatch(/Key Usage: critical\s*\n\s*Digital Signature, Key Encipherment/);
    expect(ext(issueCertificate(ca.issuer, spec(ecKey, { crlUrl: url1 })))).toMatch(/Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
    // A tier's intermediate after node certificates: CA:TRUE with its pathLen, no EKU.
    const tier = ext(issueCertificate(ca.issuer, spec(ecKey, { usage: 'ca', pathLen: 0, dnsNames: [], crlUrl: url1 })));
    expect(tier).toMatch(/Basic Constraints: critical\s*\n\s*CA:TRUE, pathlen:0/);
    expect(tier).not.toContain('Extended Key Usage');
  });

  it('a certificate from another CA with the same name does not verify against this CA', () => {
    const pem = toPem(issueCertificate(otherCa.issuer, spec(ecKey)), 'CERTIFICATE');
    const r = openssl('verify', '-CAfile', path.join(dir, 'ca.pem'), writeTemp(pem));
    expect(r.status).not.toBe(0);
    expect(new X509Certificate(pem).verify(new X509Certificate(ca.certPem).publicKey)).toBe(false);
  });
});

describe('makeSerial and serialHex', () => {
  it('is 16 bytes with the counter in the high 8 bytes', () => {
    for (const counter of [0, 1, 255, 65536, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER]) {
      const s = makeSerial(counter);
      expect(s.length).toBe(16);
      expect(s.readBigUInt64BE(0)).toBe(BigInt(counter));
    }
  });

  it('never repeats for distinct counters, and orders by counter', () => {
    const seen = new Set<string>();
    let prev = '';
    for (let c = 1; c <= 2000; c++) {
      const h = makeSerial(c).toString('hex');
      expect(seen.has(h)).toBe(false);
      seen.add(h);
      expect(h > prev).toBe(true);
      prev = h;
    }
  });

  it('adds random low bytes: the same counter gives different serials', () => {
    expect(makeSerial(7).equals(makeSerial(7))).toBe(false);
    expect(makeSerial(7).subarray(0, 8).equals(makeSerial(7).subarray(0, 8))).toBe(true);
  });

  it('serialHex strips leading zero bytes and upper-cases', () => {
    expect(serialHex(Buffer.from('0000010aff', 'hex'))).toBe('010AFF');
    expect(serialHex(Buffer.from('00', 'hex'))).toBe('00');
    expect(serialHex(Buffer.from('0000', 'hex'))).toBe('00');
    expect(serialHex(Buffer.from('ab', 'hex'))).toBe('AB');
  });
});

describe('PEM', () => {
  it('toPem wraps at 64 characters and fromPem reads it back', () => {
    const der = Buffer.alloc(200, 0).map((_, i) => i);
    const pem = toPem(Buffer.from(der), 'CERTIFICATE');
    const lines = pem.trimEnd().split('\n');
    expect(lines[0]).toBe('-----BEGIN CERTIFICATE-----');
    expect(lines.at(-1)).toBe('-----END CERTIFICATE-----');
    for (const l of lines.slice(1, -2)) expect(l).toHaveLength(64);
    expect(lines.at(-2)!.length).toBeLessThanOrEqual(64);
    expect(fromPem(pem).equals(Buffer.from(der))).toBe(true);
    expect(fromPem(pem, 'CERTIFICATE').equals(Buffer.from(der))).toBe(true);
  });

  it('round-trips empty and short contents', () => {
    for (const n of [0, 1, 2, 3, 48, 49]) {
      const der = Buffer.alloc(n, 7);
      expect(fromPem(toPem(der, 'X')).equals(der)).toBe(true);
    }
  });

  it('fromPem picks the block with the wanted label, tolerates CRLF and surrounding text', () => {
    const a = Buffer.from('first');
    const b = Buffer.from('second block');
    const text = `junk before\r\n${toPem(a, 'PRIVATE KEY').replace(/\n/g, '\r\n')}between\n${toPem(b, 'CERTIFICATE')}after`;
    expect(fromPem(text).equals(a)).toBe(true);
    expect(fromPem(text, 'CERTIFICATE').equals(b)).toBe(true);
    expect(fromPem(text, 'PRIVATE KEY').equals(a)).toBe(true);
    expect(() => fromPem(text, 'CERTIFICATE REQUEST')).toThrow(DerError);
    expect(() => fromPem('no pem here')).toThrow(/no PEM block/);
  });

  it('fromPem does not pair a BEGIN with an END of another label', () => {
    const mixed = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n';
    expect(() => fromPem(mixed)).toThrow(DerError);
  });

  it('allPem returns every block with the label, in order', () => {
    const blocks = [Buffer.from('one'), Buffer.from('two'), Buffer.from('three')];
    const text = toPem(blocks[0]!, 'CERTIFICATE') + toPem(Buffer.from('key'), 'PRIVATE KEY') + toPem(blocks[1]!, 'CERTIFICATE') + toPem(blocks[2]!, 'CERTIFICATE');
    const got = allPem(text, 'CERTIFICATE');
    expect(got.map((b) => b.toString())).toEqual(['one', 'two', 'three']);
    expect(allPem(text, 'CERTIFICATE REQUEST')).toEqual([]);
    expect(allPem('', 'CERTIFICATE')).toEqual([]);
  });
});

describe('fingerprints', () => {
  it('certFingerprint is SHA-256 of the certificate DER, base64url, and matches node', () => {
    const fp = certFingerprint(ca.certPem);
    expect(fp).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(fp).toBe(createHash('sha256').update(fromPem(ca.certPem)).digest('base64url'));
    const nodeHex = new X509Certificate(ca.certPem).fingerprint256.replace(/:/g, '').toLowerCase();
    expect(Buffer.from(fp, 'base64url').toString('hex')).toBe(nodeHex);
    expect(fp).toBe(ca.fingerprint);
    expect(certFingerprint(otherCa.certPem)).not.toBe(fp);
  });

  it('certFingerprint ignores text around the PEM and throws without a certificate', () => {
    expect(certFingerprint(`subject=...\n${ca.certPem}\n`)).toBe(ca.fingerprint);
    expect(() => certFingerprint('nothing')).toThrow(DerError);
  });

  it('keyFingerprint agrees for a KeyObject and its SPKI DER', () => {
    const pub = createPublicKey(rsaKey);
    expect(keyFingerprint(pub)).toBe(sha256b64url(spkiOf(rsaKey)));
    expect(keyFingerprint(pub)).not.toBe(keyFingerprint(createPublicKey(ecKey)));
  });
});

describe('buildCrl (RFC 5280 §5)', () => {
  const base = (over: Partial<CrlSpec> = {}): CrlSpec => ({
    number: 7,
    thisUpdate: new Date(NOW.getTime() - 60_000),
    nextUpdate: new Date(NOW.getTime() + 7 * 86_400_000),
    revoked: [],
    ...over,
  });
  const crlText = (der: Buffer): { status: number | null; out: string } => {
    const f = path.join(dir, `crl${++fileNo}.der`);
    writeFileSync(f, der);
    return openssl('crl', '-inform', 'DER', '-in', f, '-noout', '-text', '-CAfile', path.join(dir, 'ca.pem'));
  };

  it('an empty CRL: v2, the CA as issuer, its AKI and number, no revoked list; the signature verifies', () => {
    const r = crlText(buildCrl(ca.issuer, base()));
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('verify OK');
    expect(r.out).toMatch(/Version 2 \(0x1\)/);
    expect(r.out).toMatch(/Issuer: CN ?= ?muster-test-ca, O ?= ?muster/);
    expect(r.out).toMatch(/X509v3 CRL Number:\s*\n\s*7\s*\n/);
    expect(r.out).toContain('No Revoked Certificates');
    const caText = openssl('x509', '-in', path.join(dir, 'ca.pem'), '-noout', '-text').out;
    const ski = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(caText)?.[1];
    expect(/Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)/.exec(r.out)?.[1]).toBe(ski);
  });

  it('lists serials with their dates and reasons; a CRL number beyond 32 bits; the async signer agrees', async () => {
    const at = new Date(Date.UTC(2026, 5, 1, 12, 0, 0));
    const spec = base({
      number: 1_764_460_800_123,
      revoked: [
        { serial: '80112233445566778899AABBCCDDEEFF', revokedAt: at },
        { serial: 'ABC', revokedAt: at, reason: 'cessationOfOperation' },
      ],
    });
    for (const der of [buildCrl(ca.issuer, spec), await buildCrlAsync(ca.issuer, spec)]) {
      const r = crlText(der);
      expect(r.status, r.out).toBe(0);
      expect(r.out).toContain('verify OK');
      expect(r.out).toMatch(/X509v3 CRL Number:\s*\n\s*1764460800123\s*\n/);
      expect(r.out).toMatch(/Serial Number: 80112233445566778899AABBCCDDEEFF\s*\n\s*Revocation Date: Jun {2}1 12:00:00 2026 GMT/);
      expect(r.out).toMatch(/Serial Number: 0ABC\s*\n\s*Revocation Date: Jun {2}1 12:00:00 2026 GMT\s*\n\s*CRL entry extensions:\s*\n\s*X509v3 CRL Reason Code:\s*\n\s*Cessation Of Operation/);
    }
  });

  it('a CRL signed by another CA with the same name does not verify against this CA', () => {
    const r = crlText(buildCrl(otherCa.issuer, base()));
    expect(r.out).toContain('verify failure');
    expect(r.out).not.toContain('verify OK');
  });

  it('refuses a serial that is not hex and a number that is not a safe integer', () => {
    expect(() => buildCrl(ca.issuer, base({ revoked: [{ serial: 'zz', revokedAt: NOW }] }))).toThrow(/serial/);
    expect(() => buildCrl(ca.issuer, base({ number: -1 }))).toThrow(/CRL number/);
  });
});
