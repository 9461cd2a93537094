/**
 * Bridges the settings schema (common/config.ts) to yargs: every command's options are generated from
 * the schema, and the parsed command line is validated with the schema's parsers before the command
 * runs (issue 14). Unknown flags, missing or malformed values are usage errors that name the flag.
 */
import type { Argv, Options, PositionalOptions } from 'yargs';
import {
  closest,
  envName,
  FILE_SECTIONS,
  resolveSettings,
  settingsOf,
  type Resolved,
  type Scope,
  type Setting,
} from '../common/config.js';
import { MusterError } from '../common/errors.js';
import type { CommandSpec } from './command.js';

/** Options every command takes (yargs adds help and version). */
export const GLOBAL_FLAGS = ['config', 'help', 'version'] as const;

const isFileSection = (s: Scope): boolean => (FILE_SECTIONS as readonly string[]).includes(s);

function helpText(name: string, s: Setting, scope: Scope): string {
  const parts = [s.describe];
  if (s.choices) parts.push(`(${s.choices.join(', ')})`);
  if (isFileSection(scope) && !s.positional) parts.push(`[${envName(name)}]`);
  return parts.join(' ');
}

function defaultText(s: Setting): string | undefined {
  if (s.defaultDescription) return s.defaultDescription;
  if (s.default === undefined || s.kind === 'boolean') return undefined;
  const d = typeof s.default === 'function' ? s.default() : s.default;
  return d === '' ? '""' : String(d);
}

/** The yargs command string of a leaf: "remove <name>". */
export function commandString(spec: CommandSpec): string {
  const word = spec.name.split(' ').pop()!;
  const positionals = spec.scopes.flatMap((scope) =>
    Object.entries(settingsOf(scope))
      .filter(([, s]) => s.positional)
      .map(([name, s]) => (s.required ? `<${name}>` : `[${name}]`)),
  );
  return [word, ...positionals].join(' ');
}

/**
 * Declares the command's options. No yargs defaults, choices or coercion: a flag that is absent stays
 * absent (so the environment and the file can supply it), and every value reaches the schema's parser
 * as typed, so that one parser judges it whatever its source.
 */
export function declareOptions<T>(y: Argv<T>, spec: CommandSpec): Argv<T> {
  let a = y;
  for (const scope of spec.scopes) {
    for (const [name, s] of Object.entries(settingsOf(scope))) {
      const dflt = defaultText(s);
      if (s.positional) {
        const p: PositionalOptions = { type: 'string', describe: helpText(name, s, scope) };
        a = a.positional(name, p) as Argv<T>;
        continue;
      }
      const o: Options = {
        type: s.kind === 'boolean' ? 'boolean' : 'string',
        describe: helpText(name, s, scope),
        ...(dflt !== undefined ? { defaultDescription: dflt } : {}),
        ...(s.alias ? { alias: s.alias } : {}),
        ...(s.required ? { demandOption: true } : {}),
      };
      a = a.option(name, o) as Argv<T>;
    }
  }
  return a;
}

/** The flags a command accepts, with their aliases. */
export function knownFlags(spec: CommandSpec): string[] {
  const out: string[] = [...GLOBAL_FLAGS];
  for (const scope of spec.scopes) {
    for (const [name, s] of Object.entries(settingsOf(scope))) {
      out.push(name);
      if (s.alias) out.push(s.alias);
    }
  }
  return out;
}

const dashes = (name: string): string => (name.length === 1 ? `-${name}` : `--${name}`);

/** Of `names` (flags as typed, without dashes), those that `spec` does not take. */
export function unknownFlags(spec: CommandSpec, names: string[]): string[] {
  const known = knownFlags(spec);
  return [...new Set(names)].filter(
    (k) => !known.includes(k) && !(k.startsWith('no-') && known.includes(k.slice(3))),
  );
}

/** The flag names in raw arguments (before `--`): "--max=3" and "--max" give "max", "-f" gives "f". */
export function rawFlagNames(args: string[]): string[] {
  const names: string[] = [];
  for (const a of args) {
    if (a === '--') break;
    if (/^--[^-]/.test(a)) names.push(a.slice(2).split('=')[0]!);
    else if (/^-[^-\d]/.test(a)) names.push(...a.slice(1).split('=')[0]!.split(''));
  }
  return names;
}

export function unknownFlagsError(spec: CommandSpec, unknown: string[]): MusterError {
  const flagNames = knownFlags(spec).filter(
    (k) => k.length > 1 && !(GLOBAL_FLAGS as readonly string[]).includes(k),
  );
  const described = unknown.map((k) => {
    const near = closest(k, flagNames);
    return near ? `${dashes(k)} (did you mean --${near}?)` : dashes(k);
  });
  return new MusterError(
    'MUSTER_ERR_USAGE',
    `muster ${spec.name} has no ${unknown.length > 1 ? 'flags' : 'flag'} ${described.join(', ')}; nothing was done. See: muster ${spec.name} --help`,
  );
}

/**
 * The validation pass over a parsed command line: unknown flags (with "did you mean"), extra
 * arguments, then every value through its parser, merged with the environment and the config file.
 */
export function validate(
  spec: CommandSpec,
  argv: Record<string, unknown>,
  config: { file?: string | undefined; explicit: boolean; env?: NodeJS.ProcessEnv },
  rawArgs: readonly string[] = [],
): Resolved {
  const unknown = unknownFlags(
    spec,
    Object.keys(argv).filter((k) => k !== '_' && k !== '$0'),
  );
  if (unknown.length) throw unknownFlagsError(spec, unknown);
  // yargs reads "--remote=yes" as false: a switch given a value takes true or false only.
  const switches = new Map<string, string>();
  for (const scope of spec.scopes) {
    for (const [name, s] of Object.entries(settingsOf(scope))) {
      if (s.kind !== 'boolean') continue;
      switches.set(name, name);
      if (s.alias) switches.set(s.alias, name);
    }
  }
  for (const a of rawArgs) {
    if (a === '--') break;
    const m = /^--([^=]+)=(.*)$/.exec(a);
    const name = m ? switches.get(m[1]!) : undefined;
    if (name && m![2] !== 'true' && m![2] !== 'false') {
      throw new MusterError(
        'MUSTER_ERR_USAGE',
        `--${name} is a switch: give --${name} or --no-${name}, not ${JSON.stringify(a)}`,
      );
    }
  }
  const path = spec.name.split(' ');
  const rest = ((argv._ as unknown[]) ?? []).slice(path.length);
  if (rest.length) {
    throw new MusterError(
      'MUSTER_ERR_USAGE',
      `muster ${spec.name}: unexpected argument ${JSON.stringify(String(rest[0]))}; nothing was done`,
    );
  }
  const flags: Record<string, unknown> = {};
  const aliases = new Map<string, string>();
  for (const scope of spec.scopes) {
    for (const [name, s] of Object.entries(settingsOf(scope))) if (s.alias) aliases.set(s.alias, name);
  }
  for (const [k, v] of Object.entries(argv)) {
    if (k === '_' || k === '$0' || (GLOBAL_FLAGS as readonly string[]).includes(k)) continue;
    const name = aliases.get(k) ?? k;
    // yargs sets an option and its alias to the same value: take it once.
    if (name !== k && argv[name] !== undefined) continue;
    flags[name] = v;
  }
  const positional = new Set(
    spec.scopes.flatMap((scope) =>
      Object.entries(settingsOf(scope))
        .filter(([, s]) => s.positional)
        .map(([name]) => name),
    ),
  );
  return resolveSettings(spec.scopes, flags, {
    file: config.file,
    explicitFile: config.explicit,
    ...(config.env ? { env: config.env } : {}),
    where: (name) => (positional.has(name) ? `muster ${spec.name} ${name.toUpperCase()}` : `--${name}`),
  });
}
