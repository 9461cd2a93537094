/**
 * Validates a credentials bundle before anything is written (DESIGN "The credentials bundle", after
 * Ganeti's node-add: check all of it, abort on any mismatch, leave the old files untouched).
 * Pure: takes what the node knows, returns the list of problems.
 */
import { X509Certificate } from 'node:crypto';
import { bytes, DerError, TAG } from '../common/der.js';
import { bundleMac, safeEqual, type Bundle } from '../common/proof.js';
import { certFingerprint, chainProblem, tbsFields } from '../common/x509.js';

/** The reserved role of tier registrars (registrar/issuer.ts TIER_ROLE; not imported: nodes load no registrar code). */
const TIER_ROLE = 'cluster';

export interface Expectations {
  name: string;
  role: string;
  /** The cluster the node asked for ('' for any). */
  cluster: string;
  /** The node's own SPKI DER. */
  spki: Buffer;
  /** The CA the node verified the registrar's TLS certificate against. */
  sessionCaPem: string;
  /** `sessionCaPem` parsed: used for the bundle's CA when that is the same PEM (a parse is ~0.6 ms). */
  sessionCa?: X509Certificate;
  registrarId: string;
  /** Operator's pin (base64url SHA-256 of the CA DER). */
  pin?: string;
  /** CA and cluster left by an earlier registration on this node. */
  localCaPem?: string;
  localCluster?: string;
  /** The token secret, when the join used one: the bundle must then carry a valid MAC. */
  tokenSecret?: string;
  now: number;
}

const isStr = (v: unknown): v is string => typeof v === 'string';

export function checkBundle(
  raw: unknown,
  x: Expectations,
): { ok: true; bundle: Bundle; cert: X509Certificate } | { ok: false; problems: string[] } {
  const p: string[] = [];
  const b = raw as Bundle;
  if (typeof raw !== 'object' || raw === null)
    return { ok: false, problems: ['the bundle is not a JSON object'] };
  if (b.v !== 1) p.push(`unknown bundle version ${JSON.stringify(b.v)}`);
  for (const k of ['cluster', 'node', 'role', 'certificate', 'ca', 'issuedAt'] as const) {
    if (!isStr(b[k])) p.push(`bundle field ${k} is missing`);
  }
  if (!Array.isArray(b.chain) || !b.chain.every(isStr))
    p.push('bundle field chain is not a list of PEM certificates');
  if (typeof b.registrar !== 'object' || !isStr(b.registrar?.id) || !isStr(b.registrar?.url))
    p.push('bundle field registrar is missing');
  if (typeof b.config !== 'object' || b.config === null || !Object.values(b.config).every(isStr)) {
    p.push('bundle field config must map names to strings');
  }
  if (p.length) return { ok: false, problems: p };

  if (x.tokenSecret !== undefined) {
    if (!isStr(b.mac) || !safeEqual(bundleMac(x.tokenSecret, b), b.mac)) {
      p.push(
        'the bundle MAC does not match the join token: it was not made by the registrar that holds the token',
      );
    }
  }
  if (b.node !== x.name) p.push(`the bundle is for node ${b.node}, not ${x.name}`);
  if (b.role !== x.role) p.push(`the bundle gives role ${b.role}, not the requested ${x.role}`);
  if (x.cluster && b.cluster !== x.cluster)
    p.push(`the bundle is for cluster ${b.cluster}, not the requested ${x.cluster}`);
  if (x.localCluster && b.cluster !== x.localCluster) {
    p.push(`this node already belongs to cluster ${x.localCluster}; the bundle is for ${b.cluster}`);
  }
  if (b.registrar.id !== x.registrarId)
    p.push(`the bundle names registrar ${b.registrar.id}, not ${x.registrarId}`);

  let ca: X509Certificate | undefined;
  let caFp = '';
  try {
    ca = x.sessionCa && b.ca === x.sessionCaPem ? x.sessionCa : new X509Certificate(b.ca);
    caFp = certFingerprint(b.ca);
  } catch {
    ca = undefined;
    p.push('the bundle CA certificate cannot be parsed');
  }
  if (ca) {
    if (!ca.ca) p.push('the bundle CA certificate is not a CA');
    if (x.pin && caFp !== x.pin) p.push(`the bundle CA ${caFp} is not the pinned ${x.pin}`);
    if (x.localCaPem && caFp !== certFingerprint(x.localCaPem)) {
      p.push(
        `the bundle CA ${caFp} differs from the CA this node already holds (${certFingerprint(x.localCaPem)})`,
      );
    }
    if (caFp !== certFingerprint(x.sessionCaPem))
      p.push('the bundle CA is not the CA that the registrar served over TLS');
  }

  let cert: X509Certificate | undefined;
  try {
    cert = new X509Certificate(b.certificate);
  } catch {
    p.push('the node certificate cannot be parsed');
  }
  if (cert && ca) {
    // The certificate's SubjectPublicKeyInfo as it is encoded, compared byte for byte with the node's
    // own: no key is decoded and encoded again (OpenSSL's SPKI encoder, ~0.2 ms a join). A key that
    // does not decode is not the node's, whose SPKI is in the DER form it decodes from.
    let spki: Buffer | undefined;
    try {
      spki = certSpki(cert.raw);
    } catch {
      p.push("the node certificate's public key cannot be read");
    }
    if (spki && !spki.equals(x.spki)) p.push("the certificate is not for this node's key");
    // Walk node cert -> chain (intermediates, leaf side first) -> CA: a tier registrar's nodes (issue
    // 11) carry its intermediate, which must be a CA signed by the pinned root (chainProblem).
    const chain: X509Certificate[] = [];
    let chainOk = true;
    try {
      for (const pem of b.chain) chain.push(new X509Certificate(pem));
    } catch {
      chainOk = false;
      p.push('a chain certificate cannot be parsed');
    }
    if (chainOk) {
      const problem = chainProblem(cert, chain, ca);
      if (problem) p.push(problem);
    }
    // Role `cluster` is a tier registrar's intermediate CA; every other role an end entity.
    if (x.role === TIER_ROLE && !cert.ca)
      p.push(`the certificate for role ${TIER_ROLE} is not a CA certificate`);
    if (x.role !== TIER_ROLE && cert.ca) p.push('the node certificate is a CA certificate');
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    if (!(from <= x.now + 10 * 60_000 && x.now < to))
      p.push(`the certificate is not valid now (${cert.validFrom} to ${cert.validTo})`);
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
    if (cn !== x.name) p.push(`the certificate names ${cn}, not ${x.name}`);
    if (x.role !== TIER_ROLE && !(cert.subjectAltName ?? '').split(/,\s*/).includes(`DNS:${x.name}`))
      p.push(`the certificate has no DNS name ${x.name}`);
  }
  // `cert` is set whenever nothing is wrong; the caller keeps the parse (serial, ack, result).
  return p.length || !cert ? { ok: false, problems: p } : { ok: true, bundle: b, cert };
}

/**
 * The SubjectPublicKeyInfo of a certificate, as encoded (RFC 5280 §4.1: Certificate { tbsCertificate
 * { [0] version, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ... } }).
 * Throws a DerError when the DER does not have that shape.
 */
export function certSpki(der: Buffer): Buffer {
  const spki = tbsFields(der).field(5);
  if (!spki || spki.tag !== TAG.SEQUENCE) throw new DerError('no subjectPublicKeyInfo');
  return bytes(der, spki);
}
