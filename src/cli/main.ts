#!/usr/bin/env node
/**
 * The muster command line: the only place that prints to the terminal or exits (CONVENTIONS layout).
 * Exit codes: 0 success, 1 failure with a one-line reason on stderr, 2 usage error; `muster join`
 * has its own documented codes (node/agent.ts JOIN_EXIT).
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { isMusterError } from '../common/errors.js';
import { VERSION } from '../common/version.js';
import { exitCodeFor } from '../node/agent.js';
import { AdminError } from './admin-client.js';
import { configCommand } from './config-cmd.js';
import { installUnitsCommand } from './install-units.js';
import { setRawArgs } from './settings.js';
import { joinCommand } from './join-cmd.js';
import { operatorCommands } from './operator-cmd.js';
import { registrarCommand } from './registrar-cmd.js';


/**
 * A CA fingerprint is base64url and may begin with '-', which a parser takes for a flag
 * ("--ca-fingerprint -0P1V..."): glue such values to their option before parsing.
 */
export function glueDashValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (a === '--ca-fingerprint' && next !== undefined && next.startsWith('-') && /^[A-Za-z0-9_-]{43}$/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

async function main(rawArgv: string[]): Promise<number> {
  const argv = glueDashValues(rawArgv);
  let usageError: string | undefined;
  setRawArgs(argv);
  const parser = configCommand(installUnitsCommand(operatorCommands(joinCommand(registrarCommand(yargs(argv))))))
    .option('config', { type: 'string', global: true, describe: 'config file', defaultDescription: '/etc/muster/muster.json' })
    .scriptName('muster')
    .usage('$0 <command>\n\nZero-configuration node registration.')
    .version(VERSION)
    .strict()
    .demandCommand(1, 'name a command')
    .recommendCommands()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      if (err) throw err;
      usageError = msg;
    })
    .help();
  try {
    await parser.parseAsync();
  } catch (err) {
    const isJoin = argv[0] === 'join';
    if (isMusterError(err)) {
      process.stderr.write(`muster: ${err.message}\n`);
      if (isJoin && typeof process.exitCode === 'number' && process.exitCode >= 128) return process.exitCode; // stopped by a signal
      if (isJoin) return exitCodeFor(err);
      if (argv[0] === 'config') return 1; // `config check` found a problem: a failure, not a usage error
      return ['MUSTER_ERR_USAGE', 'MUSTER_ERR_CONFIG', 'invalid_name'].includes(err.code) ? 2 : 1;
    }
    if (err instanceof AdminError) {
      process.stderr.write(`muster: ${err.message}\n`);
      return err.status === 400 ? 2 : 1;
    }
    process.stderr.write(`muster: ${(err as Error).message ?? String(err)}\n`);
    return 1;
  }
  if (usageError !== undefined) {
    process.stderr.write(`muster: ${usageError}\nTry 'muster --help'.\n`);
    return 2;
  }
  return 0;
}

main(hideBin(process.argv)).then(
  (code) => {
    process.exitCode = code;
    // Every command is done here (the registrar returns once it has stopped).
    setImmediate(() => process.exit(code));
  },
  (err) => {
    process.stderr.write(`muster: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
