/**
 * Wire codecs for admission (DESIGN "Admission policy", "The credentials bundle"): join tokens, the
 * token proof, the bundle MAC, and the payloads nodes sign with their key (ack, leave). Pure: no I/O.
 */
import { createHmac, KeyObject, sign, timingSafeEqual, verify } from 'node:crypto';

export const TOKEN_ID_PATTERN = '^[a-z0-9]{6,16}$';
const TOKEN_RE = /^([a-z0-9]{6,16})\.([A-Za-z0-9_-]{32,128})(?:\.([A-Za-z0-9_-]{43}))?$/;

export interface ParsedToken {
  id: string;
  secret: string;
  /**
   * The registrar's CA fingerprint the token carries (after kubeadm's discovery hash): a node that
   * holds the token pins the registrar with no other configuration (DESIGN "Admission policy").
   */
  ca?: string;
}

/**
 * Parses `<id>.<secret>` or `<id>.<secret>.<ca-fingerprint>` (all base64url, so '.' separates them
 * unambiguously); returns undefined when malformed (the caller words the error).
 */
export function parseToken(token: string): ParsedToken | undefined {
  const m = TOKEN_RE.exec(token.trim());
  if (!m) return undefined;
  return { id: m[1]!, secret: m[2]!, ...(m[3] ? { ca: m[3] } : {}) };
}

/** The token text a node is given: with the CA pin when known. */
export function formatToken(t: { id: string; secret: string; ca?: string }): string {
  return t.ca ? `${t.id}.${t.secret}.${t.ca}` : `${t.id}.${t.secret}`;
}

export interface ProofFields {
  name: string;
  role: string;
  cluster: string;
  /** The node's key fingerprint (base64url SHA-256 of its SPKI). */
  key: string;
  /** Unix seconds. */
  ts: number;
}

/** HMAC-SHA256(secret, "muster-join-v1" | name | role | cluster | key | ts), base64url. */
export function joinProofMac(secret: string, f: ProofFields): string {
  return createHmac('sha256', secret)
    .update(['muster-join-v1', f.name, f.role, f.cluster, f.key, String(f.ts)].join('|'))
    .digest('base64url');
}

export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

/** The proof window: a proof's ts must be within 5 minutes of the registrar's clock. */
export const PROOF_WINDOW_S = 300;

/** JSON with object keys sorted at every level: the byte string the bundle MAC covers. */
export function canonicalJson(v: unknown): string {
  if (v === undefined) return 'null';
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

export interface Bundle {
  v: 1;
  cluster: string;
  node: string;
  role: string;
  certificate: string;
  chain: string[];
  ca: string;
  registrar: { url: string; id: string };
  config: Record<string, string>;
  issuedAt: string;
  mac?: string;
}

export function bundleMac(secret: string, bundle: Omit<Bundle, 'mac'> | Bundle): string {
  const { mac: _mac, ...rest } = bundle as Bundle;
  return createHmac('sha256', secret)
    .update('muster-bundle-v1|' + canonicalJson(rest))
    .digest('base64url');
}

/**
 * What a node signs to acknowledge its bundle, to leave, or to pick up its bundle (DESIGN "HTTPS
 * API": the long poll proves possession of the key; a fingerprint alone is public). `ref` is the
 * certificate serial (ack, leave), the key fingerprint (poll), or for a renewal the serial, and with a
 * new key `<serial>|<new key fingerprint>` (renewRef) so that the old key vouches for the new one.
 */
export function nodeSignedPayload(
  kind: 'ack' | 'leave' | 'poll' | 'renew',
  name: string,
  ref: string,
  ts: number,
): Buffer {
  return Buffer.from(`muster-${kind}-v1|${name}|${ref}|${ts}`);
}

/** What the current key signs to renew: the serial, and the new key's fingerprint when it rotates. */
export function renewRef(serial: string, newKey?: string): string {
  return newKey ? `${serial}|${newKey}` : serial;
}

export function signNode(key: KeyObject, payload: Buffer): string {
  return sign('sha256', payload, key).toString('base64url');
}

export function verifyNode(key: KeyObject, payload: Buffer, sig: string): boolean {
  try {
    return verify('sha256', payload, key, Buffer.from(sig, 'base64url'));
  } catch {
    return false;
  }
}
