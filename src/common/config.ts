/**
 * Settings (DESIGN "Files and units", CONVENTIONS 6): ONE schema for every flag of every command, and
 * for the config file (/etc/muster/muster.json) and the MUSTER_* environment variables. The CLI
 * generates its yargs options from this table and validates flags, variables and file values with the
 * same parsers; `muster config check` uses them too. Validated once at start, frozen; an invalid value
 * names the flag, variable or file key it came from. Precedence: flag > environment > file > default.
 *
 * Scopes: `registrar`, `join` and `admin` are also sections of the config file and read from MUSTER_*
 * variables (a machine can run a registrar and a node):
 *   { "registrar": { "listen": "0.0.0.0:8443", "cluster": "lab", ... },
 *     "join": { "registrar": "https://10.0.0.1:8443", "tokenFile": "/etc/muster/token", ... },
 *     "admin": { "adminSocket": "/run/muster/admin.sock" } }
 * Keys are the flag names in camelCase; variables are MUSTER_ + the flag in UPPER_SNAKE_CASE. The other
 * scopes are the flags of one operator command (`tokens create --ttl`): command line only, since a
 * variable such as MUSTER_ROLE already means the node's role.
 */
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { MusterError } from './errors.js';
import * as L from './limits.js';
import { defaultNodeName, formatDuration, isLabel, parseDuration } from './names.js';
import { defaultAdminSocket, defaultNodeStateDir, defaultRegistrarStateDir } from './paths.js';
import { splitCommand } from './command-line.js';
import { TOKEN_ID_PATTERN } from './proof.js';
import { EVENT_TYPES } from '../store/types.js';

// ---- parsers ------------------------------------------------------------------------------------

/**
 * Why a value is refused, worded to follow its name: "--for" + " must be between 1s and 365d".
 * `showValue: false` for reasons that need no echo (or for values that may hold a secret).
 */
export class Invalid extends Error {
  constructor(
    reason: string,
    readonly showValue = true,
  ) {
    super(reason);
  }
}

type Parser<T> = (v: unknown) => T;

/**
 * A join token anywhere in a text: `<id>.<secret>` with or without the CA pin (common/proof.ts). Values
 * of other settings are echoed in messages and shown by `config check`; a token pasted into one of
 * them (MUSTER_TOKEN_FILE=<the token>, a hook command that carries one) must not be (issue 8: secrets
 * never in messages).
 */
const TOKEN_IN_TEXT = /[a-z0-9]{6,16}\.[A-Za-z0-9_-]{32,128}(?:\.[A-Za-z0-9_-]{43})?/g;

export const TOKEN_REDACTED = '<join token, not shown>';

/** True when `v` (a string, or any JSON value) holds something shaped like a join token. */
export function holdsToken(v: unknown): boolean {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return typeof s === 'string' && new RegExp(TOKEN_IN_TEXT.source).test(s);
}

/** `text` with every join token in it replaced by TOKEN_REDACTED. */
export function redactTokens(text: string): string {
  return text.replace(TOKEN_IN_TEXT, TOKEN_REDACTED);
}

/** A value to show (a string or JSON value) with every join token in it replaced. */
export function redactValue<T>(v: T): T {
  if (typeof v === 'string') return redactTokens(v) as T;
  if (v === null || typeof v !== 'object' || !holdsToken(v)) return v;
  // The replacement holds no quote or backslash, so the JSON stays valid.
  return JSON.parse(redactTokens(JSON.stringify(v))) as T;
}

const list = (xs: readonly string[]): string =>
  xs.length <= 1 ? (xs[0] ?? '') : `${xs.slice(0, -1).join(', ')} or ${xs[xs.length - 1]}`;
const n = (x: number): string => x.toLocaleString('en-US');

/** A non-empty string of at most `max` characters. */
export const text =
  (max = 4096): Parser<string> =>
  (v) => {
    if (typeof v !== 'string' || v === '') throw new Invalid('must not be empty');
    if (v.length > max) throw new Invalid(`must be at most ${n(max)} characters`, false);
    return v;
  };

/** A file or directory path. */
export const filePath: Parser<string> = (v) => {
  const s = text()(v);
  if (s.includes('\0')) throw new Invalid('must be a path');
  return s;
};

export const absolutePath: Parser<string> = (v) => {
  const s = filePath(v);
  if (!path.isAbsolute(s)) throw new Invalid('must be an absolute path');
  return s;
};

export const choice =
  <const C extends string>(...values: C[]): Parser<C> =>
  (v) => {
    if (typeof v !== 'string' || !(values as string[]).includes(v))
      throw new Invalid(`must be ${list(values)}`);
    return v as C;
  };

const LABEL_RULE = "a-z, 0-9 and '-', 1 to 63 characters, no '-' at either end";

/** A DNS label: a node name, a role or a cluster (DESIGN "Node names"). */
export const label: Parser<string> = (v) => {
  if (typeof v !== 'string' || !isLabel(v)) throw new Invalid(`must be a DNS label (${LABEL_RULE})`);
  return v;
};

export const labelOrEmpty: Parser<string> = (v) => {
  if (v === '') return '';
  if (typeof v !== 'string' || !isLabel(v))
    throw new Invalid(`must be a DNS label (${LABEL_RULE}), or empty for any`);
  return v;
};

const DURATION_HINT = 'a duration such as 90s, 15m, 1h30m or 7d';

/** A duration in milliseconds, between `min` and `max` when given. */
export const duration =
  (min = 0, max = Number.MAX_SAFE_INTEGER): Parser<number> =>
  (v) => {
    const bounded = min > 0 || max < Number.MAX_SAFE_INTEGER;
    const range = `between ${formatDuration(min)} and ${formatDuration(max)}`;
    let ms: number;
    try {
      if (typeof v !== 'string' && typeof v !== 'number') throw new Error();
      ms = parseDuration(v);
    } catch {
      throw new Invalid(`must be ${DURATION_HINT}${bounded ? `, ${range}` : ''}`);
    }
    if (ms < min || ms > max) throw new Invalid(`must be ${range}`);
    return ms;
  };

/** A token's lifetime: a duration in the TOKEN_TTL range, or `never` (null). */
export const tokenTtl: Parser<number | null> = (v) => {
  if (v === 'never') return null;
  const range = `between ${formatDuration(L.TOKEN_TTL_MIN_MS)} and ${formatDuration(L.TOKEN_TTL_MAX_MS)} (10 years), or never`;
  let ms: number;
  try {
    if (typeof v !== 'string' && typeof v !== 'number') throw new Error();
    ms = parseDuration(v);
  } catch {
    throw new Invalid(`must be ${DURATION_HINT}, or never`);
  }
  if (ms < L.TOKEN_TTL_MIN_MS || ms > L.TOKEN_TTL_MAX_MS) throw new Invalid(`must be ${range}`);
  return ms;
};

export const int =
  (min: number, max: number): Parser<number> =>
  (v) => {
    const x = typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : v;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) {
      throw new Invalid(`must be a whole number from ${n(min)} to ${n(max)}`);
    }
    return x;
  };

export const ipv4: Parser<string> = (v) => {
  if (typeof v !== 'string' || isIP(v) !== 4) throw new Invalid('must be an IPv4 address such as 10.0.0.1');
  return v;
};

export const httpsUrl: Parser<string> = (v) => {
  const s = text()(v);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new Invalid('must be a URL such as https://10.0.0.1:8443');
  }
  if (u.protocol !== 'https:')
    throw new Invalid('must be an https:// URL (muster speaks only HTTPS), such as https://10.0.0.1:8443');
  return s;
};

/** HOST:PORT to listen on; the port from 0 (any free port) to 65535. */
export const hostPort: Parser<string> = (v) => {
  const m = typeof v === 'string' ? /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(v) : null;
  if (!m) throw new Invalid('must be HOST:PORT such as 0.0.0.0:8443');
  const port = Number(m[2]);
  if (port > 65535) throw new Invalid('must have a port from 0 to 65535');
  const host = m[1]!;
  if (host.startsWith('[') && isIP(host.slice(1, -1)) !== 6)
    throw new Invalid('must be HOST:PORT with a valid IPv6 address in brackets');
  return v as string;
};

/** HOST:PORT on loopback (127.0.0.0/8 or [::1]): the admin web page is plain HTTP (README "Admin web page"). */
export const loopbackHostPort: Parser<string> = (v) => {
  const s = hostPort(v);
  const host = s.slice(0, s.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  if (!((isIP(host) === 4 && host.startsWith('127.')) || host === '::1'))
    throw new Invalid(
      'must be a loopback HOST:PORT such as 127.0.0.1:8440 (plain HTTP: from another machine use ssh -L)',
    );
  return s;
};

/**
 * The CA pin (DESIGN "Discovery": SHA-256 of the CA certificate, base64url), as muster prints it, or
 * as `openssl x509 -noout -fingerprint -sha256` prints it ("sha256 Fingerprint=AB:CD:...", colon hex,
 * any case, with or without the prefix): both become muster's base64url form.
 */
export function caFingerprint(v: unknown): string {
  if (typeof v === 'string') {
    const s = v.trim();
    if (/^[A-Za-z0-9_-]{43}$/.test(s)) return s;
    const hex = s.replace(/^sha-?256\s+fingerprint\s*=\s*/i, '');
    if (/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){31}$/.test(hex))
      return Buffer.from(hex.replace(/:/g, ''), 'hex').toString('base64url');
    if (/^[0-9a-fA-F]{64}$/.test(hex)) return Buffer.from(hex, 'hex').toString('base64url');
  }
  throw new Invalid(
    "must be the CA's SHA-256 fingerprint: 43 base64url characters as `muster ca` prints it, or the AB:CD:... form of `openssl x509 -noout -fingerprint -sha256`",
  );
}

/** The same fingerprint as colon hex, the way openssl prints it. */
export function fingerprintHex(fp: string): string {
  return Buffer.from(fp, 'base64url').toString('hex').toUpperCase().match(/../g)!.join(':');
}

/** `--token-file`: a regular file that only its owner can read (it holds a secret). */
export const tokenFile: Parser<string> = (v) => {
  const file = filePath(v);
  // The token itself given where its file belongs: say so without echoing it (nor stat-ing it).
  if (holdsToken(file))
    throw new Invalid(
      'holds a join token, not the name of a file: write the token to a file (mode 0600) and name that file, or set MUSTER_TOKEN',
      false,
    );
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Invalid(`names a file that cannot be read: ${file} (${why})`, false);
  }
  if (!st.isFile()) throw new Invalid(`must name a file: ${file} is not one`, false);
  if ((st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw new Invalid(
      `names a file that group or others may open (${file}, mode ${mode}), and it holds a join token: chmod 600 ${file}`,
      false,
    );
  }
  return file;
};

/**
 * Certificate lifetimes by role (issue 9, item 1): `gpu=24h,worker=30d` as a flag or variable, or an
 * object {"gpu": "24h"} in the file. Each role a DNS label, each lifetime within --cert-lifetime's range.
 */
export const roleLifetimes: Parser<Record<string, number>> = (v) => {
  const entries: [string, unknown][] =
    typeof v === 'string'
      ? v
          .split(',')
          .filter((p) => p.trim() !== '')
          .map((p) => {
            const i = p.indexOf('=');
            if (i < 0)
              throw new Invalid('must be ROLE=DURATION pairs separated by commas, e.g. gpu=24h,worker=30d');
            return [p.slice(0, i).trim(), p.slice(i + 1).trim()];
          })
      : typeof v === 'object' && v !== null && !Array.isArray(v)
        ? Object.entries(v)
        : (() => {
            throw new Invalid('must be ROLE=DURATION pairs (gpu=24h,worker=30d) or an object {"gpu": "24h"}');
          })();
  const out: Record<string, number> = {};
  for (const [role, d] of entries) {
    if (!isLabel(role)) throw new Invalid(`names a role that is not a DNS label: ${JSON.stringify(role)}`);
    try {
      out[role] = duration(1000, L.TOKEN_TTL_MAX_MS)(d);
    } catch (err) {
      throw new Invalid(`role ${role}: ${(err as Error).message}`);
    }
  }
  return out;
};

/**
 * `--policy-exec`: a program and its arguments, run without a shell (registrar/admission/policy-hook.ts);
 * a command line that cannot be split (an unclosed quote) is refused at start.
 */
export const commandLine: Parser<string> = (v) => {
  const s = text(4096)(v);
  try {
    splitCommand(s);
  } catch (err) {
    throw new Invalid(`is not a command line: ${(err as Error).message}`);
  }
  return s;
};

/** Roles as `a,b` (flag or variable) or ["a", "b"] (file), each a DNS label. */
export const labelList: Parser<string[]> = (v) => {
  const items =
    typeof v === 'string'
      ? v.split(',').map((x) => x.trim())
      : Array.isArray(v)
        ? (v as unknown[])
        : (() => {
            throw new Invalid('must be roles separated by commas (a,b), or a list ["a", "b"] in the file');
          })();
  const out: string[] = [];
  for (const x of items) {
    if (x === '') continue;
    if (typeof x !== 'string' || !isLabel(x))
      throw new Invalid(`names a role that is not a DNS label: ${JSON.stringify(x)}`);
    if (!out.includes(x)) out.push(x);
  }
  if (out.length === 0) throw new Invalid('must name at least one role');
  return out;
};

export type NodeConfig = Record<string, Record<string, string>>;

/**
 * Config values for nodes, per role: {"*": {"key": "value"}, "<role>": {...}}. In the file an object;
 * as a flag or variable the path of a JSON file, or the JSON itself when it begins with '{'.
 */
export const nodeConfig: Parser<NodeConfig> = (v) => {
  let value = v;
  if (typeof v === 'string') {
    const inline = v.trimStart().startsWith('{');
    let textValue = v;
    if (!inline) {
      try {
        textValue = readFileSync(filePath(v), 'utf8');
      } catch (err) {
        if (err instanceof Invalid) throw err;
        const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        throw new Invalid(`names a file that cannot be read: ${v} (${why})`, false);
      }
    }
    try {
      value = JSON.parse(textValue);
    } catch (err) {
      throw new Invalid(
        `${inline ? 'is' : 'names a file that is'} not valid JSON (${(err as Error).message})`,
      );
    }
  }
  const ok =
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every(
      (r) =>
        typeof r === 'object' &&
        r !== null &&
        !Array.isArray(r) &&
        Object.values(r).every((s) => typeof s === 'string'),
    );
  if (!ok) throw new Invalid('must be {"*": {"key": "value"}, "<role>": {...}} with string values', false);
  return value as NodeConfig;
};

export const flag: Parser<boolean> = (v) => {
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  throw new Invalid('must be true or false');
};

/** A token ID (`tokens revoke ID`); a whole ID.SECRET is taken as its ID. */
export const tokenId: Parser<string> = (v) => {
  const s = typeof v === 'string' ? v.split('.')[0]! : v;
  if (typeof s !== 'string' || !new RegExp(TOKEN_ID_PATTERN).test(s)) {
    throw new Invalid("must be a token ID as `muster tokens list` shows it (the part before the '.')", false);
  }
  return s;
};

const NODE_STATES = ['heard', 'pending', 'accepted', 'issued', 'active', 'rejected', 'removed'] as const;

/** A tier registrar's parent (issue 11): an https:// URL, or `auto` (found by mDNS, role=main). */
const parentUrl: Parser<string> = (v) => (v === 'auto' ? 'auto' : httpsUrl(v));

/**
 * Where the registry is (DESIGN "Store backends"): `level` (embedded, the default), or an etcd
 * cluster shared by several registrars, `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`. TLS to etcd
 * (etcds://) is not supported yet.
 */
const storeSetting: Parser<string> = (v) => {
  if (v === 'level') return v;
  if (typeof v !== 'string' || !v.startsWith('etcd://')) {
    throw new Invalid(
      'must be level or etcd://HOST:PORT[,HOST:PORT...] (etcd members, e.g. etcd://10.0.0.5:2379)',
    );
  }
  storeEndpoints(v);
  return v;
};

/**
 * The etcd members and key prefix of an `etcd://` store setting (already checked by its parser, or
 * checked here): `etcd://a:2379,b:2379/lab` is members a:2379 and b:2379, prefix `/lab/`.
 */
export function storeEndpoints(v: string): { endpoints: string[]; prefix?: string } {
  const rest = v.slice('etcd://'.length);
  const slash = rest.indexOf('/');
  const hosts = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  const endpoints = hosts.split(',');
  for (const e of endpoints) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(e);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      throw new Invalid(
        `has ${JSON.stringify(e)} where an etcd member HOST:PORT belongs (e.g. 10.0.0.5:2379)`,
      );
    }
  }
  if (path !== '' && path !== '/' && !/^(\/[A-Za-z0-9._-]+)+\/?$/.test(path)) {
    throw new Invalid('has a key prefix that is not /NAME[/NAME...] (letters, digits, . _ -)');
  }
  const prefix = path === '' || path === '/' ? undefined : path.endsWith('/') ? path : path + '/';
  return { endpoints, ...(prefix ? { prefix } : {}) };
}

// ---- the schema -----------------------------------------------------------------------------------

export interface Setting<T = unknown> {
  /** Help text. */
  describe: string;
  /** Checks a value (a flag's string, a variable, or a JSON value from the file) and returns it typed. */
  parse: Parser<T>;
  /** How the command line carries it: a string (default), an on/off switch, or a repeatable flag. */
  kind?: 'string' | 'boolean' | 'list';
  /** The value when none is given (a string is parsed like any other value). */
  default?: string | boolean | (() => string);
  /** Shown in --help instead of the default. */
  defaultDescription?: string;
  /** The values it takes, for --help. */
  choices?: readonly string[];
  /** A positional argument (`nodes remove NAME`) rather than a flag. */
  positional?: boolean;
  /** Must be given. */
  required?: boolean;
  alias?: string;
  /** Never echoed in messages or `config check`. */
  secret?: boolean;
  /** Never read from the config file: the reason, for the message. */
  noFile?: string;
}

const adminSocket = {
  describe: "the registrar's admin socket",
  parse: filePath,
  default: defaultAdminSocket,
} satisfies Setting;

const mdns = {
  describe: 'advertise and browse over mDNS (off: the HTTPS endpoint only)',
  parse: choice('on', 'off'),
  choices: ['on', 'off'],
  default: 'on',
} satisfies Setting;

/** Event types, one or a comma list (`events --type refused,token`), each one of EVENT_TYPES. */
const eventTypes: Parser<string> = (v) => {
  const known = `event types, a comma list of ${EVENT_TYPES.join(', ')}`;
  if (typeof v !== 'string' || v === '') throw new Invalid(`must be ${known}`);
  for (const t of v.split(',')) {
    if ((EVENT_TYPES as readonly string[]).includes(t)) continue;
    const near = closest(t, EVENT_TYPES);
    throw new Invalid(`must be ${known}${near ? ` (did you mean ${near}?)` : ''}`);
  }
  return v;
};

/** A key fingerprint: base64url SHA-256 of the SPKI, 43 characters. */
const fingerprint: Parser<string> = (v) => {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(v)) {
    throw new Invalid('must be a key fingerprint (43 base64url characters)');
  }
  return v;
};

const nodeName = {
  describe: 'the node name',
  parse: label,
  positional: true,
  required: true,
} satisfies Setting;

/** Every setting of every command, by scope and flag name (CONVENTIONS 6: one schema). */
export const SETTINGS = {
  registrar: {
    'state-dir': { describe: 'store and CA key', parse: filePath, default: defaultRegistrarStateDir },
    store: {
      describe:
        'the registry: level (embedded, under --state-dir) or etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (shared by several registrars; plain http to etcd)',
      parse: storeSetting,
      default: 'level',
    },
    listen: { describe: 'HTTPS API address HOST:PORT', parse: hostPort, default: '0.0.0.0:8443' },
    cluster: { describe: 'the cluster this registrar serves', parse: label, default: 'default' },
    autoregister: {
      describe: 'whom install mode may accept: the local link, any address, or nobody (approval only)',
      parse: choice('local', 'any', 'off'),
      choices: ['local', 'any', 'off'],
      default: 'local',
    },
    interface: {
      describe: 'IPv4 address of the interface to advertise on (and the local link)',
      parse: ipv4,
    },
    mdns,
    parent: {
      describe:
        'run as a tier registrar under this parent (its URL, or auto: the main found by mDNS): join it as role cluster, sign nodes with the intermediate CA it issues',
      parse: parentUrl,
    },
    'parent-token': {
      describe:
        "join token for the tier's own join to --parent (prefer --parent-token-file: flags show in ps)",
      parse: text(300),
      secret: true,
      noFile:
        'a join token does not belong in muster.json (often world-readable): use parentTokenFile (mode 0600) or MUSTER_PARENT_TOKEN',
    },
    'parent-token-file': {
      describe: 'file holding the join token for --parent (mode 0600)',
      parse: tokenFile,
    },
    'parent-ca-fingerprint': {
      describe: "pin the parent's root CA (its SHA-256 fingerprint, as `muster ca` prints it)",
      parse: caFingerprint,
    },
    'admin-socket': { ...adminSocket, describe: 'Unix socket of the admin API' },
    // The admin web page (issue 13; registrar/admin-web.ts): off unless set, loopback only.
    'admin-listen': {
      describe:
        'serve the admin web page on this loopback HOST:PORT (plain HTTP, off when unset; log in with muster admin url)',
      parse: loopbackHostPort,
    },
    'cert-lifetime': {
      describe: 'lifetime of node certificates',
      parse: duration(1000, L.TOKEN_TTL_MAX_MS),
      default: '90d',
    },
    'role-lifetime': {
      describe: 'lifetimes of node certificates by role, over --cert-lifetime: ROLE=DUR,... (e.g. gpu=24h)',
      parse: roleLifetimes,
    },
    'rate-limit': {
      describe:
        'refused requests per minute per client (IPv4 address or IPv6 /64) before it gets 429; successful joins are not counted',
      parse: int(1, 1_000_000),
      default: '60',
    },
    'node-config': {
      describe: 'config values for nodes: a JSON file (or inline JSON) {"*": {...}, "<role>": {...}}',
      parse: nodeConfig,
    },
    // Garbage collection (issue 9, item 6; registrar/steward.ts): 0s keeps such records for good.
    'heard-ttl': {
      describe: 'a node heard over mDNS that never asks to join is dropped (rejected, name freed) after this',
      parse: duration(),
      default: '1d',
    },
    'pending-ttl': {
      describe:
        'a request nobody approves is dropped (rejected, name freed; the key may ask again) after this',
      parse: duration(),
      default: '7d',
    },
    'unacked-ttl': {
      describe: 'a certificate the node never acknowledged is revoked and its node removed after this',
      parse: duration(),
      default: '7d',
    },
    'event-retention': {
      describe: 'events kept in the event log (the oldest go first)',
      parse: int(1000, 100_000_000),
      default: '200000',
    },
    // Lockout (DESIGN "Admission policy", registrar/refusals.ts): Matter's commissioning window.
    'max-failures': {
      describe:
        'refused joins after which open install mode switches itself off, and bad proofs after which a join token locks',
      parse: int(1, 1_000_000),
      default: '20',
    },
    // The policy hook (issue 10, item 1; registrar/admission/policy-hook.ts, README "Policy hook").
    'policy-exec': {
      describe:
        'a program that judges each join: request JSON on stdin; exit 0 accept, 10 pending, 20 reject (run without a shell)',
      parse: commandLine,
    },
    'policy-timeout': {
      describe: 'the policy hook answers within this, or the node waits for approval',
      parse: duration(1000, 60_000),
      default: '5s',
    },
    'policy-concurrency': {
      describe: 'policy hooks running at once at most (more requests queue; a long queue waits for approval)',
      parse: int(1, 64),
      default: '4',
    },
    'singleton-role': {
      describe: 'roles only one node may hold: a second node asking for one waits for approval (a,b)',
      parse: labelList,
    },
  },
  join: {
    registrar: {
      describe: 'registrar URL, e.g. https://10.0.0.1:8443 (used when mDNS finds none)',
      parse: httpsUrl,
    },
    token: {
      describe: 'join token ID.SECRET (prefer --token-file or MUSTER_TOKEN: flags show in ps)',
      parse: text(300),
      secret: true,
      noFile:
        'a join token does not belong in muster.json (often world-readable): use tokenFile (mode 0600) or MUSTER_TOKEN',
    },
    'token-file': { describe: 'file holding the join token (mode 0600)', parse: tokenFile },
    name: {
      describe: 'node name',
      parse: label,
      default: defaultNodeName,
      defaultDescription: 'short host name',
    },
    'name-from': {
      describe:
        'derive the name when --name is not set: the short host name, <host>-<6 chars of /etc/machine-id>, or <host>-<6 chars of the key fingerprint> (machines that share a host name)',
      parse: choice('hostname', 'machine-id', 'key'),
      choices: ['hostname', 'machine-id', 'key'],
      default: 'hostname',
    },
    role: { describe: 'role to register as', parse: label, default: 'node' },
    cluster: { describe: 'cluster wanted (empty: any)', parse: labelOrEmpty, default: '' },
    'ca-fingerprint': {
      describe:
        "pin the registrar's CA: its SHA-256 fingerprint (`muster ca` prints it; openssl's AB:CD:... form works too)",
      parse: caFingerprint,
    },
    'state-dir': {
      describe: 'where the key and credentials live',
      parse: filePath,
      default: defaultNodeStateDir,
    },
    'discovery-timeout': {
      describe: 'how long to look for a registrar by mDNS',
      parse: duration(),
      default: '5s',
    },
    mdns,
    interface: { describe: 'IPv4 address of the interface for mDNS', parse: ipv4 },
    'on-registered': { describe: 'shell command to run once registered', parse: text() },
    'on-changed': {
      describe: 'shell command to run when the boot check-in of a registered node changed config.json',
      parse: text(),
    },
    timeout: { describe: 'give up after this long (default: keep trying)', parse: duration(1000) },
    'key-type': {
      describe: 'type of a new node key',
      parse: choice('ec', 'rsa'),
      choices: ['ec', 'rsa'],
      default: 'ec',
    },
  },
  admin: {
    'admin-socket': adminSocket,
  },
  /** `muster discover` (issue 11, item 2): browse `_muster._tcp` for a while and list what answered. */
  discover: {
    timeout: {
      describe: 'how long to listen for registrars',
      parse: duration(1000, 60_000),
      default: '2s',
    },
    interface: { describe: 'IPv4 address of the interface to browse on', parse: ipv4 },
    cluster: { describe: 'only registrars serving this cluster', parse: label },
  },
  leave: {
    'state-dir': {
      describe: "the node's key and credentials (as for muster join)",
      parse: filePath,
      default: defaultNodeStateDir,
    },
    registrar: {
      describe: 'registrar URL to tell (default: the one in bundle.json; trusted by the CA the node holds)',
      parse: httpsUrl,
    },
    'keep-key': {
      describe: 'keep node.key (to join again with the same key); the credentials are removed all the same',
      parse: flag,
      kind: 'boolean',
      default: false,
    },
  },
  renew: {
    'state-dir': {
      describe: "the node's key and credentials (as for muster join)",
      parse: filePath,
      default: defaultNodeStateDir,
    },
    now: {
      describe:
        'renew now, not only once two thirds of the lifetime have passed (also fetches a changed config)',
      parse: flag,
      kind: 'boolean',
      default: false,
    },
    'rotate-key': {
      describe: 'renew with a new node key (the old key signs for it); implies --now',
      parse: flag,
      kind: 'boolean',
      default: false,
    },
    'on-renewed': { describe: 'shell command to run after a renewal (e.g. reload a service)', parse: text() },
    'on-changed': { describe: 'shell command to run after config.json changed', parse: text() },
  },
  output: {
    json: {
      describe: 'machine-readable output (docs/cli-json.md)',
      parse: flag,
      kind: 'boolean',
      default: false,
    },
  },
  'install-mode on': {
    for: {
      describe: 'how long, e.g. 15m',
      parse: duration(L.INSTALL_MODE_FOR_MIN_MS, L.INSTALL_MODE_FOR_MAX_MS),
      required: true,
    },
    max: {
      describe: 'switch off after this many nodes',
      parse: int(L.INSTALL_MODE_MAX_MIN, L.INSTALL_MODE_MAX_MAX),
    },
    role: { describe: 'admit this role only', parse: label },
    cluster: { describe: 'admit this cluster only', parse: label },
    remote: { describe: 'also admit nodes off the local link', parse: flag, kind: 'boolean', default: false },
  },
  'tokens create': {
    ttl: { describe: "lifetime, e.g. 24h, 30d, or 'never'", parse: tokenTtl, default: '24h' },
    uses: {
      describe: 'how many nodes may use it (default: unlimited)',
      parse: int(L.TOKEN_USES_MIN, L.TOKEN_USES_MAX),
    },
    role: { describe: 'a role it admits (repeat the flag; default: any)', parse: label, kind: 'list' },
    cluster: { describe: 'a cluster it admits (repeat the flag; default: any)', parse: label, kind: 'list' },
    description: { describe: 'a note for the operator', parse: text(L.TOKEN_DESCRIPTION_MAX) },
    pin: {
      describe:
        "put the registrar's CA fingerprint in the token: nodes that hold it trust this CA only (--no-pin: leave it out, for an image that must keep joining after the registrar's CA is replaced; a multi-use token without it lets whoever copies it run a registrar those nodes trust)",
      parse: flag,
      kind: 'boolean',
      default: true,
    },
  },
  'tokens revoke': {
    id: {
      describe: 'the token ID (as `muster tokens list` shows it)',
      parse: tokenId,
      positional: true,
      required: true,
    },
  },
  'tokens unlock': {
    id: {
      describe: 'the token ID (as `muster tokens list` shows it)',
      parse: tokenId,
      positional: true,
      required: true,
    },
  },
  'nodes list': {
    state: { describe: 'only nodes in this state', parse: choice(...NODE_STATES), choices: NODE_STATES },
    limit: { describe: 'nodes per page', parse: int(1, L.NODES_PAGE_MAX), default: '100' },
    after: { describe: 'start after this node name (paging)', parse: label },
    stale: {
      describe:
        'only nodes not seen for this long (no authenticated contact: check-in, poll, ack, renewal); certificate expiry is not a filter here, see EXPIRES',
      parse: duration(1000),
    },
    group: { describe: 'only nodes in this group', parse: label },
  },
  /** `nodes group NAME GROUP [--force]` (DESIGN "Groups"). */
  'nodes group': {
    group: {
      describe: 'the group (a DNS label); the node learns it at its next contact',
      parse: label,
      positional: true,
      required: true,
    },
    force: {
      describe: 'the node is in another group: move it (a node is in at most one group)',
      parse: flag,
      kind: 'boolean',
      default: false,
    },
  },
  node: {
    name: nodeName,
  },
  /** `nodes preapprove` and `nodes rebuild` (issue 9, item 3). */
  preapprove: {
    key: {
      describe:
        'only the key with this fingerprint (base64url SHA-256 of its public key, as `muster nodes show` shows keys)',
      parse: fingerprint,
    },
    role: { describe: 'only this role', parse: label },
    ttl: {
      describe: "how long the pre-approval holds, e.g. 24h, 30d, or 'never'",
      parse: tokenTtl,
      default: '24h',
    },
  },
  /** `nodes ban` and `nodes unban`: a name, or --key. */
  ban: {
    name: { describe: 'the node name', parse: label, positional: true },
    key: { describe: 'a key fingerprint instead of a name', parse: fingerprint },
  },
  'nodes approve': {
    force: {
      describe:
        'the name is held by another key: archive the holder (its certificate revoked) and admit --key instead',
      parse: flag,
      kind: 'boolean',
      default: false,
    },
    key: { describe: 'with --force: the fingerprint of the key to admit', parse: fingerprint },
  },
  'nodes ban': {
    reason: { describe: 'a note for the operator', parse: text(L.TOKEN_DESCRIPTION_MAX) },
  },
  events: {
    follow: {
      describe: 'keep streaming new events',
      parse: flag,
      kind: 'boolean',
      default: false,
      alias: 'f',
    },
    after: {
      describe: 'events after this sequence number',
      parse: int(0, 999_999_999_999_999),
      default: '0',
    },
    limit: {
      describe: 'events per page (without --follow)',
      parse: int(1, L.EVENTS_PAGE_MAX),
      default: String(L.EVENTS_PAGE_MAX),
    },
    type: {
      describe: 'only events of this type (repeat the flag, or a,b), e.g. refused',
      parse: eventTypes,
      kind: 'list',
    },
  },
  ca: {
    url: {
      describe:
        "fetch the CA fingerprint from a registrar's HTTPS API instead (unverified: compare it out of band)",
      parse: httpsUrl,
    },
  },
  'install-units': {
    prefix: {
      describe: 'install under this root directory (an image tree)',
      parse: absolutePath,
      default: '/',
    },
    'unit-dir': {
      describe: 'systemd unit directory (inside --prefix)',
      parse: absolutePath,
      default: '/etc/systemd/system',
    },
    binary: {
      describe: 'the muster binary ExecStart= runs, a path on this machine (for an image: --bin)',
      parse: filePath,
      defaultDescription: 'this one; with --prefix, muster as installed in the image',
    },
    bin: {
      describe:
        'the muster command ExecStart= runs, as the path the installed system sees (inside --prefix), written as given',
      parse: absolutePath,
      defaultDescription: "muster on the image's PATH, else /usr/bin/env muster",
    },
    upstart: {
      describe: 'install the upstart job (/etc/init) instead of the systemd units',
      parse: flag,
      kind: 'boolean',
      default: false,
    },
    'dry-run': {
      describe: 'print what would be done, write nothing',
      parse: flag,
      kind: 'boolean',
      default: false,
    },
    reload: {
      describe: 'run systemctl daemon-reload (--no-reload: do not)',
      parse: flag,
      kind: 'boolean',
      default: true,
    },
  },
  'config check': {
    file: {
      describe: 'the config file (default: --config, MUSTER_CONFIG, or /etc/muster/muster.json)',
      parse: filePath,
      positional: true,
    },
  },
} as const satisfies Record<string, Record<string, Setting>>;

export type Scope = keyof typeof SETTINGS;

/** The scopes that are also config file sections and MUSTER_* variables. */
export const FILE_SECTIONS = ['registrar', 'join', 'admin'] as const satisfies readonly Scope[];
export type Section = (typeof FILE_SECTIONS)[number];

const isSection = (s: string): s is Section => (FILE_SECTIONS as readonly string[]).includes(s);

type Out<S> = S extends { parse: Parser<infer T> } ? (S extends { kind: 'list' } ? T[] : T) : never;
type Given<S> = S extends { default: unknown } | { required: true } | { kind: 'list' }
  ? Out<S>
  : Out<S> | undefined;
/** The typed values of one scope, by flag name. */
export type Values<K extends Scope> = {
  -readonly [F in keyof (typeof SETTINGS)[K]]: Given<(typeof SETTINGS)[K][F]>;
};
/** The typed values of several scopes. */
export type ValuesOf<S extends readonly Scope[]> = S extends readonly [
  infer H extends Scope,
  ...infer R extends readonly Scope[],
]
  ? Values<H> & ValuesOf<R>
  : unknown;

export function settingsOf(scope: Scope): Readonly<Record<string, Setting>> {
  return SETTINGS[scope] as Record<string, Setting>;
}

export const DEFAULT_CONFIG_FILE = '/etc/muster/muster.json';

export const camel = (name: string): string => name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
export const envName = (name: string): string => 'MUSTER_' + name.replace(/-/g, '_').toUpperCase();

/** MUSTER_* variables that are not settings but are read elsewhere (logging, the config path, tests). */
export const OTHER_VARIABLES = [
  'MUSTER_CONFIG',
  'MUSTER_LOG_FORMAT',
  'MUSTER_LOG_LEVEL',
  'MUSTER_TEST_FAULT',
];

// ---- reading values -------------------------------------------------------------------------------

function shown(v: unknown): string {
  const s =
    typeof v === 'string' ? JSON.stringify(v.length > 80 ? v.slice(0, 80) + '…' : v) : JSON.stringify(v);
  return (s ?? String(v)).slice(0, 100);
}

/**
 * Parses one value; a refusal names where it came from: "--for must be between 1s and 365d, not "0s"".
 * `code`: MUSTER_ERR_USAGE for the command line, MUSTER_ERR_CONFIG for the file and the environment.
 */
export function parseSetting<T>(
  s: Setting<T>,
  v: unknown,
  where: string,
  code: 'MUSTER_ERR_USAGE' | 'MUSTER_ERR_CONFIG',
): T {
  try {
    return s.parse(v);
  } catch (err) {
    const reason = err instanceof Invalid ? err : new Invalid(`is not valid (${(err as Error).message})`);
    const empty = v === '' || v === false;
    // A join token pasted into another setting is a secret all the same: never echoed.
    const token = !s.secret && holdsToken(v);
    const echo = reason.showValue && !s.secret && !empty && !token ? `, not ${shown(v)}` : '';
    const why = token
      ? `${redactTokens(reason.message)}${reason.message.includes('join token') ? '' : ' (the value holds a join token: not shown)'}`
      : reason.message;
    const needs = empty && where.startsWith('-') ? ' needs a value: it' : '';
    throw new MusterError(code, `${where}${needs} ${why}${echo}`);
  }
}

function bad(source: string, problem: string): MusterError {
  return new MusterError('MUSTER_ERR_CONFIG', `${source}: ${problem}`);
}

export interface FileValues {
  /** Parsed values by section and flag name. */
  values: Record<Section, Record<string, unknown>>;
  /** The values as written in the file. */
  raw: Record<Section, Record<string, unknown>>;
}

/** Reads and validates a whole config file (every section). Throws MUSTER_ERR_CONFIG naming the key. */
export function readConfigFile(file: string): FileValues['values'] {
  return readConfigFileFull(file).values;
}

function readConfigFileFull(file: string): FileValues {
  let textValue: string;
  try {
    textValue = readFileSync(file, 'utf8');
  } catch (err) {
    throw bad(file, `cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(textValue);
  } catch (err) {
    throw bad(file, `not valid JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw bad(file, `expected a JSON object with sections ${list(FILE_SECTIONS)}`);
  }
  const out: FileValues = {
    values: { registrar: {}, join: {}, admin: {} },
    raw: { registrar: {}, join: {}, admin: {} },
  };
  for (const [section, body] of Object.entries(json as Record<string, unknown>)) {
    if (!isSection(section))
      throw bad(file, `unknown section ${JSON.stringify(section)} (expected ${list(FILE_SECTIONS)})`);
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw bad(`${file} ${section}`, 'expected an object');
    const settings = settingsOf(section);
    for (const [key, v] of Object.entries(body as Record<string, unknown>)) {
      const name = Object.keys(settings).find((f) => camel(f) === key);
      const where = `${file} ${section}.${key}`;
      if (!name) {
        const known = Object.keys(settings).map(camel);
        const near = closest(key, known);
        throw bad(
          where,
          `unknown setting${near ? ` (did you mean ${near}?)` : ''} (known: ${known.join(', ')})`,
        );
      }
      const s = settings[name]!;
      if (s.noFile) throw bad(where, s.noFile);
      out.values[section][name] = parseSetting(s, v, where, 'MUSTER_ERR_CONFIG');
      out.raw[section][name] = v;
    }
  }
  return out;
}

export interface LoadedConfig {
  /** Parsed values by flag name. */
  values: Readonly<Record<string, unknown>>;
  /** Where each value came from ("/etc/muster/muster.json join.cluster", "environment MUSTER_CLUSTER"). */
  sources: Readonly<Record<string, string>>;
  /** Each value as written there. */
  raw: Readonly<Record<string, unknown>>;
}

export interface ConfigSource {
  /** The config file; default DEFAULT_CONFIG_FILE. */
  file?: string | undefined;
  /** An explicit file (--config, MUSTER_CONFIG) must exist; the default path may be absent. */
  explicitFile?: boolean;
  env?: NodeJS.ProcessEnv;
}

/**
 * The settings of one section from the file and the environment (flags come on top). The whole file is
 * validated, so a typo in another command's section is found by any command.
 */
export function loadConfig(section: Section, opts: ConfigSource = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? DEFAULT_CONFIG_FILE;
  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  const raw: Record<string, unknown> = {};
  const fromFile = configFileValues(file, opts.explicitFile ?? false);
  for (const [name, v] of Object.entries(fromFile?.values[section] ?? {})) {
    values[name] = v;
    raw[name] = fromFile!.raw[section][name];
    sources[name] = `${file} ${section}.${camel(name)}`;
  }
  for (const [name, s] of Object.entries(settingsOf(section))) {
    const v = env[envName(name)];
    // An empty variable is unset (one env file can serve a node and a registrar), except the node's
    // cluster, where empty means "any".
    if (v === undefined || (v === '' && !(section === 'join' && name === 'cluster'))) continue;
    const where = `environment ${envName(name)}`;
    values[name] = parseSetting(s, v, where, 'MUSTER_ERR_CONFIG');
    raw[name] = v;
    sources[name] = where;
  }
  return Object.freeze({
    values: Object.freeze(values),
    sources: Object.freeze(sources),
    raw: Object.freeze(raw),
  });
}

/** The file's values, or undefined when the default file is absent. */
function configFileValues(file: string, explicit: boolean): FileValues | undefined {
  try {
    return readConfigFileFull(file);
  } catch (err) {
    const missing = (err as MusterError).message.includes('(ENOENT)');
    if (missing && !explicit) return undefined;
    throw err;
  }
}

/** Finds --config FILE / --config=FILE in raw arguments, else MUSTER_CONFIG. */
export function configFileFrom(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { file?: string; explicit: boolean } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' && argv[i + 1]) return { file: argv[i + 1]!, explicit: true };
    if (a.startsWith('--config=')) return { file: a.slice('--config='.length), explicit: true };
  }
  if (env.MUSTER_CONFIG) return { file: env.MUSTER_CONFIG, explicit: true };
  return { explicit: false };
}

export interface Resolved {
  /** Parsed values by flag name. */
  values: Record<string, unknown>;
  /** Where each value came from: "--for", "environment MUSTER_ROLE", a file key, or "default". */
  sources: Record<string, string>;
  /** Each value as given (for display). */
  raw: Record<string, unknown>;
}

/**
 * The settings in force for a command that takes `scopes`: each from its flag, else (file sections)
 * the environment, else the file, else its default; every value through its parser. `flags` holds the
 * command-line values by flag name (absent when not given), `where` how to name each in a message.
 */
export function resolveSettings(
  scopes: readonly Scope[],
  flags: Readonly<Record<string, unknown>>,
  config: ConfigSource & { where?: (name: string) => string } = {},
): Resolved {
  const out: Resolved = { values: {}, sources: {}, raw: {} };
  const whereFlag = config.where ?? ((name: string) => `--${name}`);
  for (const scope of scopes) {
    const loaded = isSection(scope) ? loadConfig(scope, config) : undefined;
    for (const [name, s] of Object.entries(settingsOf(scope))) {
      if (name in out.values) throw new Error(`setting ${name} is in two scopes of one command (a bug)`);
      let v: unknown;
      let where: string;
      if (flags[name] !== undefined) {
        v = flags[name];
        where = whereFlag(name);
        if (s.kind === 'list') {
          const items = (Array.isArray(v) ? v : [v]).map((x) =>
            parseSetting(s, x, where, 'MUSTER_ERR_USAGE'),
          );
          if (items.length > L.TOKEN_SCOPE_MAX)
            throw new MusterError(
              'MUSTER_ERR_USAGE',
              `${where} is given more than ${L.TOKEN_SCOPE_MAX} times`,
            );
          out.values[name] = items;
        } else {
          if (Array.isArray(v)) throw new MusterError('MUSTER_ERR_USAGE', `${where} is given more than once`);
          out.values[name] = parseSetting(s, v, where, 'MUSTER_ERR_USAGE');
        }
        out.raw[name] = v;
        out.sources[name] = where;
        continue;
      }
      if (loaded && name in loaded.values) {
        out.values[name] = loaded.values[name];
        out.raw[name] = loaded.raw[name];
        out.sources[name] = loaded.sources[name]!;
        continue;
      }
      if (s.required) throw new MusterError('MUSTER_ERR_USAGE', `${whereFlag(name)} is required`);
      if (s.default !== undefined) {
        const d = typeof s.default === 'function' ? s.default() : s.default;
        const what = s.defaultDescription
          ? `the default ${name} (${s.defaultDescription} ${shown(d)})`
          : `the default ${name}`;
        out.values[name] = s.kind === 'boolean' ? d : parseSetting(s, d, what, 'MUSTER_ERR_CONFIG');
        out.raw[name] = d;
        out.sources[name] = 'default';
        continue;
      }
      if (s.kind === 'list') out.values[name] = [];
    }
  }
  return out;
}

// ---- did you mean ---------------------------------------------------------------------------------

/** Edit distance with transpositions (optimal string alignment): "tll" is one step from "ttl". */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [
    i,
    ...Array<number>(b.length).fill(0),
  ]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate nearest to `word`, if it is near enough to be a typo of it. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase().replace(/_/g, '-');
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const cc = c.toLowerCase();
    const d = cc.replace(/-/g, '') === w.replace(/-/g, '') ? 0 : editDistance(w, cc);
    const limit = Math.max(1, Math.min(3, Math.floor(cc.length / 3)));
    if (d <= limit && d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}
