/**
 * One command of the CLI: its name, the settings it takes (scopes of the schema in common/config.ts),
 * and its action. main.ts parses and validates the whole command line before it runs any action
 * (issue 14, "parse, then act"): an action receives only values that passed their parsers.
 */
import type { Scope, ValuesOf } from '../common/config.js';

export interface Context {
  /** Where each value came from ("--token", "environment MUSTER_TOKEN", "default"), for messages. */
  sources: Readonly<Record<string, string>>;
  /** The config file the settings were read from, and whether it was named (--config, MUSTER_CONFIG). */
  configFile: string | undefined;
  explicitConfig: boolean;
}

export interface CommandSpec<S extends readonly Scope[] = readonly Scope[]> {
  /** The words that select it: "nodes remove". */
  name: string;
  describe: string;
  scopes: S;
  /** Usage examples for --help. */
  examples?: [string, string][];
  /**
   * Runs once every value is valid. Nothing before this point writes, sends or starts anything.
   * May return an exit code (default 0).
   */
  run(values: ValuesOf<S>, ctx: Context): Promise<number | void>;
}

/** Keeps the scopes' literal types so that `run` sees typed values. */
export function command<const S extends readonly Scope[]>(spec: CommandSpec<S>): CommandSpec {
  return spec as unknown as CommandSpec;
}

/** Command groups (`muster nodes ...`) and what they are for. */
export const GROUPS: Record<string, string> = {
  'install-mode': 'open or close install mode (accept nodes on the local link without a token)',
  tokens: 'manage join tokens',
  nodes: 'list, inspect, approve, reject, remove, pre-approve, rebuild, ban and group nodes',
  groups: 'list node groups',
  config: 'check the configuration',
  admin: 'the admin web page (registrar --admin-listen)',
};
