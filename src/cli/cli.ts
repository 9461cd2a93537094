/**
 * The command line as a function (main.ts runs it; tests can call it in process).
 *
 * Parse, then act (issue 14): yargs parses the whole command line and the schema's parsers validate
 * every value (flags, MUSTER_* variables, the config file) before any command runs; a usage error
 * exits 2 having written, sent and started nothing.
 */
import yargs, { type Argv } from 'yargs';
import {
  closest,
  configFileFrom,
  DEFAULT_CONFIG_FILE,
  redactTokens,
  SETTINGS,
  settingsOf,
  type Scope,
} from '../common/config.js';
import { MusterError } from '../common/errors.js';
import { VERSION } from '../common/version.js';
import { caCommand } from './ca-cmd.js';
import type { CommandSpec, Context } from './command.js';
import { GROUPS } from './command.js';
import { configCommands } from './config-cmd.js';
import { discoverCommand } from './discover-cmd.js';
import { EXIT, exitCodeFor, exitCodeForCommand } from './exit-codes.js';
import { installUnitsCommand } from './install-units.js';
import { joinCommand } from './join-cmd.js';
import { leaveCommand } from './leave-cmd.js';
import { renewCommand } from './renew-cmd.js';
import { operatorCommands } from './operator-cmd.js';
import { adminCommands } from './admin-cmd.js';
import { registrarCommand } from './registrar-cmd.js';
import {
  commandString,
  declareOptions,
  rawFlagNames,
  unknownFlags,
  unknownFlagsError,
  validate,
} from './settings.js';

/** Every command, in the order --help lists them. */
export const COMMANDS: CommandSpec[] = [
  registrarCommand,
  joinCommand,
  leaveCommand,
  renewCommand,
  ...operatorCommands,
  ...adminCommands,
  caCommand,
  discoverCommand,
  ...configCommands,
  installUnitsCommand,
];

/**
 * A CA fingerprint is base64url and may begin with '-', which a parser takes for a flag
 * ("--ca-fingerprint -0P1V..."): glue such values to their option before parsing.
 */
export function glueDashValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (
      a === '--ca-fingerprint' &&
      next !== undefined &&
      next.startsWith('-') &&
      /^[A-Za-z0-9_-]{43}$/.test(next)
    ) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

const COMMAND_REQUIRED = 'a command is required';

/** The command words in raw arguments (skipping flags and, approximately, their values). */
function commandWords(args: string[]): string[] {
  // Switches take no value: the schema's boolean settings, their aliases and negations, help, version.
  const booleans = new Set<string>(['help', 'version']);
  for (const scope of Object.keys(SETTINGS) as Scope[]) {
    for (const [name, s] of Object.entries(settingsOf(scope))) {
      if (s.kind !== 'boolean') continue;
      booleans.add(name).add(`no-${name}`);
      if (s.alias) booleans.add(s.alias);
    }
  }
  const words: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    if (a.startsWith('-')) {
      const name = a.replace(/^-+/, '');
      if (
        !name.includes('=') &&
        !booleans.has(name) &&
        args[i + 1] !== undefined &&
        !args[i + 1]!.startsWith('-')
      )
        i++;
      continue;
    }
    words.push(a);
  }
  return words;
}

/** yargs' own usage messages, said in muster's words, with "did you mean" for commands. */
function explainUsage(msg: string, args: string[]): string {
  const words = commandWords(args);
  const names = COMMANDS.map((c) => c.name.split(' '));
  // The longest known command prefix of the words, and what may follow it.
  let depth = 0;
  while (
    depth < words.length &&
    names.some(
      (n) => n.length > depth && n.slice(0, depth + 1).join(' ') === words.slice(0, depth + 1).join(' '),
    )
  )
    depth++;
  const prefix = words.slice(0, depth);
  const leaf = COMMANDS.find((c) => c.name === prefix.join(' '));
  const next = [
    ...new Set(
      names
        .filter((n) => n.length > depth && n.slice(0, depth).join(' ') === prefix.join(' '))
        .map((n) => n[depth]!),
    ),
  ];
  const here = ['muster', ...prefix].join(' ');
  // A misspelt flag explains the rest ("nodes remove --dry-run hk-4": the name became its value).
  if (leaf) {
    const unknown = unknownFlags(leaf, rawFlagNames(args));
    if (unknown.length) return unknownFlagsError(leaf, unknown).message;
  }
  const lead = prefix.length ? `${here}: ` : '';
  const unknownCommand = /^Unknown commands?: ([^,]+)/.exec(msg);
  if (unknownCommand || /^Did you mean/.test(msg)) {
    if (leaf)
      return `${here}: unexpected argument ${JSON.stringify(unknownCommand?.[1] ?? words[depth] ?? '')}; nothing was done`;
    const word = words[depth] ?? unknownCommand?.[1] ?? '';
    const near = closest(word, next);
    return `${lead}unknown command ${JSON.stringify(word)}${near ? ` (did you mean ${[here, near].join(' ')}?)` : ''}; commands: ${next.join(', ')}`;
  }
  const missing = /^Missing required arguments?: (.+)$/.exec(msg);
  if (missing)
    return `${here} needs ${missing[1]!
      .split(', ')
      .map((f) => `--${f}`)
      .join(' and ')}; nothing was done`;
  if (/^Not enough non-option arguments/.test(msg) || msg === COMMAND_REQUIRED) {
    if (leaf) {
      const arg = commandString(leaf)
        .split(' ')
        .find((w) => w.startsWith('<'));
      return `${here} needs ${arg ? arg.slice(1, -1).toUpperCase() : 'more arguments'}; see: ${here} --help`;
    }
    return `${here} needs a command: ${next.join(', ')}; see: ${here} --help`;
  }
  return msg;
}

interface Chosen {
  spec: CommandSpec;
  argv: Record<string, unknown>;
}

function buildParser(args: string[], choose: (c: Chosen) => void): Argv {
  const leaf = (y: Argv, spec: CommandSpec): Argv =>
    y.command(
      commandString(spec),
      spec.describe,
      (a) => {
        let b = declareOptions(a, spec);
        for (const [cmd, what] of spec.examples ?? []) b = b.example(cmd, what);
        return b;
      },
      (argv) => choose({ spec, argv: argv as Record<string, unknown> }),
    );
  let y: Argv = yargs(args)
    .scriptName('muster')
    .usage('$0 <command>\n\nZero-configuration node registration.')
    .locale('en')
    .detectLocale(false)
    // Keys exactly as typed (no camelCase copies, no dotted objects), so that every flag can be checked.
    .parserConfiguration({
      'camel-case-expansion': false,
      'dot-notation': false,
      'parse-positional-numbers': false,
    })
    .option('config', {
      type: 'string',
      global: true,
      describe: 'config file [MUSTER_CONFIG]',
      defaultDescription: DEFAULT_CONFIG_FILE,
    }) as Argv;
  // In COMMANDS order; a group (`muster nodes ...`) where its first command is.
  const done = new Set<string>();
  for (const spec of COMMANDS) {
    const [first, second] = spec.name.split(' ');
    if (second === undefined) {
      y = leaf(y, spec);
      continue;
    }
    if (done.has(first!)) continue;
    done.add(first!);
    const specs = COMMANDS.filter((c) => c.name.startsWith(`${first} `));
    y = y.command(first!, GROUPS[first!] ?? first!, (a) => {
      let b = a;
      for (const s of specs) b = leaf(b, s);
      return b.demandCommand(1, COMMAND_REQUIRED);
    });
  }
  return y
    .version(VERSION)
    .strictCommands()
    .demandCommand(1, COMMAND_REQUIRED)
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      throw new MusterError('MUSTER_ERR_USAGE', explainUsage(msg ?? 'invalid command line', args));
    })
    .help();
}

export interface ParsedCommand {
  spec: CommandSpec;
  values: Record<string, unknown>;
  ctx: Context;
}

/**
 * Parses and validates a command line; runs nothing. Undefined when yargs answered by itself (--help,
 * --version). Throws a MUSTER_ERR_USAGE or MUSTER_ERR_CONFIG MusterError that names the flag.
 */
export async function parseCommandLine(rawArgs: string[]): Promise<ParsedCommand | undefined> {
  const args = glueDashValues(rawArgs);
  let chosen: Chosen | undefined;
  // 1. Parse: the command and its flags (the yargs handlers only record the choice).
  await buildParser(args, (c) => (chosen = c)).parseAsync();
  if (!chosen) return undefined;
  // 2. Validate: unknown flags, every value through the schema's parsers, with env and file.
  const config = chosen.argv.config;
  if (config !== undefined && (typeof config !== 'string' || config === '')) {
    throw new MusterError('MUSTER_ERR_USAGE', '--config needs one file path');
  }
  const cf = typeof config === 'string' ? { file: config, explicit: true } : configFileFrom([], process.env);
  const resolved = validate(chosen.spec, chosen.argv, cf, args);
  return {
    spec: chosen.spec,
    values: resolved.values,
    ctx: { sources: resolved.sources, configFile: cf.file, explicitConfig: cf.explicit },
  };
}

/** Runs a command line; returns the exit code. Errors are printed as one line on stderr. */
export async function runCli(rawArgs: string[]): Promise<number> {
  let spec: CommandSpec | undefined;
  try {
    const parsed = await parseCommandLine(rawArgs);
    if (!parsed) return EXIT.ok; // --help, --version
    spec = parsed.spec;
    // 3. Act.
    return (await spec.run(parsed.values as never, parsed.ctx)) ?? EXIT.ok;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // A join token is never echoed, whatever put it in a message (issue 8: secrets never in messages).
    process.stderr.write(`muster: ${redactTokens(message).split('\n').join(' ')}\n`);
    if (spec?.name === 'join') {
      // Stopped by a signal: 130/143, as set by the signal handler.
      if (typeof process.exitCode === 'number' && process.exitCode >= 128) return process.exitCode;
      return exitCodeFor(err);
    }
    return exitCodeForCommand(err);
  }
}
