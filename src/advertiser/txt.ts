/**
 * DNS-SD TXT records (RFC 6763 §6) and muster's two advertisements (DESIGN "Discovery").
 *
 * A pure codec: no sockets, no timers, no files. Everything in an advertisement is untrusted input
 * (DESIGN "Discovery"): the decoder never throws, bounds what it looks at, and the validators accept
 * only the exact shapes muster publishes.
 *
 * Why not bonjour-service's TXT decoder: 1.4.4 (dist/lib/dns-txt.js) splits on `=(.+)`, so `cluster=`
 * becomes a key named `cluster=`, and `decodeAll` drops every entry of one byte; the last duplicate
 * wins. RFC 6763 §6.4 wants the first occurrence, empty values kept, and `key` alone as a boolean.
 */
import { MusterError } from '../common/errors.js';

/** RFC 6763 §6.1: each string is a length byte followed by at most 255 bytes. */
export const TXT_ENTRY_MAX_BYTES = 255;
/** RFC 6763 §6.4: keys SHOULD be no more than nine characters; muster's keys all are, and we enforce it. */
export const TXT_KEY_MAX_CHARS = 9;
/** RFC 6763 §6.2: the whole record SHOULD stay small; 1300 bytes keeps one advertisement in one packet. */
export const TXT_RECORD_MAX_BYTES = 1300;
/** Decoder bounds: we look at no more than this many strings or bytes of a received record. */
export const TXT_DECODE_MAX_ENTRIES = 64;
export const TXT_DECODE_MAX_BYTES = 8900;

/** Decoded TXT: key (lower-cased) → value; `null` is a boolean attribute (a key without `=`, §6.4). */
export type TxtMap = ReadonlyMap<string, string | null>;

/** Thrown by the encoders only: what we publish must be valid. Decoding never throws (reasons are data). */
export class TxtEncodeError extends MusterError {
  declare readonly code: 'MUSTER_ERR_TXT_ENCODE';
  constructor(message: string) {
    super('MUSTER_ERR_TXT_ENCODE', message);
    this.name = 'TxtEncodeError';
  }
}

/** RFC 6763 §6.4: printable US-ASCII (0x20–0x7E) except '='. */
function validKey(key: string): boolean {
  if (key.length < 1 || key.length > TXT_KEY_MAX_CHARS) return false;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x3d) return false;
  }
  return true;
}

/**
 * Encodes key/value pairs as TXT strings, each `key=value` (RFC 6763 §6.3). Throws TxtEncodeError on a
 * key that is not 1–9 printable ASCII characters without '=', on two keys equal but for case
 * (§6.4 keys are case-insensitive), on an entry over 255 bytes or a record over 1300 bytes. An empty
 * record encodes as one empty string (§6.1: a TXT record is never zero-length).
 */
export function encodeTxt(txt: Readonly<Record<string, string>>): Buffer[] {
  const out: Buffer[] = [];
  const seen = new Set<string>();
  let total = 0;
  for (const [key, value] of Object.entries(txt)) {
    if (!validKey(key)) {
      throw new TxtEncodeError(
        `TXT key ${JSON.stringify(key)} must be 1-${TXT_KEY_MAX_CHARS} printable ASCII characters without '='`,
      );
    }
    if (typeof value !== 'string') throw new TxtEncodeError(`TXT value of ${key} must be a string`);
    const lower = key.toLowerCase();
    if (seen.has(lower))
      throw new TxtEncodeError(`TXT key ${JSON.stringify(key)} appears twice (keys are case-insensitive)`);
    seen.add(lower);
    const entry = Buffer.from(`${key}=${value}`, 'utf8');
    if (entry.length > TXT_ENTRY_MAX_BYTES) {
      throw new TxtEncodeError(
        `TXT entry ${key} is ${entry.length} bytes; at most ${TXT_ENTRY_MAX_BYTES} (RFC 6763 §6.1)`,
      );
    }
    total += entry.length + 1;
    out.push(entry);
  }
  if (total > TXT_RECORD_MAX_BYTES) {
    throw new TxtEncodeError(`TXT record is ${total} bytes; at most ${TXT_RECORD_MAX_BYTES} (RFC 6763 §6.2)`);
  }
  return out.length > 0 ? out : [Buffer.alloc(0)];
}

/** Splits wire-format TXT RDATA (length-prefixed strings) into strings; a truncated tail is dropped. */
export function splitTxtRdata(rdata: Uint8Array): Buffer[] {
  if (!(rdata instanceof Uint8Array)) return [];
  const buf = Buffer.from(rdata.buffer, rdata.byteOffset, Math.min(rdata.byteLength, TXT_DECODE_MAX_BYTES));
  const out: Buffer[] = [];
  let off = 0;
  while (off < buf.length && out.length < TXT_DECODE_MAX_ENTRIES) {
    const len = buf[off] ?? 0;
    if (off + 1 + len > buf.length) break;
    out.push(buf.subarray(off + 1, off + 1 + len));
    off += 1 + len;
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

/**
 * Decodes received TXT (RFC 6763 §6.3–6.5). Accepts the strings as bonjour-service/dns-packet give them
 * (`Buffer[]`, one per string) or one `Buffer` of wire-format RDATA (length-prefixed strings). Never
 * throws: empty strings and strings starting with '=' (no key) are ignored, keys with bytes outside
 * printable ASCII are ignored, keys are lower-cased, the first occurrence of a key wins, `key=` is an
 * empty string and `key` alone is `null` (boolean attribute). Values are UTF-8; invalid bytes become
 * U+FFFD, which no muster validator accepts.
 */
export function decodeTxt(
  raw: Buffer | Uint8Array | readonly (Buffer | Uint8Array | string)[] | null | undefined,
): Map<string, string | null> {
  const out = new Map<string, string | null>();
  if (raw == null) return out;
  // Anything but a list of strings or one RDATA buffer decodes as empty (issue 8 fuzzing: never throw).
  const strings: readonly unknown[] = Array.isArray(raw)
    ? raw
    : raw instanceof Uint8Array
      ? splitTxtRdata(raw)
      : [];
  let budget = TXT_DECODE_MAX_BYTES;
  for (let i = 0; i < strings.length && i < TXT_DECODE_MAX_ENTRIES; i++) {
    const s = strings[i];
    const bytes =
      typeof s === 'string'
        ? Buffer.from(s, 'utf8')
        : s instanceof Uint8Array
          ? Buffer.from(s.buffer, s.byteOffset, s.byteLength)
          : null;
    if (!bytes || bytes.length === 0 || bytes.length > TXT_ENTRY_MAX_BYTES) continue;
    budget -= bytes.length;
    if (budget < 0) break;
    const eq = bytes.indexOf(0x3d);
    if (eq === 0) continue; // §6.4: missing key, silently ignored
    const keyBytes = eq < 0 ? bytes : bytes.subarray(0, eq);
    if (keyBytes.some((c) => c < 0x20 || c > 0x7e)) continue;
    const key = keyBytes.toString('latin1').toLowerCase();
    if (out.has(key)) continue; // §6.4: only the first occurrence counts
    out.set(key, eq < 0 ? null : utf8.decode(bytes.subarray(eq + 1)));
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// muster's advertisements (DESIGN "Discovery")

export type Result<T> = { ok: true; value: T } | { ok: false; reason: string };

/** A DNS label as DESIGN "Node names" defines it: [a-z0-9-], 1–63, no leading or trailing '-'. */
export const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** A registrar id. */
export const REGISTRAR_ID = /^[a-z0-9-]{1,63}$/;
const B64URL_43 = /^[A-Za-z0-9_-]{43}$/;
/** A software version as the `sw` key carries it: semver-like, 1-32 printable characters. */
export const SOFTWARE_VERSION = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$/;

/** The `_muster._tcp` TXT of a registrar ("I am the main"). */
export interface RegistrarAdvert {
  v: 1;
  role: 'main' | 'cluster';
  /** The cluster this registrar serves: a DNS label. */
  cluster: string;
  /** sha256 of the root CA certificate (DER), base64url without padding: 43 characters. */
  ca: string;
  /** Informative: install mode is `open`, tokens accepted (`token`), or `closed`. */
  mode: 'closed' | 'token' | 'open';
  /** The registrar id (also its instance name). */
  id?: string;
  /**
   * Informative: the registrar's software version (`sw`, its package version), for `muster discover`.
   * Not part of any decision. Received values that are not a version are dropped, not an error: an
   * advertisement stays usable whatever a newer or older registrar writes here.
   */
  sw?: string;
}

/** The `_muster-join._tcp` TXT of a node ("ready to register as X"). */
export interface NodeAdvert {
  v: 1;
  name: string;
  role: string;
  /** The cluster the node wants; may be empty. */
  cluster: string;
  /** sha256 of the node's SubjectPublicKeyInfo (DER), base64url without padding: 43 characters. */
  key: string;
  state: 'ready' | 'registered';
}

/** True when `s` is exactly the unpadded base64url of 32 bytes (a sha256). */
export function isSha256B64url(s: string): boolean {
  if (!B64URL_43.test(s)) return false;
  const bytes = Buffer.from(s, 'base64url');
  return bytes.length === 32 && bytes.toString('base64url') === s; // rejects non-canonical last characters
}

type Field = { ok: true; value: string } | { ok: false; reason: string };

function field(txt: TxtMap, key: string, what: string, check: (v: string) => boolean): Field {
  const v = txt.get(key);
  if (v === undefined) return { ok: false, reason: `missing ${key} (${what})` };
  if (v === null) return { ok: false, reason: `${key} has no value (expected ${what})` };
  if (v.length > 255) return { ok: false, reason: `${key} is too long` };
  if (!check(v)) return { ok: false, reason: `${key}=${JSON.stringify(v.slice(0, 80))} is not ${what}` };
  return { ok: true, value: v };
}

function version(txt: TxtMap): Result<1> {
  const v = txt.get('v');
  if (v === undefined) return { ok: false, reason: 'missing v (the advertisement version)' };
  if (v !== '1')
    return {
      ok: false,
      reason: `unsupported advertisement version v=${JSON.stringify(v)}; this muster speaks v=1`,
    };
  return { ok: true, value: 1 };
}

const oneOf =
  <T extends string>(...values: T[]) =>
  (v: string): v is T =>
    (values as string[]).includes(v);

/** Validates a registrar's `_muster._tcp` TXT. Unknown keys are ignored. */
export function validateRegistrarTxt(txt: TxtMap): Result<RegistrarAdvert> {
  const v = version(txt);
  if (!v.ok) return v;
  const role = field(txt, 'role', "'main' or 'cluster'", oneOf('main', 'cluster'));
  if (!role.ok) return role;
  const cluster = field(txt, 'cluster', 'a cluster name (a DNS label)', (s) => DNS_LABEL.test(s));
  if (!cluster.ok) return cluster;
  const ca = field(txt, 'ca', 'a base64url sha256 (43 characters)', isSha256B64url);
  if (!ca.ok) return ca;
  const mode = field(txt, 'mode', "'closed', 'token' or 'open'", oneOf('closed', 'token', 'open'));
  if (!mode.ok) return mode;
  const value: RegistrarAdvert = {
    v: 1,
    role: role.value as RegistrarAdvert['role'],
    cluster: cluster.value,
    ca: ca.value,
    mode: mode.value as RegistrarAdvert['mode'],
  };
  if (txt.has('id')) {
    const id = field(txt, 'id', 'a registrar id ([a-z0-9-]{1,63})', (s) => REGISTRAR_ID.test(s));
    if (!id.ok) return id;
    value.id = id.value;
  }
  const sw = txt.get('sw');
  if (typeof sw === 'string' && SOFTWARE_VERSION.test(sw)) value.sw = sw;
  return { ok: true, value };
}

/** Validates a node's `_muster-join._tcp` TXT. Unknown keys are ignored. */
export function validateNodeTxt(txt: TxtMap): Result<NodeAdvert> {
  const v = version(txt);
  if (!v.ok) return v;
  const name = field(txt, 'name', 'a node name (a DNS label)', (s) => DNS_LABEL.test(s));
  if (!name.ok) return name;
  const role = field(txt, 'role', 'a role (a DNS label)', (s) => DNS_LABEL.test(s));
  if (!role.ok) return role;
  const cluster = field(
    txt,
    'cluster',
    'a cluster name (a DNS label) or empty',
    (s) => s === '' || DNS_LABEL.test(s),
  );
  if (!cluster.ok) return cluster;
  const key = field(txt, 'key', 'a base64url sha256 (43 characters)', isSha256B64url);
  if (!key.ok) return key;
  const state = field(txt, 'state', "'ready' or 'registered'", oneOf('ready', 'registered'));
  if (!state.ok) return state;
  return {
    ok: true,
    value: {
      v: 1,
      name: name.value,
      role: role.value,
      cluster: cluster.value,
      key: key.value,
      state: state.value as NodeAdvert['state'],
    },
  };
}

/** The TXT key/values for a registrar advertisement; throws TxtEncodeError when `a` would not validate. */
export function registrarTxt(a: RegistrarAdvert): Record<string, string> {
  const txt: Record<string, string> = { v: '1', role: a.role, cluster: a.cluster, ca: a.ca, mode: a.mode };
  if (a.id !== undefined) txt.id = a.id;
  if (a.sw !== undefined) {
    if (!SOFTWARE_VERSION.test(a.sw))
      throw new TxtEncodeError(
        `invalid registrar advertisement: sw=${JSON.stringify(a.sw)} is not a version`,
      );
    txt.sw = a.sw;
  }
  const check = validateRegistrarTxt(new Map(Object.entries(txt)));
  if (!check.ok) throw new TxtEncodeError(`invalid registrar advertisement: ${check.reason}`);
  return txt;
}

/** The TXT key/values for a node's join advertisement; throws TxtEncodeError when `a` would not validate. */
export function nodeTxt(a: NodeAdvert): Record<string, string> {
  const txt: Record<string, string> = {
    v: '1',
    name: a.name,
    role: a.role,
    cluster: a.cluster,
    key: a.key,
    state: a.state,
  };
  const check = validateNodeTxt(new Map(Object.entries(txt)));
  if (!check.ok) throw new TxtEncodeError(`invalid node advertisement: ${check.reason}`);
  return txt;
}
