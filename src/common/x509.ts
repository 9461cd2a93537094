/**
 * Certificates and CSRs on the hot path (see der.ts for why not node-forge's object model here):
 * - nodes build their CSR and sign it with node:crypto (RSA or EC P-256 keys);
 * - the registrar parses a CSR, checks its signature with node:crypto, and copies the
 *   SubjectPublicKeyInfo bytes into a TBSCertificate that node:crypto signs with the CA key.
 * Fingerprints are SHA-256 over DER, base64url (DESIGN "Discovery": `key=` and `ca=`).
 */
import {
  createHash,
  createPublicKey,
  KeyObject,
  randomFillSync,
  sign,
  verify,
  X509Certificate,
} from 'node:crypto';
import { isIPv4 } from 'node:net';
import { availableParallelism } from 'node:os';
import {
  bitString,
  bool,
  bytes,
  children,
  DerError,
  expectTag,
  explicit,
  implicit,
  nul,
  octets,
  oid,
  readTlv,
  seq,
  set,
  smallInt,
  TAG,
  time,
  uint,
  utf8,
  value,
  type Tlv,
} from './der.js';

export const OID = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha256WithRSA: '1.2.840.113549.1.1.11',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  cRLNumber: '2.5.29.20',
  cRLReason: '2.5.29.21',
  cRLDistributionPoints: '2.5.29.31',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

const OID_DER = Object.fromEntries(Object.entries(OID).map(([k, v]) => [k, oid(v)])) as Record<
  keyof typeof OID,
  Buffer
>;

// ---- PEM ----

export function toPem(der: Buffer, label: string): string {
  const b64 = der.toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** The DER of the first PEM block with this label (or any label). Throws DerError when absent. */
export function fromPem(pem: string, label?: string): Buffer {
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(pem)) !== null) {
    if (label === undefined || m[1] === label) return Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64');
  }
  throw new DerError(`no PEM block${label ? ` labelled ${label}` : ''}`);
}

export function allPem(pem: string, label: string): Buffer[] {
  const out: Buffer[] = [];
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  let m: RegExpExecArray | null;
  while ((m = re.exec(pem)) !== null) out.push(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
  return out;
}

// ---- fingerprints ----

export function sha256b64url(der: Buffer): string {
  return createHash('sha256').update(der).digest('base64url');
}

/** The fingerprint of a key: SHA-256 of its SubjectPublicKeyInfo DER, base64url. */
export function keyFingerprint(key: KeyObject | Buffer): string {
  if (Buffer.isBuffer(key)) return sha256b64url(key);
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const spki = pub.export({ type: 'spki', format: 'der' }) as Buffer;
  return sha256b64url(spki);
}

/** The fingerprint of a certificate (the CA pin): SHA-256 of its DER, base64url. */
export function certFingerprint(certPem: string): string {
  return sha256b64url(fromPem(certPem, 'CERTIFICATE'));
}

// ---- keys ----

export type KeyKind = 'ec' | 'rsa';

function sigAlgFor(key: KeyObject): { alg: Buffer; kind: KeyKind } {
  if (key.asymmetricKeyType === 'rsa') return { alg: seq(OID_DER.sha256WithRSA, nul()), kind: 'rsa' };
  if (key.asymmetricKeyType === 'ec') return { alg: seq(OID_DER.ecdsaWithSHA256), kind: 'ec' };
  throw new Error(`unsupported key type ${key.asymmetricKeyType}`);
}

/**
 * Checks that a public key is one muster accepts for nodes: RSA >= 2048 bits with e = 65537, or EC P-256.
 * Returns a reason when it is not.
 */
export function keyProblem(key: KeyObject): string | undefined {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') {
    if (!d?.modulusLength || d.modulusLength < 2048) return 'RSA keys must have at least 2048 bits';
    if (d.modulusLength > 8192) return 'RSA keys larger than 8192 bits are not accepted';
    // e = 1 makes "signatures" anyone can forge; a huge e costs the registrar 100x the CPU to verify
    // one CSR (issue 8). Every RSA key generator uses 65537 (F4).
    if (d.publicExponent !== 65537n) return 'RSA keys must have the public exponent 65537';
    return undefined;
  }
  if (key.asymmetricKeyType === 'ec') {
    if (d?.namedCurve !== 'prime256v1') return 'EC keys must be on curve P-256';
    return undefined;
  }
  return `key type ${key.asymmetricKeyType} is not accepted (use EC P-256 or RSA >= 2048)`;
}

const P256_OID = oid('1.2.840.10045.3.1.7');

/** The key type of a SubjectPublicKeyInfo, read from its DER (no key parsing). */
export function spkiKind(spki: Buffer): { kind: KeyKind | 'other'; p256: boolean } {
  const [algId] = children(spki, readTlv(spki, 0));
  const [algOid, params] = children(spki, expectTag(algId, TAG.SEQUENCE, 'AlgorithmIdentifier'));
  const a = bytes(spki, expectTag(algOid, TAG.OID, 'key algorithm'));
  if (a.equals(OID_DER.rsaEncryption)) return { kind: 'rsa', p256: false };
  if (a.equals(OID_DER.ecPublicKey))
    return { kind: 'ec', p256: params !== undefined && bytes(spki, params).equals(P256_OID) };
  return { kind: 'other', p256: false };
}

/**
 * Imports a node's public key. EC P-256 goes through JWK (about half the cost of OpenSSL's DER decoder
 * on the registration hot path); RSA through DER. Throws with a reason when the key is not accepted.
 */
export function importNodeKey(spki: Buffer): KeyObject {
  const { kind, p256 } = spkiKind(spki);
  if (kind === 'ec') {
    if (!p256) throw new Error('EC keys must be on curve P-256');
    const [, bits] = children(spki, readTlv(spki, 0));
    const point = value(spki, expectTag(bits, TAG.BIT_STRING, 'public key'));
    // BIT STRING: 0 unused bits, then the uncompressed point 04 || X || Y (SEC 1 §2.3.3).
    if (point.length !== 66 || point[0] !== 0 || point[1] !== 4)
      throw new Error('the EC public key is not an uncompressed P-256 point');
    try {
      return createPublicKey({
        key: {
          kty: 'EC',
          crv: 'P-256',
          x: point.subarray(2, 34).toString('base64url'),
          y: point.subarray(34, 66).toString('base64url'),
        },
        format: 'jwk',
      });
    } catch {
      throw new DerError('the public key cannot be read');
    }
  }
  if (kind !== 'rsa') throw new Error('key type is not accepted (use EC P-256 or RSA >= 2048)');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw new DerError('the public key cannot be read');
  }
  const problem = keyProblem(key);
  if (problem) throw new Error(problem);
  return key;
}

// ---- names ----

export interface SubjectFields {
  cn: string;
  o?: string;
  ou?: string;
}

function rdn(oidDer: Buffer, v: string): Buffer {
  return set(seq(oidDer, utf8(v)));
}

export function encodeName(f: SubjectFields): Buffer {
  const rdns: Buffer[] = [];
  if (f.o !== undefined && f.o !== '') rdns.push(rdn(OID_DER.organization, f.o));
  if (f.ou !== undefined && f.ou !== '') rdns.push(rdn(OID_DER.organizationalUnit, f.ou));
  rdns.push(rdn(OID_DER.commonName, f.cn));
  return seq(...rdns);
}

/** The attribute values of a DER Name, by attribute OID (first occurrence). */
function decodeName(
  buf: Buffer,
  name: { valueStart: number; end: number; tag: number; start: number },
): Map<string, string> {
  const out = new Map<string, string>();
  for (const rdnSet of children(buf, name)) {
    for (const atv of children(buf, rdnSet)) {
      const [o, v] = children(buf, atv);
      if (!o || !v || o.tag !== TAG.OID) throw new DerError('bad name attribute');
      const key = value(buf, o).toString('hex');
      if (!out.has(key)) out.set(key, value(buf, v).toString('utf8'));
    }
  }
  return out;
}

const CN_HEX = value(OID_DER.commonName, readTlv(OID_DER.commonName, 0)).toString('hex');

// ---- CSR (RFC 2986) ----

/** Builds a PKCS#10 CSR with CN=<name>, signed by the node's key with node:crypto. */
export function buildCsr(name: string, privateKey: KeyObject): string {
  const pub = createPublicKey(privateKey);
  const spki = pub.export({ type: 'spki', format: 'der' }) as Buffer;
  const { alg } = sigAlgFor(privateKey);
  const cri = seq(smallInt(0), encodeName({ cn: name }), spki, explicit(0));
  const sig = sign('sha256', cri, privateKey);
  return toPem(seq(cri, alg, bitString(sig)), 'CERTIFICATE REQUEST');
}

export interface ParsedCsr {
  commonName: string;
  spki: Buffer;
  publicKey: KeyObject;
  fingerprint: string;
}

interface DecodedCsr extends ParsedCsr {
  cri: Buffer;
  signature: Buffer;
}

/** Parses a CSR and imports its key; checks everything but the signature. */
function decodeCsr(pem: string): DecodedCsr {
  const der = fromPem(pem, 'CERTIFICATE REQUEST');
  const top = readTlv(der, 0);
  if (top.end !== der.length) throw new DerError('trailing data after the CSR');
  const [cri, algId, sigBits] = children(der, expectTag(top, TAG.SEQUENCE, 'CertificationRequest'));
  expectTag(cri, TAG.SEQUENCE, 'CertificationRequestInfo');
  expectTag(algId, TAG.SEQUENCE, 'AlgorithmIdentifier');
  expectTag(sigBits, TAG.BIT_STRING, 'signature');
  const [version, subject, spkiTlv] = children(der, cri!);
  expectTag(version, TAG.INTEGER, 'version');
  expectTag(subject, TAG.SEQUENCE, 'subject');
  expectTag(spkiTlv, TAG.SEQUENCE, 'SubjectPublicKeyInfo');
  const algOid = children(der, algId!)[0];
  expectTag(algOid, TAG.OID, 'signature algorithm');
  const alg = bytes(der, algOid!);
  const sigVal = value(der, sigBits!);
  if (sigVal[0] !== 0) throw new DerError('signature has unused bits');

  const spki = Buffer.from(bytes(der, spkiTlv!));
  const publicKey = importNodeKey(spki);
  const expected = publicKey.asymmetricKeyType === 'rsa' ? OID_DER.sha256WithRSA : OID_DER.ecdsaWithSHA256;
  if (!alg.equals(expected))
    throw new Error('the CSR must be signed with SHA-256 (RSA PKCS#1 v1.5 or ECDSA)');
  const names = decodeName(der, subject!);
  const commonName = names.get(CN_HEX);
  if (commonName === undefined) throw new Error('the CSR has no common name');
  return {
    commonName,
    spki,
    publicKey,
    fingerprint: sha256b64url(spki),
    cri: bytes(der, cri!),
    signature: sigVal.subarray(1),
  };
}

function strip(d: DecodedCsr): ParsedCsr {
  return { commonName: d.commonName, spki: d.spki, publicKey: d.publicKey, fingerprint: d.fingerprint };
}

/**
 * Parses a CSR, checks its self-signature with node:crypto and the key type.
 * Throws DerError (malformed) or an Error with a reason for a person.
 */
export function parseCsr(pem: string): ParsedCsr {
  const d = decodeCsr(pem);
  if (!verify('sha256', d.cri, d.publicKey, d.signature))
    throw new Error('the CSR signature does not verify with its own key');
  return strip(d);
}

/**
 * Whether the registrar's signatures and CSR checks go to libuv's thread pool (parseCsrAsync,
 * issueCertificateAsync). The pool keeps the event loop free while OpenSSL works, which pays only
 * with cores to spare for its threads: each hand-off costs CPU (a job, a thread wake-up, the
 * callback; about 0.25 ms of the ~2 ms a join costs, measured in-process with 16 at once), and on a
 * machine of 1-3 cores the pool's threads take the CPU from the event loop and the TLS handshakes it
 * runs. There, the work stays on the main thread, as in the plain node:https server of issue 12's
 * floor (CPU per join ratio 2.14 -> 1.95, joins/s ratio 0.70 -> 0.83 on 2 cores, medians of 3 runs).
 */
export const CRYPTO_ON_POOL = availableParallelism() >= 4;

/**
 * parseCsr with the signature check on libuv's thread pool when `pool` (default CRYPTO_ON_POOL):
 * keeps the event loop free under a herd.
 */
export async function parseCsrAsync(pem: string, pool = CRYPTO_ON_POOL): Promise<ParsedCsr> {
  if (!pool) return parseCsr(pem);
  const d = decodeCsr(pem);
  const ok = await new Promise<boolean>((resolve, reject) =>
    verify('sha256', d.cri, d.publicKey, d.signature, (err, result) => (err ? reject(err) : resolve(result))),
  );
  if (!ok) throw new Error('the CSR signature does not verify with its own key');
  return strip(d);
}

// ---- certificates ----

export interface IssuerKey {
  /** The issuer's certificate (its subject becomes the issuer name). */
  certDer: Buffer;
  privateKey: KeyObject;
}

export interface CertificateSpec {
  serial: Buffer;
  subject: SubjectFields;
  spki: Buffer;
  notBefore: Date;
  notAfter: Date;
  dnsNames?: string[];
  ipAddresses?: string[];
  /**
   * 'ca': an intermediate CA for a tier registrar (issue 11): basicConstraints CA:true with
   * pathLenConstraint `pathLen` (default 0: it signs end entities only), keyUsage keyCertSign, cRLSign
   * and digitalSignature, no extendedKeyUsage (RFC 5280 §4.2.1.9, §4.2.1.3).
   */
  usage: 'client-server' | 'server' | 'client' | 'ca';
  pathLen?: number;
  /** Where relying parties fetch the issuer's CRL (RFC 5280 §4.2.1.13), e.g. `<registrar>/v1/crl`. */
  crlUrl?: string;
}

/** What a certificate or CRL says about its issuer: its subject Name, key identifier, signature algorithm. */
export interface IssuerInfo {
  subject: Buffer;
  ski: Buffer | undefined;
  alg: Buffer;
}
const issuerCache = new WeakMap<Buffer, IssuerInfo>();

/**
 * The fields of a certificate's TBSCertificate (RFC 5280 §4.1), read from its DER without decoding
 * any of them: `field(i)` counts from serialNumber (0) whether or not the [0] version is present
 * (serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo: 0-5), and
 * `extension(oid)` is the extnValue's content (the DER inside the OCTET STRING) of the first
 * extension with that OID. Throws DerError on a malformed certificate.
 */
export function tbsFields(der: Buffer): {
  field(i: number): Tlv | undefined;
  extension(oidDer: Buffer): Buffer | undefined;
} {
  const [tbs] = children(der, readTlv(der, 0));
  if (!tbs) throw new DerError('no tbsCertificate');
  const parts = children(der, tbs);
  const off = parts[0]?.tag === 0xa0 ? 1 : 0;
  return {
    field: (i) => parts[off + i],
    extension(oidDer) {
      const extWrap = parts.find((p) => p.tag === 0xa3);
      if (!extWrap) return undefined;
      const [exts] = children(der, extWrap);
      for (const ext of children(der, exts!)) {
        const [o, ...rest] = children(der, ext);
        if (bytes(der, o!).equals(oidDer)) return value(der, rest[rest.length - 1]!);
      }
      return undefined;
    },
  };
}

export function issuerInfo(issuer: IssuerKey): IssuerInfo {
  let info = issuerCache.get(issuer.certDer);
  if (info) return info;
  const der = issuer.certDer;
  const tbs = tbsFields(der);
  const subject = Buffer.from(bytes(der, tbs.field(4)!));
  const skiExt = tbs.extension(OID_DER.subjectKeyIdentifier);
  const ski = skiExt ? Buffer.from(value(skiExt, readTlv(skiExt, 0))) : undefined;
  info = { subject, ski, alg: sigAlgFor(issuer.privateKey).alg };
  issuerCache.set(issuer.certDer, info);
  return info;
}

export function extension(oidDer: Buffer, critical: boolean, content: Buffer): Buffer {
  return critical ? seq(oidDer, bool(true), octets(content)) : seq(oidDer, octets(content));
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  // IPv6 (RFC 4291 §2.2), checked and written without a dotted IPv4 tail by the WHATWG URL parser:
  // node's isIPv6 compiles a large regular expression on its first call, which a registrar's start
  // paid for its server certificate (issue 12, target 2).
  let text: string | undefined;
  if (/^[0-9a-fA-F:.]+$/.test(ip) && ip.includes(':')) {
    try {
      text = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
    } catch {
      text = undefined;
    }
  }
  if (text === undefined) throw new Error(`not an IP address: ${ip}`);
  // Groups of 16 bits, one '::' for a run of zeros.
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return out;
}

/**
 * The extensions that are the same in every certificate of one kind from one issuer, DER: those
 * before the subjectAltName (basicConstraints, keyUsage, extKeyUsage) and those after the
 * subjectKeyIdentifier (authorityKeyIdentifier, CRL distribution point). Built once per issuer and
 * kind instead of on every join (each is several small DER buffers); the cache is per issuer, so a
 * new CA key or certificate (a rotated tier intermediate) builds its own.
 */
interface FixedExtensions {
  head: Buffer;
  tail: Buffer;
}
const fixedExtCache = new WeakMap<IssuerInfo, Map<string, FixedExtensions>>();
/** Kinds cached per issuer at most (the CRL URL is part of the kind: it follows the registrar's address). */
const FIXED_EXT_KINDS = 16;

function fixedExtensions(info: IssuerInfo, spec: CertificateSpec): FixedExtensions {
  // keyUsage depends on the key type for node certificates, read from the SPKI's algorithm OID: no
  // key parsing on the hot path.
  const rsa = spec.usage !== 'ca' && spkiKind(spec.spki).kind === 'rsa';
  const key = spec.usage === 'ca' ? String(spec.pathLen ?? 0) : rsa ? 'rsa' : 'ec';
  const kind = `${spec.usage}|${key}|${spec.crlUrl ?? ''}`;
  let byKind = fixedExtCache.get(info);
  const hit = byKind?.get(kind);
  if (hit) return hit;
  const head: Buffer[] = [];
  if (spec.usage === 'ca') {
    head.push(extension(OID_DER.basicConstraints, true, seq(bool(true), smallInt(spec.pathLen ?? 0))));
    // keyUsage bits digitalSignature (0), keyCertSign (5), cRLSign (6): 0b10000110, one unused bit.
    head.push(extension(OID_DER.keyUsage, true, tlv3(TAG.BIT_STRING, Buffer.from([0x01, 0x86]))));
  } else {
    head.push(extension(OID_DER.basicConstraints, true, seq()));
    // keyUsage bits: digitalSignature (0), keyEncipherment (2) for RSA key exchange.
    const ku = rsa ? Buffer.from([0x05, 0xa0]) : Buffer.from([0x07, 0x80]);
    head.push(extension(OID_DER.keyUsage, true, tlv3(TAG.BIT_STRING, ku)));
    const eku: Buffer[] = [];
    if (spec.usage !== 'client') eku.push(OID_DER.serverAuth);
    if (spec.usage !== 'server') eku.push(OID_DER.clientAuth);
    head.push(extension(OID_DER.extKeyUsage, false, seq(...eku)));
  }
  const tail: Buffer[] = [];
  if (info.ski) tail.push(extension(OID_DER.authorityKeyIdentifier, false, seq(implicit(0, info.ski))));
  if (spec.crlUrl !== undefined) {
    // CRLDistributionPoints: one DistributionPoint whose distributionPoint [0] is a fullName [0]
    // (GeneralNames, IMPLICIT) holding one uniformResourceIdentifier [6] (RFC 5280 §4.2.1.13).
    const uri = implicit(6, Buffer.from(spec.crlUrl, 'ascii'));
    tail.push(extension(OID_DER.cRLDistributionPoints, false, seq(seq(explicit(0, explicit(0, uri))))));
  }
  const fixed = { head: Buffer.concat(head), tail: Buffer.concat(tail) };
  if (!byKind || byKind.size >= FIXED_EXT_KINDS) fixedExtCache.set(info, (byKind = new Map()));
  byKind.set(kind, fixed);
  return fixed;
}

/** The TBSCertificate (RFC 5280 §4.1) for a spec, DER, with the issuer's signature algorithm. */
function buildTbs(issuer: IssuerKey, spec: CertificateSpec): { tbs: Buffer; alg: Buffer } {
  const info = issuerInfo(issuer);
  const fixed = fixedExtensions(info, spec);
  const san: Buffer[] = [];
  for (const d of spec.dnsNames ?? []) san.push(implicit(2, Buffer.from(d, 'ascii')));
  for (const ip of spec.ipAddresses ?? []) san.push(implicit(7, ipBytes(ip)));
  const exts = seq(
    fixed.head,
    san.length ? extension(OID_DER.subjectAltName, false, seq(...san)) : EMPTY,
    extension(OID_DER.subjectKeyIdentifier, false, octets(createHash('sha1').update(spec.spki).digest())),
    fixed.tail,
  );

  const tbs = seq(
    explicit(0, smallInt(2)),
    uint(spec.serial),
    info.alg,
    info.subject,
    seq(time(spec.notBefore), time(spec.notAfter)),
    encodeName(spec.subject),
    spec.spki,
    explicit(3, exts),
  );
  return { tbs, alg: info.alg };
}

/** Builds and signs an X.509 v3 certificate (RFC 5280) with node:crypto. Returns DER. */
export function issueCertificate(issuer: IssuerKey, spec: CertificateSpec): Buffer {
  const { tbs, alg } = buildTbs(issuer, spec);
  return seq(tbs, alg, bitString(sign('sha256', tbs, issuer.privateKey)));
}

/**
 * issueCertificate with the CA signature on libuv's thread pool when `pool` (default CRYPTO_ON_POOL):
 * the event loop keeps serving.
 */
export async function issueCertificateAsync(
  issuer: IssuerKey,
  spec: CertificateSpec,
  pool = CRYPTO_ON_POOL,
): Promise<Buffer> {
  if (!pool) return issueCertificate(issuer, spec);
  const { tbs, alg } = buildTbs(issuer, spec);
  const sig = await new Promise<Buffer>((resolve, reject) =>
    sign('sha256', tbs, issuer.privateKey, (err, out) => (err ? reject(err) : resolve(out))),
  );
  return seq(tbs, alg, bitString(sig));
}

const EMPTY = Buffer.alloc(0);

function tlv3(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag, content.length]), content]);
}

/**
 * A serial number: a 64-bit counter that the registry never reuses, followed by 64 random bits
 * (CA/Browser Forum practice: unpredictable serials).
 */
export function makeSerial(counter: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(BigInt(counter), 0);
  if (serialRandomAt + 8 > serialRandom.length) {
    randomFillSync(serialRandom);
    serialRandomAt = 0;
  }
  // Each 8 bytes of the CSPRNG's output are used once: one call to the CSPRNG per 512 serials
  // instead of one per join.
  serialRandom.copy(b, 8, serialRandomAt, (serialRandomAt += 8));
  return b;
}
const serialRandom = Buffer.alloc(4096);
let serialRandomAt = serialRandom.length;

/** Serial as OpenSSL prints it: upper-case hex without leading zero bytes. */
export function serialHex(serial: Buffer): string {
  let i = 0;
  while (i < serial.length - 1 && serial[i] === 0) i++;
  return serial.subarray(i).toString('hex').toUpperCase();
}

export function parseCertificate(pem: string): X509Certificate {
  return new X509Certificate(pem);
}

/**
 * Checks that `leaf` chains to `anchor` through `intermediates` (leaf side first): each certificate
 * names and is signed by the next, every issuer above the leaf is a CA, and no intermediate is used
 * below its pathLenConstraint (tiers, issue 11: leaf -> intermediate -> root). Validity times are the
 * caller's business. Returns a reason when it does not chain, undefined when it does.
 */
export function chainProblem(
  leaf: X509Certificate,
  intermediates: X509Certificate[],
  anchor: X509Certificate,
): string | undefined {
  const path = [leaf, ...intermediates, anchor];
  const subject = (c: X509Certificate): string => c.subject.replace(/\n/g, ', ');
  for (let i = 0; i + 1 < path.length; i++) {
    const child = path[i]!;
    const parent = path[i + 1]!;
    let signed = false;
    try {
      signed = child.checkIssued(parent) && child.verify(parent.publicKey);
    } catch {
      signed = false;
    }
    if (!signed) return `certificate ${subject(child)} is not signed by ${subject(parent)}`;
    if (!parent.ca) return `certificate ${subject(parent)} is not a CA`;
    // pathLenConstraint: the number of intermediates that may follow this CA below it.
    const below = i; // CA certificates between the leaf and this parent
    const pathLen = pathLenOf(parent);
    if (pathLen !== undefined && below > pathLen)
      return `certificate ${subject(parent)} may not have ${below} CA certificate(s) below it (pathLen ${pathLen})`;
  }
  return undefined;
}

/** The pathLenConstraint of a CA certificate's basicConstraints, undefined when absent. */
export function pathLenOf(cert: X509Certificate): number | undefined {
  const inner = tbsFields(cert.raw).extension(OID_DER.basicConstraints);
  if (!inner) return undefined;
  const n = children(inner, readTlv(inner, 0)).find((p) => p.tag === TAG.INTEGER);
  if (!n) return undefined;
  const v = value(inner, n);
  return v.length > 4 ? Number.MAX_SAFE_INTEGER : v.readUIntBE(0, v.length);
}
