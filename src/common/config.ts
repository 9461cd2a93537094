/**
 * Settings (DESIGN "Files and units", CONVENTIONS 6): one schema for the config file
 * (/etc/muster/muster.json), MUSTER_* environment variables and command-line flags. Validated once at
 * start, frozen; an invalid value names the key and the source it came from. Precedence: flag >
 * environment > file > built-in default.
 *
 * File layout, one section per command (a machine can run a registrar and a node):
 *   { "registrar": { "listen": "0.0.0.0:8443", "cluster": "lab", ... },
 *     "join": { "registrar": "https://10.0.0.1:8443", "tokenFile": "/etc/muster/token", ... },
 *     "admin": { "adminSocket": "/run/muster/admin.sock" } }
 * Keys are the flag names in camelCase; variables are MUSTER_ + the flag in UPPER_SNAKE_CASE.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { MusterError } from './errors.js';
import { isLabel, parseDuration } from './names.js';

export type Section = 'registrar' | 'join' | 'admin';

interface Setting {
  /** What the value must be, for a person ("a duration such as 15m"). */
  what: string;
  /** Parses a string (env, or a file string) or a JSON value; returns the value or throws a reason. */
  parse: (v: unknown) => string | number | boolean | Record<string, Record<string, string>>;
  /** Never read from the config file (secrets). */
  noFile?: string;
}

const str = (v: unknown): string => {
  if (typeof v !== 'string' || v === '') throw new Error('expected a non-empty string');
  if (v.length > 4096) throw new Error('too long');
  return v;
};
const choice =
  (...values: string[]) =>
  (v: unknown): string => {
    if (typeof v !== 'string' || !values.includes(v)) throw new Error(`expected one of ${values.join(', ')}`);
    return v;
  };
const label = (v: unknown): string => {
  if (typeof v !== 'string' || !isLabel(v)) throw new Error("expected a DNS label (a-z, 0-9, '-', 1 to 63 characters)");
  return v;
};
const labelOrEmpty = (v: unknown): string => (v === '' ? '' : label(v));
const duration = (v: unknown): string => {
  if (typeof v !== 'string') throw new Error('expected a duration such as 90s, 15m, 1h30m');
  parseDuration(v); // throws a MusterError with the reason
  return v;
};
const int =
  (min: number, max: number) =>
  (v: unknown): number => {
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw new Error(`expected a whole number from ${min} to ${max}`);
    return n;
  };
const ipv4 = (v: unknown): string => {
  if (typeof v !== 'string' || isIP(v) !== 4) throw new Error('expected an IPv4 address');
  return v;
};
const httpsUrl = (v: unknown): string => {
  const s = str(v);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new Error('expected a URL such as https://10.0.0.1:8443');
  }
  if (u.protocol !== 'https:') throw new Error('expected an https:// URL');
  return s;
};
const fingerprint = (v: unknown): string => {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(v)) throw new Error('expected 43 base64url characters (the CA fingerprint)');
  return v;
};
const hostPort = (v: unknown): string => {
  if (typeof v !== 'string' || !/^(\[[0-9a-fA-F:.]+\]|[^:\s]*):\d{1,5}$/.test(v)) throw new Error('expected HOST:PORT, e.g. 0.0.0.0:8443');
  return v;
};
const nodeConfig = (v: unknown): Record<string, Record<string, string>> => {
  const ok =
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    Object.values(v).every((r) => typeof r === 'object' && r !== null && Object.values(r).every((s) => typeof s === 'string'));
  if (!ok) throw new Error('expected {"*": {"key": "value"}, "<role>": {...}} with string values');
  return v as Record<string, Record<string, string>>;
};

/** The schema: every setting of every command, by flag name. */
export const SETTINGS: Record<Section, Record<string, Setting>> = {
  registrar: {
    'state-dir': { what: 'a directory', parse: str },
    listen: { what: 'HOST:PORT', parse: hostPort },
    cluster: { what: 'a cluster name', parse: label },
    autoregister: { what: 'local, any or off', parse: choice('local', 'any', 'off') },
    interface: { what: 'an IPv4 address', parse: ipv4 },
    mdns: { what: 'on or off', parse: choice('on', 'off') },
    'admin-socket': { what: 'a socket path', parse: str },
    'cert-lifetime': { what: 'a duration', parse: duration },
    'rate-limit': { what: 'requests per minute', parse: int(1, 1_000_000) },
    'node-config': { what: 'config values for nodes', parse: nodeConfig },
  },
  join: {
    registrar: { what: 'an https:// URL', parse: httpsUrl },
    token: {
      what: 'a join token',
      parse: str,
      noFile: 'a join token does not belong in muster.json (often world-readable): use tokenFile (mode 0600) or MUSTER_TOKEN',
    },
    'token-file': { what: 'a file path', parse: str },
    name: { what: 'a node name', parse: label },
    role: { what: 'a role', parse: label },
    cluster: { what: 'a cluster name or empty', parse: labelOrEmpty },
    'ca-fingerprint': { what: 'a CA fingerprint', parse: fingerprint },
    'state-dir': { what: 'a directory', parse: str },
    'discovery-timeout': { what: 'a duration', parse: duration },
    mdns: { what: 'on or off', parse: choice('on', 'off') },
    interface: { what: 'an IPv4 address', parse: ipv4 },
    'on-registered': { what: 'a shell command', parse: str },
    timeout: { what: 'a duration', parse: duration },
    'key-type': { what: 'ec or rsa', parse: choice('ec', 'rsa') },
  },
  admin: {
    'admin-socket': { what: 'a socket path', parse: str },
  },
};

export const DEFAULT_CONFIG_FILE = '/etc/muster/muster.json';

const camel = (flag: string): string => flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
export const envName = (flag: string): string => 'MUSTER_' + flag.replace(/-/g, '_').toUpperCase();

export interface LoadedConfig {
  /** Values by flag name, for yargs defaults. */
  values: Readonly<Record<string, unknown>>;
  /** Where each value came from ("/etc/muster/muster.json join.cluster", "environment MUSTER_CLUSTER"). */
  sources: Readonly<Record<string, string>>;
}

function bad(source: string, problem: string): MusterError {
  return new MusterError('MUSTER_ERR_CONFIG', `${source}: ${problem}`);
}

function parseValue(s: Setting, v: unknown, source: string): unknown {
  try {
    return s.parse(v);
  } catch (err) {
    const shown = typeof v === 'string' ? JSON.stringify(v.slice(0, 80)) : JSON.stringify(v)?.slice(0, 80);
    throw bad(source, `${shown} is not ${s.what} (${(err as Error).message})`);
  }
}

/** Reads and validates a whole config file (every section). Throws MUSTER_ERR_CONFIG naming the key. */
export function readConfigFile(file: string): Record<Section, Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw bad(file, `cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw bad(file, `not valid JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad(file, 'expected a JSON object with sections registrar, join, admin');
  const out = { registrar: {}, join: {}, admin: {} } as Record<Section, Record<string, unknown>>;
  for (const [section, body] of Object.entries(json as Record<string, unknown>)) {
    if (!(section in SETTINGS)) throw bad(file, `unknown section ${JSON.stringify(section)} (expected registrar, join or admin)`);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad(`${file} ${section}`, 'expected an object');
    const settings = SETTINGS[section as Section];
    for (const [key, v] of Object.entries(body as Record<string, unknown>)) {
      const flag = Object.keys(settings).find((f) => camel(f) === key);
      const where = `${file} ${section}.${key}`;
      if (!flag) {
        const known = Object.keys(settings).map(camel).join(', ');
        throw bad(where, `unknown setting (known: ${known})`);
      }
      const s = settings[flag]!;
      if (s.noFile) throw bad(where, s.noFile);
      out[section as Section][flag] = parseValue(s, v, where);
    }
  }
  return out;
}

/**
 * The settings for one command from the file and the environment (flags come on top, from yargs).
 * `file`: an explicit --config/MUSTER_CONFIG path must exist; the default path may be absent.
 */
export function loadConfig(
  section: Section,
  opts: { file?: string; explicitFile?: boolean; env?: NodeJS.ProcessEnv } = {},
): LoadedConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? DEFAULT_CONFIG_FILE;
  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  let fromFile: Record<string, unknown> = {};
  try {
    fromFile = readConfigFile(file)[section];
  } catch (err) {
    const missing = (err as MusterError).message.includes('ENOENT');
    if (!(missing && !opts.explicitFile)) throw err;
  }
  for (const [flag, v] of Object.entries(fromFile)) {
    values[flag] = v;
    sources[flag] = `${file} ${section}.${camel(flag)}`;
  }
  for (const [flag, s] of Object.entries(SETTINGS[section])) {
    const raw = env[envName(flag)];
    // An empty variable is unset, except the node's cluster, where empty means "any".
    if (raw === undefined || (raw === '' && !(section === 'join' && flag === 'cluster'))) continue;
    const where = `environment ${envName(flag)}`;
    values[flag] = flag === 'node-config' ? parseValue(s, safeJson(raw, where), where) : parseValue(s, raw, where);
    sources[flag] = where;
  }
  return Object.freeze({ values: Object.freeze(values), sources: Object.freeze(sources) });
}

function safeJson(raw: string, where: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw bad(where, 'not valid JSON');
  }
}

/** Finds --config FILE / --config=FILE in raw arguments, else MUSTER_CONFIG. */
export function configFileFrom(argv: string[], env: NodeJS.ProcessEnv = process.env): { file?: string; explicit: boolean } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' && argv[i + 1]) return { file: argv[i + 1]!, explicit: true };
    if (a.startsWith('--config=')) return { file: a.slice('--config='.length), explicit: true };
  }
  if (env.MUSTER_CONFIG) return { file: env.MUSTER_CONFIG, explicit: true };
  return { explicit: false };
}
