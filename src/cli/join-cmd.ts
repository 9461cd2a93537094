/** `muster join`: the node agent, for boot-time units. Exit codes: see JOIN_EXIT (README "Exit codes"). */
import { promises as fs } from 'node:fs';
import type { Argv } from 'yargs';
import { MusterError } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { assertLabel, defaultNodeName, parseDuration } from '../common/names.js';
import { defaultNodeStateDir } from '../common/paths.js';
import { runJoin } from '../node/agent.js';
import { sourceOf, withSettings } from './settings.js';

/** A bad argument is a usage error (exit 2), whatever check found it. */
function usage(check: () => void): void {
  try {
    check();
  } catch (err) {
    throw new MusterError('MUSTER_ERR_USAGE', (err as Error).message);
  }
}

function usageValue<T>(get: () => T): T {
  try {
    return get();
  } catch (err) {
    throw new MusterError('MUSTER_ERR_USAGE', (err as Error).message);
  }
}

export function joinCommand(y: Argv): Argv {
  return y.command(
    'join',
    'register this machine with a registrar (exits 0 at once when already registered)',
    (a) =>
      withSettings(a, 'join')
        .option('registrar', { type: 'string', describe: 'registrar URL, e.g. https://10.0.0.1:8443' })
        .option('token', { type: 'string', describe: 'join token ID.SECRET (prefer --token-file or MUSTER_TOKEN)' })
        .option('token-file', { type: 'string', describe: 'file holding the join token' })
        .option('name', { type: 'string', describe: 'node name', defaultDescription: 'short host name' })
        .option('role', { type: 'string', default: 'node', describe: 'role to register as' })
        .option('cluster', { type: 'string', default: '', describe: 'cluster wanted (empty: any)' })
        .option('ca-fingerprint', { type: 'string', describe: "pin the registrar's CA (base64url SHA-256 of its certificate)" })
        .option('state-dir', { type: 'string', describe: 'where the key and credentials live', defaultDescription: defaultNodeStateDir() })
        .option('discovery-timeout', { type: 'string', default: '5s', describe: 'how long to look for a registrar by mDNS' })
        .option('mdns', { choices: ['on', 'off'] as const, default: 'on' as const, describe: 'advertise and browse over mDNS' })
        .option('interface', { type: 'string', describe: 'IPv4 address of the interface for mDNS' })
        .option('on-registered', { type: 'string', describe: 'shell command to run once registered' })
        .option('timeout', { type: 'string', describe: 'give up after this long (default: keep trying)' })
        .option('key-type', { choices: ['ec', 'rsa'] as const, default: 'ec' as const, describe: 'type of a new node key' }),
    async (argv) => {
      const log = createLogger({ name: 'muster-join', fd: 2 });
      const name = argv.name ?? defaultNodeName();
      usage(() => {
        assertLabel('node name', name);
        assertLabel('role', argv.role);
        if (argv.cluster) assertLabel('cluster', argv.cluster);
      });
      if (argv['ca-fingerprint'] !== undefined && !/^[A-Za-z0-9_-]{43}$/.test(argv['ca-fingerprint'])) {
        throw new MusterError('MUSTER_ERR_USAGE', '--ca-fingerprint must be 43 base64url characters (as `muster registrar` logs it)');
      }
      if (argv.token && argv['token-file']) {
        throw new MusterError('MUSTER_ERR_USAGE', `give either a token (${sourceOf('join', 'token')}) or a token file (${sourceOf('join', 'token-file')}), not both`);
      }
      let token = argv.token;
      if (argv['token-file']) {
        try {
          token = (await fs.readFile(argv['token-file'], 'utf8')).trim();
        } catch (err) {
          throw new MusterError('MUSTER_ERR_USAGE', `cannot read --token-file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      }
      const discoveryTimeoutMs = usageValue(() => parseDuration(argv['discovery-timeout']));
      const timeoutMs = argv.timeout ? usageValue(() => parseDuration(argv.timeout!)) : undefined;
      // SIGTERM/SIGINT: stop waiting, withdraw the advertisement (goodbye), exit 143/130.
      const stop = new AbortController();
      const onSignal = (sig: NodeJS.Signals): void => {
        log.info({ signal: sig }, 'stopping');
        stop.abort(new MusterError('MUSTER_ERR_TIMEOUT', `stopped by ${sig}`));
        process.exitCode = sig === 'SIGINT' ? 130 : 143;
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
      const result = await runJoin({
        name,
        role: argv.role,
        cluster: argv.cluster,
        stateDir: argv['state-dir'] ?? defaultNodeStateDir(),
        log,
        ...(argv.registrar ? { registrarUrl: argv.registrar } : {}),
        ...(token ? { token } : {}),
        ...(argv['ca-fingerprint'] ? { caFingerprint: argv['ca-fingerprint'] } : {}),
        ...(argv['on-registered'] ? { onRegistered: argv['on-registered'] } : {}),
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        ...(argv.interface ? { interface: argv.interface } : {}),
        keyType: argv['key-type'],
        mdns: argv.mdns === 'on',
        discoveryTimeoutMs,
        signal: stop.signal,
      });
      process.stdout.write(
        result.status === 'registered'
          ? `registered ${result.name}: certificate ${result.certFile} (serial ${result.serial}), CA ${result.caFile}\n`
          : `already registered as ${result.name} (serial ${result.serial})\n`,
      );
    },
  );
}
