/**
 * Certificate revocation lists (RFC 5280 §5): a pure builder over the DER writer, signed by the CA's
 * key with node:crypto like the certificates of x509.ts. No I/O: the registrar decides what to list
 * and when to re-sign (registrar/crl.ts).
 */
import { sign } from 'node:crypto';
import { bitString, explicit, implicit, oid, seq, smallInt, tlv, time, uint } from './der.js';
import { extension, issuerInfo, OID, type IssuerKey } from './x509.js';

/** CRLReason (RFC 5280 §5.3.1). `unspecified` (0) is never written: an absent reason means the same. */
export const CRL_REASON = {
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
} as const;

export type CrlReason = keyof typeof CRL_REASON;

export interface RevokedEntry {
  /** The certificate's serial, hex as serialHex() prints it. */
  serial: string;
  revokedAt: Date;
  reason?: CrlReason;
}

export interface CrlSpec {
  /** The cRLNumber (RFC 5280 §5.2.3): larger for every CRL this issuer signs. */
  number: number;
  thisUpdate: Date;
  nextUpdate: Date;
  revoked: RevokedEntry[];
}

const ENUMERATED = 0x0a;
const CRL_NUMBER = oid(OID.cRLNumber);
const CRL_REASON_OID = oid(OID.cRLReason);
const AKI = oid(OID.authorityKeyIdentifier);

/** An unsigned integer of up to 2^53 as a DER INTEGER (a CRL number may exceed 32 bits). */
function bigUint(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`not a CRL number: ${n}`);
  if (n <= 0xffffffff) return smallInt(n);
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return uint(b);
}

function serialBytes(hex: string): Buffer {
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw new Error(`not a serial number: ${hex}`);
  return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
}

/** The TBSCertList (RFC 5280 §5.1.2), v2, with the issuer's name and signature algorithm. */
export function buildTbsCertList(issuer: IssuerKey, spec: CrlSpec): { tbs: Buffer; alg: Buffer } {
  const info = issuerInfo(issuer);
  const entries = spec.revoked.map((r) => {
    const parts = [uint(serialBytes(r.serial)), time(r.revokedAt)];
    if (r.reason !== undefined) {
      const code = tlv(ENUMERATED, Buffer.from([CRL_REASON[r.reason]]));
      parts.push(seq(extension(CRL_REASON_OID, false, code)));
    }
    return seq(...parts);
  });
  const exts: Buffer[] = [];
  // §5.2.1: the authorityKeyIdentifier MUST be in a CRL when the issuer's certificate has a key id.
  if (info.ski) exts.push(extension(AKI, false, seq(implicit(0, info.ski))));
  exts.push(extension(CRL_NUMBER, false, bigUint(spec.number)));
  const tbs = seq(
    smallInt(1), // v2: required with extensions (§5.1.2.1)
    info.alg,
    info.subject,
    time(spec.thisUpdate),
    time(spec.nextUpdate),
    // §5.1.2.6: absent, not an empty SEQUENCE, when nothing is revoked.
    ...(entries.length ? [seq(...entries)] : []),
    explicit(0, seq(...exts)),
  );
  return { tbs, alg: info.alg };
}

/** Builds and signs a CRL (RFC 5280 §5.1). Returns DER. */
export function buildCrl(issuer: IssuerKey, spec: CrlSpec): Buffer {
  const { tbs, alg } = buildTbsCertList(issuer, spec);
  return seq(tbs, alg, bitString(sign('sha256', tbs, issuer.privateKey)));
}

/** buildCrl with the CA signature on libuv's thread pool (the event loop keeps serving). */
export async function buildCrlAsync(issuer: IssuerKey, spec: CrlSpec): Promise<Buffer> {
  const { tbs, alg } = buildTbsCertList(issuer, spec);
  const sig = await new Promise<Buffer>((resolve, reject) =>
    sign('sha256', tbs, issuer.privateKey, (err, out) => (err ? reject(err) : resolve(out))),
  );
  return seq(tbs, alg, bitString(sig));
}
