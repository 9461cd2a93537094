#!/usr/bin/env node
/**
 * The muster command line: the only place that prints to the terminal or exits (CONVENTIONS layout).
 * Exit codes: 0 success, 1 failure with a one-line reason on stderr, 2 usage error; `muster join` has
 * its own documented codes (exit-codes.ts). The commands and their parsing are in cli.ts.
 */
import { hideBin } from 'yargs/helpers';
import { runCli } from './cli.js';

runCli(hideBin(process.argv)).then(
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
