/** `muster registrar`: runs the controller until SIGTERM/SIGINT (then drains and exits 0). */
import { promises as fs } from 'node:fs';
import type { Argv } from 'yargs';
import { MusterError } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { assertLabel, parseDuration } from '../common/names.js';
import { defaultAdminSocket, defaultRegistrarStateDir } from '../common/paths.js';
import { withSettings } from './settings.js';
import type { Autoregister } from '../registrar/policy.js';
// The registrar's modules (fastify, level, forge) load only when this command runs: operator commands
// and `muster join` start faster without them.
const loadRegistrar = () => import('../registrar/main.js');

export function registrarCommand(y: Argv): Argv {
  return y.command(
    'registrar',
    'run the registrar (the controller: CA, registry, policy, HTTPS API, admin socket)',
    (a) =>
      withSettings(a, 'registrar')
        .option('state-dir', { type: 'string', describe: 'store and CA key', defaultDescription: defaultRegistrarStateDir() })
        .option('listen', { type: 'string', default: '0.0.0.0:8443', describe: 'HTTPS API address HOST:PORT' })
        .option('cluster', { type: 'string', default: 'default', describe: 'the cluster this registrar serves' })
        .option('autoregister', { choices: ['local', 'any', 'off'] as const, default: 'local' as const, describe: 'whom install mode may accept' })
        .option('interface', { type: 'string', describe: 'IPv4 address of the interface to advertise on (and the local link)' })
        .option('mdns', { choices: ['on', 'off'] as const, default: 'on' as const, describe: 'advertise and browse over mDNS' })
        .option('parent', { type: 'string', describe: 'join a parent registrar as a tier registrar (URL or auto)' })
        .option('admin-socket', { type: 'string', describe: 'Unix socket of the admin API', defaultDescription: defaultAdminSocket() })
        .option('cert-lifetime', { type: 'string', default: '90d', describe: 'lifetime of node certificates' })
        .option('rate-limit', { type: 'number', default: 600, describe: 'requests per minute per client address' })
        .option('node-config', { type: 'string', describe: 'JSON file of config values for nodes: {"*": {...}, "<role>": {...}}' }),
    async (argv) => {
      if (argv.parent) throw new MusterError('MUSTER_ERR_USAGE', '--parent (tier registrars) is not available in this build yet');
      assertLabel('cluster', argv.cluster);
      const log = createLogger({ name: 'muster-registrar', fd: 1 });
      let nodeConfig: Record<string, Record<string, string>> | undefined;
      const nc = argv['node-config'] as unknown;
      if (typeof nc === 'string') nodeConfig = await readNodeConfig(nc);
      else if (nc && typeof nc === 'object') nodeConfig = nc as Record<string, Record<string, string>>; // inline in muster.json
      const fault = process.env.MUSTER_TEST_FAULT;
      // Signals first: a SIGTERM that arrives while starting stops the registrar once it is up.
      let stopRequested: string | undefined;
      let stop: (sig: string) => void = (sig) => (stopRequested = sig);
      const onSignal = (sig: string): void => stop(sig);
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      const { startRegistrar } = await loadRegistrar();
      const reg = await startRegistrar({
        stateDir: argv['state-dir'] ?? defaultRegistrarStateDir(),
        listen: argv.listen,
        cluster: argv.cluster,
        autoregister: argv.autoregister as Autoregister,
        adminSocket: argv['admin-socket'] ?? defaultAdminSocket(),
        log,
        certLifetimeMs: parseDuration(argv['cert-lifetime']),
        rateLimit: argv['rate-limit'],
        mdns: argv.mdns === 'on',
        ...(argv.interface ? { interface: argv.interface } : {}),
        ...(nodeConfig ? { nodeConfig } : {}),
        ...(fault
          ? {
              // Test hook (MUSTER_TEST_FAULT=after-accept|after-issue): die at that point like a power cut.
              fault: (point: string) => {
                if (point === fault) process.kill(process.pid, 'SIGKILL');
              },
            }
          : {}),
      });
      await new Promise<void>((resolve) => {
        stop = (sig: string): void => {
          log.info({ signal: sig }, 'stopping: draining requests');
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          void reg.close().then(resolve, (err) => {
            log.error({ err }, 'error while stopping');
            resolve();
          });
        };
        if (stopRequested) stop(stopRequested);
      });
      log.info('stopped');
    },
  );
}

async function readNodeConfig(file: string): Promise<Record<string, Record<string, string>>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (err) {
    throw new MusterError('MUSTER_ERR_CONFIG', `--node-config ${file}: ${(err as Error).message}`);
  }
  const ok =
    typeof parsed === 'object' &&
    parsed !== null &&
    Object.values(parsed).every((v) => typeof v === 'object' && v !== null && Object.values(v).every((s) => typeof s === 'string'));
  if (!ok) throw new MusterError('MUSTER_ERR_CONFIG', `--node-config ${file}: expected {"*": {"key": "value"}, "<role>": {...}} with string values`);
  return parsed as Record<string, Record<string, string>>;
}
