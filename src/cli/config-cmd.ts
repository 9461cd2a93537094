/**
 * `muster config check [FILE]`: the settings in force for each command (registrar, join, admin), each
 * with its source (flag, variable, file key or default), validated exactly as the commands validate
 * them. Works on a fresh machine: with no /etc/muster/muster.json it shows defaults and environment.
 * Exit 0 when every value is valid, 1 when one is not (the message names it and where it came from).
 */
import { existsSync } from 'node:fs';
import {
  closest,
  DEFAULT_CONFIG_FILE,
  envName,
  FILE_SECTIONS,
  OTHER_VARIABLES,
  readConfigFile,
  redactTokens,
  redactValue,
  resolveSettings,
  settingsOf,
  type Resolved,
  type Section,
} from '../common/config.js';
import { isMusterError } from '../common/errors.js';
import { command } from './command.js';
import { out, printJson } from './output.js';

/**
 * MUSTER_* variables that no setting reads: most likely typos (MUSTER_LISTN). MUSTER_NODE_* are what
 * `muster join` gives its --on-registered command (README), so a hook may run this check.
 */
function unknownVariables(env: NodeJS.ProcessEnv): string[] {
  const known = new Set([
    ...OTHER_VARIABLES,
    ...FILE_SECTIONS.flatMap((s) => Object.keys(settingsOf(s)).map(envName)),
  ]);
  return Object.keys(env)
    .filter((k) => k.startsWith('MUSTER_') && !known.has(k) && !k.startsWith('MUSTER_NODE_'))
    .map((k) => {
      const near = closest(
        k.slice('MUSTER_'.length),
        [...known].map((x) => x.slice('MUSTER_'.length)),
      );
      return near ? `${k} (did you mean MUSTER_${near}?)` : k;
    });
}

const configCheck = command({
  name: 'config check',
  describe: 'show the settings in force, with where each comes from, and check them as the commands do',
  scopes: ['config check', 'output'],
  examples: [
    ['$0 config check', 'the settings of this machine (file, MUSTER_* variables, defaults)'],
    ['$0 config check ./muster.json', 'check a file before installing it'],
  ],
  async run(o, ctx) {
    const explicit = o.file !== undefined || ctx.explicitConfig;
    const file = o.file ?? ctx.configFile ?? DEFAULT_CONFIG_FILE;
    const found = existsSync(file);
    const report: Record<Section, Resolved> = {} as Record<Section, Resolved>;
    try {
      readConfigFile(file); // every section, so a typo in another command's section is found too
    } catch (err) {
      if (explicit || found || !isMusterError(err)) return failed(err);
    }
    try {
      for (const section of FILE_SECTIONS)
        report[section] = resolveSettings([section], {}, { file, explicitFile: explicit });
    } catch (err) {
      return failed(err);
    }
    const warnings = unknownVariables(process.env).map((v) => `unknown variable ${v}: no setting reads it`);
    const settings = Object.fromEntries(
      FILE_SECTIONS.map((section) => {
        const r = report[section];
        const entries = Object.keys(r.sources).map((name) => {
          // A secret setting (the join token) shows only that it is set, and where from; a token pasted
          // into any other setting (a hook command, a mistaken MUSTER_TOKEN_FILE) is blanked out too.
          const secret = settingsOf(section)[name]!.secret;
          return [name, { value: secret ? '(secret)' : redactValue(r.raw[name]), source: r.sources[name]! }];
        });
        return [section, Object.fromEntries(entries)];
      }),
    ) as Record<Section, Record<string, { value: unknown; source: string }>>;
    if (o.json) {
      printJson({ file, found, ok: true, settings, warnings });
      return;
    }
    out(found ? `${file}: ok\n` : `${file}: not found; settings from the environment and defaults: ok\n`);
    for (const [section, values] of Object.entries(settings)) {
      for (const [name, { value, source }] of Object.entries(values)) {
        const shown = typeof value === 'string' ? (value === '' ? '""' : value) : JSON.stringify(value);
        out(`  ${section}.${name} = ${shown}  (${source})\n`);
      }
    }
    for (const w of warnings) process.stderr.write(`muster: warning: ${w}\n`);
  },
});

/** A value that fails its check is this command's finding: exit 1, one line. */
function failed(err: unknown): number {
  if (!isMusterError(err)) throw err;
  process.stderr.write(`muster: ${redactTokens(err.message)}\n`);
  return 1;
}

export const configCommands = [configCheck];
