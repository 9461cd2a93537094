/** `muster registrar`: runs the controller until SIGTERM/SIGINT (then drains and exits 0). */
import { promises as fs } from 'node:fs';
import { MusterError } from '../common/errors.js';
import { command } from './command.js';

// The registrar's modules (fastify, level, forge) load only when this command runs: operator commands
// and `muster join` start faster without them.
const loadRegistrar = () => import('../registrar/main.js');

export const registrarCommand = command({
  name: 'registrar',
  describe: 'run the registrar (the controller: CA, registry, policy, HTTPS API, admin socket)',
  scopes: ['registrar'],
  examples: [
    ['$0 registrar --cluster lab --interface 10.0.0.1', 'serve the cluster "lab" on the LAN of 10.0.0.1'],
  ],
  async run(o) {
    const { createLogger } = await import('../common/log.js');
    const log = createLogger({ name: 'muster-registrar', fd: 1 });
    const fault = process.env.MUSTER_TEST_FAULT;
    // Signals first: a SIGTERM that arrives while starting stops the registrar once it is up.
    let stopRequested: string | undefined;
    let stop: (sig: string) => void = (sig) => (stopRequested = sig);
    const onSignal = (sig: string): void => stop(sig);
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    const { startRegistrar } = await loadRegistrar();
    // A tier registrar (--parent, issue 11) waits for its parent's admission inside startRegistrar: a
    // signal meanwhile stops that wait.
    const waiting = new AbortController();
    let parent: Parameters<typeof startRegistrar>[0]['parent'];
    if (o.parent !== undefined) {
      parent = { url: o.parent, signal: waiting.signal, ...(await parentCredentials(o)) };
      stop = (sig) => {
        stopRequested = sig;
        waiting.abort(
          new MusterError('MUSTER_ERR_TIMEOUT', `stopped by ${sig} before the parent admitted this tier`),
        );
      };
    }
    const started = startRegistrar({
      stateDir: o['state-dir'],
      listen: o.listen,
      cluster: o.cluster,
      autoregister: o.autoregister,
      adminSocket: o['admin-socket'],
      log,
      certLifetimeMs: o['cert-lifetime'],
      ...(o['role-lifetime'] ? { roleLifetimesMs: o['role-lifetime'] } : {}),
      rateLimit: o['rate-limit'],
      heardTtlMs: o['heard-ttl'],
      pendingTtlMs: o['pending-ttl'],
      unackedTtlMs: o['unacked-ttl'],
      eventRetention: o['event-retention'],
      maxFailures: o['max-failures'],
      store: o.store,
      ...(o['policy-exec']
        ? {
            policyExec: o['policy-exec'],
            policyTimeoutMs: o['policy-timeout'],
            policyConcurrency: o['policy-concurrency'],
          }
        : {}),
      ...(o['singleton-role'] ? { singletonRoles: o['singleton-role'] } : {}),
      ...(o['admin-listen'] ? { adminListen: o['admin-listen'] } : {}),
      mdns: o.mdns === 'on',
      ...(parent ? { parent } : {}),
      ...(o.interface ? { interface: o.interface } : {}),
      ...(o['node-config'] ? { nodeConfig: o['node-config'] } : {}),
      ...(fault
        ? {
            // Test hook (MUSTER_TEST_FAULT=after-accept|after-issue): die at that point like a power cut.
            fault: (point: string) => {
              if (point === fault) process.kill(process.pid, 'SIGKILL');
            },
          }
        : {}),
    });
    let reg: Awaited<typeof started>;
    try {
      reg = await started;
    } catch (err) {
      // Stopped while the parent had not admitted this tier yet: a clean stop, not a failure.
      if (waiting.signal.aborted) {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        log.info({ signal: stopRequested }, 'stopped before the parent admitted this tier');
        return;
      }
      throw err;
    }
    let fatal: Error | undefined;
    await new Promise<void>((resolve) => {
      // A store that failed a write (disk full) cannot decide anything more: stop with exit 1 so that
      // the unit's Restart= brings the registrar back once the disk has room (issue 8, faults).
      void reg.fatal.then((err) => {
        fatal = err;
        stop('store failure');
      });
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
    if (fatal) throw fatal;
  },
});

/** The tier's own join credentials (--parent-token or --parent-token-file, --parent-ca-fingerprint). */
async function parentCredentials(o: {
  'parent-token'?: string;
  'parent-token-file'?: string;
  'parent-ca-fingerprint'?: string;
}): Promise<{ token?: string; caFingerprint?: string }> {
  if (o['parent-token'] !== undefined && o['parent-token-file'] !== undefined)
    throw new MusterError('MUSTER_ERR_USAGE', 'give either --parent-token or --parent-token-file, not both');
  let token = o['parent-token'];
  if (o['parent-token-file'] !== undefined) {
    try {
      token = (await fs.readFile(o['parent-token-file'], 'utf8')).trim();
    } catch (err) {
      throw new MusterError(
        'MUSTER_ERR_USAGE',
        `--parent-token-file ${o['parent-token-file']} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
  }
  return {
    ...(token !== undefined ? { token } : {}),
    ...(o['parent-ca-fingerprint'] ? { caFingerprint: o['parent-ca-fingerprint'] } : {}),
  };
}
