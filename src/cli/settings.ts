/**
 * Bridges the settings schema (common/config.ts) to yargs: a command's builder takes its section's
 * values from the config file and the environment as defaults that its flags override.
 */
import type { Argv } from 'yargs';
import { configFileFrom, loadConfig, type LoadedConfig, type Section } from '../common/config.js';

let rawArgs: string[] = [];

/** main.ts hands over the raw arguments (for --config) before parsing. */
export function setRawArgs(args: string[]): void {
  rawArgs = args;
}

const loaded = new Map<Section, LoadedConfig>();

export function settingsFor(section: Section): LoadedConfig {
  let c = loaded.get(section);
  if (!c) {
    const { file, explicit } = configFileFrom(rawArgs);
    c = loadConfig(section, { ...(file ? { file } : {}), explicitFile: explicit });
    loaded.set(section, c);
  }
  return c;
}

/** Applies file and environment values of `section` under the command's flags. */
export function withSettings<T>(y: Argv<T>, section: Section): Argv<T> {
  return y.config(settingsFor(section).values as Record<string, unknown>);
}

/** Where a value came from, for messages: the file key, the variable, or the flag. */
export function sourceOf(section: Section, flag: string): string {
  return settingsFor(section).sources[flag] ?? `--${flag}`;
}
