/**
 * The node key as the agent reads it (node-key.ts): the P-256 PKCS#8 key muster makes is read through
 * its JWK fields, everything else through OpenSSL; either way the key is the one OpenSSL reads from the
 * same file, a broken file is refused, and the SPKI is the one OpenSSL writes.
 */
import { describe, expect, it } from 'vitest';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { octets, oid, seq, smallInt } from '../../src/common/der.js';
import { nodeSpki, parseNodeKey } from '../../src/node/node-key.js';

const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
const pkcs8 = (k: typeof ec): string => k.export({ type: 'pkcs8', format: 'pem' }).toString();

describe('parseNodeKey', () => {
  const cases: [string, string][] = [
    ['a P-256 PKCS#8 key (as muster makes it)', pkcs8(ec)],
    ['the same with CRLF line ends', pkcs8(ec).replace(/\n/g, '\r\n')],
    ['a P-256 SEC 1 key (EC PRIVATE KEY)', ec.export({ type: 'sec1', format: 'pem' }).toString()],
    ['an RSA key', pkcs8(rsa)],
    ['a P-384 key', pkcs8(p384)],
  ];
  for (const [what, pem] of cases) {
    it(`reads ${what} as OpenSSL does`, () => {
      const key = parseNodeKey(pem);
      const want = createPrivateKey(pem);
      expect(key.type).toBe('private');
      expect(key.equals(want)).toBe(true);
      // It signs, and what it signs verifies with the public key OpenSSL reads from the file.
      const sig = sign('sha256', Buffer.from('muster'), key);
      expect(verify('sha256', Buffer.from('muster'), createPublicKey(want), sig)).toBe(true);
    });
  }

  it('reads a PKCS#8 P-256 key without its public point through OpenSSL', () => {
    // ECPrivateKey with only the version and the scalar: the public point is computed by OpenSSL.
    const scalar = Buffer.from(ec.export({ format: 'jwk' }).d!, 'base64url');
    const short = seq(
      smallInt(0),
      seq(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7')),
      octets(seq(smallInt(1), octets(scalar))),
    );
    const pem = `-----BEGIN PRIVATE KEY-----\n${short.toString('base64')}\n-----END PRIVATE KEY-----\n`;
    expect(parseNodeKey(pem).equals(ec)).toBe(true);
  });

  it('refuses what OpenSSL refuses: a truncated key, a point off the curve, no key at all', () => {
    const pem = pkcs8(ec);
    const der = ec.export({ type: 'pkcs8', format: 'der' });
    const truncated = `-----BEGIN PRIVATE KEY-----\n${der.subarray(0, der.length - 10).toString('base64')}\n-----END PRIVATE KEY-----\n`;
    const offCurve = Buffer.from(der);
    offCurve.writeUInt8(offCurve.readUInt8(offCurve.length - 1) ^ 0x01, offCurve.length - 1); // Y's last byte
    const bad = `-----BEGIN PRIVATE KEY-----\n${offCurve.toString('base64')}\n-----END PRIVATE KEY-----\n`;
    for (const text of [
      truncated,
      bad,
      'not a key',
      pem.replace('PRIVATE KEY-----\n', 'PRIVATE KEY-----\n!'),
    ]) {
      expect(() => createPrivateKey(text)).toThrow();
      expect(() => parseNodeKey(text)).toThrow();
    }
  });
});

describe('nodeSpki', () => {
  for (const [what, key] of [
    ['P-256', ec],
    ['RSA', rsa],
    ['P-384', p384],
  ] as const) {
    it(`is OpenSSL's SPKI DER for a ${what} key, private or public`, () => {
      const want = createPublicKey(key).export({ type: 'spki', format: 'der' });
      expect(nodeSpki(key).equals(want)).toBe(true);
      expect(nodeSpki(createPublicKey(key)).equals(want)).toBe(true);
    });
  }
});
