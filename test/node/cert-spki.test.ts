/**
 * The bundle check compares the node certificate's SubjectPublicKeyInfo with the node's own as
 * encoded (bundle-check.ts certSpki), without decoding the key: on certificates made by openssl (EC
 * and RSA, v3) it is the SPKI OpenSSL exports, and a DER of another shape is refused.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { certSpki } from '../../src/node/bundle-check.js';
import { tempDir } from '../helpers/registrar.js';

function opensslCert(newkey: string[]): X509Certificate {
  const t = tempDir();
  try {
    const [key, crt] = [path.join(t.dir, 'k.pem'), path.join(t.dir, 'c.pem')];
    execFileSync(
      'openssl',
      ['req', '-x509', ...newkey, '-nodes', '-keyout', key, '-out', crt, '-subj', '/CN=n1', '-days', '1'],
      { stdio: 'ignore' },
    );
    return new X509Certificate(readFileSync(crt));
  } finally {
    t.cleanup();
  }
}

describe('certSpki', () => {
  for (const [what, newkey] of [
    ['EC P-256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']],
    ['RSA 2048', ['-newkey', 'rsa:2048']],
  ] as const) {
    it(`is the SPKI OpenSSL exports for an ${what} certificate`, () => {
      const cert = opensslCert([...newkey]);
      const want = cert.publicKey.export({ type: 'spki', format: 'der' });
      expect(certSpki(cert.raw).equals(want)).toBe(true);
    });
  }

  it('throws on a DER that is not a certificate', () => {
    expect(() => certSpki(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]))).toThrow();
    expect(() => certSpki(Buffer.from([0x30, 0x05]))).toThrow();
  });
});
