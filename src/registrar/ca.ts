/**
 * The registrar's certificate authority. Created once, with node-forge, on first start (DESIGN
 * "Roles"): an RSA-2048 key from node:crypto (forge's pure-JS key generation takes seconds) and a
 * self-signed root built by forge. Issuing node certificates is the hot path and goes through
 * common/x509.ts with node:crypto signatures.
 */
import type Forge from 'node-forge';
import {
  createPrivateKey,
  generateKeyPairSync,
  randomBytes,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import path from 'node:path';
import {
  ensureDir,
  PRIVATE_DIR_MODE,
  PRIVATE_FILE_MODE,
  readPrivateFile,
  readStateFile,
  writeFileAtomic,
} from '../common/files.js';
import { registrarDnsName } from '../common/names.js';
import {
  certFingerprint,
  fromPem,
  issueCertificate,
  makeSerial,
  toPem,
  type IssuerKey,
} from '../common/x509.js';

export interface CertificateAuthority {
  /** Root certificate, PEM: the trust anchor nodes pin and bundles carry as `ca`. */
  certPem: string;
  /** The CA pin: SHA-256 of the root certificate DER, base64url. */
  fingerprint: string;
  /** The key that signs: the root's on a main registrar, the intermediate's on a tier (issue 11). */
  issuer: IssuerKey;
  /**
   * A tier registrar's intermediate(s), PEM, leaf side first: served after the registrar's own TLS
   * certificate and carried in bundles as `chain`. Empty on a main registrar (the root signs).
   */
  chain?: string[];
}

const CA_YEARS = 10;

export async function loadOrCreateCa(
  dir: string,
  subjectCn: string,
  now: Date,
): Promise<{ ca: CertificateAuthority; created: boolean }> {
  // Private, and made private when it exists (a restored backup, an older muster): the CA key signs
  // every node certificate. Neither the directory nor the files are followed through a link.
  await ensureDir(dir, PRIVATE_DIR_MODE);
  const keyFile = path.join(dir, 'ca.key');
  const certFile = path.join(dir, 'ca.crt');
  const [key, certPem] = await Promise.all([readPrivateFile(keyFile), readStateFile(certFile)]);
  const keyPem = key?.text;
  if (keyPem && certPem) {
    return { ca: makeCa(keyPem, certPem), created: false };
  }
  if (keyPem || certPem) {
    throw new Error(`${dir} holds only one of ca.key and ca.crt: restore the other or move both away`);
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const newKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const newCertPem = await selfSignedRoot(newKeyPem, subjectCn, now);
  // The key first: a crash between the two writes leaves a key without a cert, which the check above
  // reports instead of silently minting a second CA.
  await writeFileAtomic(keyFile, newKeyPem, PRIVATE_FILE_MODE);
  await writeFileAtomic(certFile, newCertPem, 0o644); // public: the pin is its fingerprint
  return { ca: makeCa(newKeyPem, newCertPem), created: true };
}

function makeCa(keyPem: string, certPem: string): CertificateAuthority {
  const privateKey = createPrivateKey(keyPem);
  const cert = new X509Certificate(certPem);
  if (!cert.checkPrivateKey(privateKey)) throw new Error('ca.key does not belong to ca.crt');
  return {
    certPem,
    fingerprint: certFingerprint(certPem),
    issuer: { certDer: fromPem(certPem, 'CERTIFICATE'), privateKey },
    chain: [],
  };
}

/**
 * A tier registrar's CA (issue 11): its intermediate certificate and key (from its join as role
 * `cluster`), under the parent's root. The root stays the anchor: the pin, `ca=` in TXT, `ca` in
 * bundles. Throws when the key is not the intermediate's or the intermediate is not a CA.
 */
export function intermediateCa(
  keyPem: string,
  intermediatePem: string,
  rootPem: string,
): CertificateAuthority {
  const privateKey = createPrivateKey(keyPem);
  const cert = new X509Certificate(intermediatePem);
  if (!cert.checkPrivateKey(privateKey))
    throw new Error('the tier key does not belong to its intermediate certificate');
  if (!cert.ca) throw new Error('the certificate the parent issued is not a CA certificate');
  const root = new X509Certificate(rootPem);
  if (!cert.checkIssued(root) || !cert.verify(root.publicKey))
    throw new Error('the intermediate certificate is not signed by the root CA');
  return {
    certPem: rootPem,
    fingerprint: certFingerprint(rootPem),
    issuer: { certDer: fromPem(intermediatePem, 'CERTIFICATE'), privateKey },
    chain: [intermediatePem],
  };
}

async function selfSignedRoot(keyPem: string, cn: string, now: Date): Promise<string> {
  // node-forge is needed once, when the CA is made: loaded then, not at every start (~70 ms).
  const { default: forge } = await import('node-forge');
  const key = forge.pki.privateKeyFromPem(keyPem) as Forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = '01' + randomBytes(15).toString('hex');
  cert.validity.notBefore = new Date(now.getTime() - 60_000);
  cert.validity.notAfter = new Date(now.getTime() + CA_YEARS * 365 * 86_400_000);
  const attrs = [
    { name: 'commonName', value: cn },
    { name: 'organizationName', value: 'muster' },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key, forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/** The registrar's own TLS identity: an EC P-256 key (cheap handshakes) certified by its CA. */
export interface ServerIdentity {
  keyPem: string;
  /** The server certificate followed by the CA's chain (a tier's intermediate): TLS sends them all. */
  certPem: string;
}

export function issueServerIdentity(
  ca: CertificateAuthority,
  registrarId: string,
  ipAddresses: string[],
  now: Date,
): ServerIdentity {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const der = issueCertificate(ca.issuer, {
    serial: makeSerial(0),
    subject: { cn: registrarDnsName(registrarId), o: 'muster' },
    spki: publicKey.export({ type: 'spki', format: 'der' }) as Buffer,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 365 * 86_400_000),
    dnsNames: [registrarDnsName(registrarId), 'localhost'],
    ipAddresses,
    usage: 'server',
  });
  return {
    keyPem: (privateKey as KeyObject).export({ type: 'pkcs8', format: 'pem' }) as string,
    certPem: toPem(der, 'CERTIFICATE') + (ca.chain ?? []).join(''),
  };
}
