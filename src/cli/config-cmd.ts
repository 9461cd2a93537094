/** `muster config check [FILE]`: validates a config file and shows the settings in force, with sources. */
import type { Argv } from 'yargs';
import { configFileFrom, DEFAULT_CONFIG_FILE, loadConfig, readConfigFile, SETTINGS, type Section } from '../common/config.js';
import { MusterError } from '../common/errors.js';

export function configCommand(y: Argv): Argv {
  return y.command('config', 'check the configuration', (a) =>
    a
      .command(
        'check [file]',
        'validate a config file (default: --config, MUSTER_CONFIG, or /etc/muster/muster.json) and the MUSTER_* variables',
        (b) =>
          b
            .positional('file', { type: 'string' })
            .option('json', { type: 'boolean', default: false, describe: 'machine-readable output' }),
        (argv) => {
          const given = argv.file ? { file: argv.file, explicit: true } : configFileFrom(process.argv.slice(2));
          const file = given.file ?? DEFAULT_CONFIG_FILE;
          readConfigFile(file); // every section, so a typo in another command's section is found too
          const report: Record<string, Record<string, { value: unknown; source: string }>> = {};
          for (const section of Object.keys(SETTINGS) as Section[]) {
            const c = loadConfig(section, { file, explicitFile: true });
            report[section] = Object.fromEntries(Object.entries(c.values).map(([k, v]) => [k, { value: v, source: c.sources[k]! }]));
          }
          if (argv.json) {
            process.stdout.write(JSON.stringify({ file, ok: true, settings: report }, null, 2) + '\n');
            return;
          }
          process.stdout.write(`${file}: ok\n`);
          for (const [section, values] of Object.entries(report)) {
            for (const [flag, { value, source }] of Object.entries(values)) {
              const shown = flag === 'token' ? '(secret)' : typeof value === 'string' ? value : JSON.stringify(value);
              process.stdout.write(`  ${section}.${flag} = ${shown}  (${source})\n`);
            }
          }
        },
      )
      .demandCommand(1, 'say check')
      .fail((msg, err) => {
        if (err) throw err;
        throw new MusterError('MUSTER_ERR_USAGE', msg);
      }),
  );
}
