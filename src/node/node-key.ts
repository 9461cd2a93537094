/**
 * The node key as the agent reads it, per join (issue 12, target 3: an agent's CPU in a herd). Node 20
 * with OpenSSL 3 takes about 0.63 ms of CPU to import a PKCS#8 EC key and 0.22 ms to export a public
 * key as SPKI DER; the same key imported from its JWK fields takes 0.10 ms, and its SPKI written from
 * them next to nothing. The P-256 key muster makes (PKCS#8, RFC 5208, holding a SEC 1 ECPrivateKey
 * with its public point, RFC 5915) therefore goes through JWK; anything else (RSA, a SEC 1 "EC PRIVATE
 * KEY" file, another curve, an unexpected shape) goes to OpenSSL as before. Both ways take the public
 * point stored in the file as it is (OpenSSL does not recompute it from the private scalar either),
 * and both refuse a point that is not on the curve.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { bitString, bytes, children, oid, readTlv, seq, TAG, value } from '../common/der.js';

const EC_PUBLIC_KEY = oid('1.2.840.10045.2.1');
const P256 = oid('1.2.840.10045.3.1.7');
/** One PEM block labelled PRIVATE KEY and nothing else (RFC 7468 §10). */
const PKCS8_PEM = /^\s*-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----\s*$/;

/** A node's private key from its PEM file (node.key); throws as createPrivateKey does. */
export function parseNodeKey(pem: string): KeyObject {
  const jwk = p256Jwk(pem);
  if (jwk) {
    try {
      return createPrivateKey({ key: jwk, format: 'jwk' });
    } catch {
      // Not a key this fast path understands after all: OpenSSL says what is wrong with it.
    }
  }
  return createPrivateKey(pem);
}

/** The JWK fields of a PKCS#8 P-256 key that carries its public point; undefined for anything else. */
function p256Jwk(pem: string): { kty: 'EC'; crv: 'P-256'; d: string; x: string; y: string } | undefined {
  const m = PKCS8_PEM.exec(pem);
  if (!m) return undefined;
  try {
    const der = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
    const top = readTlv(der, 0);
    if (top.tag !== TAG.SEQUENCE || top.end !== der.length) return undefined;
    // PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, privateKey OCTET STRING }
    const [version, alg, inner, ...attrs] = children(der, top);
    if (!version || !alg || !inner || attrs.length > 0) return undefined;
    if (!bytes(der, version).equals(Buffer.from([TAG.INTEGER, 1, 0]))) return undefined;
    const [algOid, curve, ...more] = children(der, alg);
    if (!algOid || !curve || more.length > 0) return undefined;
    if (!bytes(der, algOid).equals(EC_PUBLIC_KEY) || !bytes(der, curve).equals(P256)) return undefined;
    if (inner.tag !== TAG.OCTET_STRING) return undefined;
    // ECPrivateKey ::= SEQUENCE { version 1, privateKey OCTET STRING, [0] parameters OPTIONAL,
    //                             [1] publicKey BIT STRING OPTIONAL }
    const ec = value(der, inner);
    const ecTop = readTlv(ec, 0);
    if (ecTop.tag !== TAG.SEQUENCE || ecTop.end !== ec.length) return undefined;
    const [ecVersion, d, ...rest] = children(ec, ecTop);
    if (!ecVersion || !d || !bytes(ec, ecVersion).equals(Buffer.from([TAG.INTEGER, 1, 1]))) return undefined;
    if (d.tag !== TAG.OCTET_STRING || value(ec, d).length !== 32) return undefined;
    let point: Buffer | undefined;
    for (const t of rest) {
      if (t.tag === 0xa0) {
        const [params] = children(ec, t);
        if (!params || !bytes(ec, params).equals(P256)) return undefined;
      } else if (t.tag === 0xa1) {
        const [bits] = children(ec, t);
        if (!bits || bits.tag !== TAG.BIT_STRING) return undefined;
        point = value(ec, bits);
      } else return undefined;
    }
    // BIT STRING: 0 unused bits, then the uncompressed point 04 || X || Y (SEC 1 §2.3.3).
    if (!point || point.length !== 66 || point[0] !== 0 || point[1] !== 4) return undefined;
    return {
      kty: 'EC',
      crv: 'P-256',
      d: value(ec, d).toString('base64url'),
      x: point.subarray(2, 34).toString('base64url'),
      y: point.subarray(34, 66).toString('base64url'),
    };
  } catch {
    return undefined; // a DerError: OpenSSL reads it, or says why not
  }
}

/** The SubjectPublicKeyInfo DER of a key (its fingerprint, the CSR and the bundle check compare it). */
export function nodeSpki(key: KeyObject): Buffer {
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    const { x, y } = key.export({ format: 'jwk' });
    if (x && y) {
      const point = Buffer.concat([
        Buffer.from([4]),
        Buffer.from(x, 'base64url'),
        Buffer.from(y, 'base64url'),
      ]);
      // RFC 5480 §2: SEQUENCE { AlgorithmIdentifier { id-ecPublicKey, secp256r1 }, BIT STRING point }
      if (point.length === 65) return seq(seq(EC_PUBLIC_KEY, P256), bitString(point));
    }
  }
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'der' }) as Buffer;
}
