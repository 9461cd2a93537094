/** `muster join`: the node agent, for boot-time units. Exit codes: JOIN_EXIT (exit-codes.ts). */
import { promises as fs } from 'node:fs';
import { MusterError } from '../common/errors.js';
import { parseToken } from '../common/proof.js';
import type { EarlyDiscovery } from '../node/early-discovery.js';
import { command } from './command.js';

// The node agent (and its mDNS stack) loads only when this command runs.
const loadAgent = () => import('../node/agent.js');
const loadEarlyDiscovery = () => import('../node/early-discovery.js');

export const joinCommand = command({
  name: 'join',
  describe: 'register this machine with a registrar (exits 0 at once when already registered)',
  scopes: ['join'],
  examples: [
    ['$0 join', 'find the registrar on the LAN by mDNS and join as the host name'],
    [
      'MUSTER_TOKEN=ID.SECRET $0 join --registrar https://10.0.0.1:8443 --ca-fingerprint FP',
      'join a remote registrar with a token',
    ],
    ['$0 join --name-from machine-id', 'join as <host>-<6 chars of /etc/machine-id> (cloned images)'],
  ],
  async run(o, ctx) {
    // Checks that need the filesystem, still before anything is made: no key, no state dir, no packet.
    if (o.token !== undefined && o['token-file'] !== undefined) {
      throw new MusterError(
        'MUSTER_ERR_USAGE',
        `give either a token (${ctx.sources.token}) or a token file (${ctx.sources['token-file']}), not both`,
      );
    }
    let token = o.token;
    if (o['token-file'] !== undefined) {
      try {
        token = (await fs.readFile(o['token-file'], 'utf8')).trim();
      } catch (err) {
        throw new MusterError(
          'MUSTER_ERR_USAGE',
          `${ctx.sources['token-file']} ${o['token-file']} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
        );
      }
    }
    if (token !== undefined && !parseToken(token)) {
      const from =
        o['token-file'] !== undefined
          ? `the token in ${o['token-file']}`
          : `the token (${ctx.sources.token})`;
      throw new MusterError(
        'MUSTER_ERR_USAGE',
        `${from} is not a join token: expected ID.SECRET as \`muster tokens create\` prints it`,
      );
    }

    const { createLogger } = await import('../common/log.js');
    const log = createLogger({ name: 'muster-join', fd: 2 });
    // SIGTERM/SIGINT: stop waiting, withdraw the advertisement (goodbye), exit 143/130.
    const stop = new AbortController();
    const onSignal = (sig: NodeJS.Signals): void => {
      log.info({ signal: sig }, 'stopping');
      stop.abort(new MusterError('MUSTER_ERR_TIMEOUT', `stopped by ${sig}`));
      process.exitCode = sig === 'SIGINT' ? 130 : 143;
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    // A fresh node starts listening for its registrar before the agent loads: the 150 ms it listens
    // for a second registrar then passes while the rest loads and the key is made (early-discovery.ts).
    let early: EarlyDiscovery | undefined;
    if (o.mdns === 'on') {
      const { startEarlyDiscovery } = await loadEarlyDiscovery();
      early = await startEarlyDiscovery({
        stateDir: o['state-dir'],
        cluster: o.cluster,
        log,
        timeoutMs: o['discovery-timeout'],
        ...(o.interface ? { interface: o.interface } : {}),
        ...(o.registrar ? { registrarUrl: o.registrar } : {}),
        ...(o['ca-fingerprint'] ? { caFingerprint: o['ca-fingerprint'] } : {}),
        ...(token ? { token } : {}),
      });
    }
    const { runJoin } = await loadAgent();
    // --name (flag, MUSTER_NAME or the file) wins over --name-from; the default is the host name.
    const nameFrom =
      ctx.sources.name === 'default' && o['name-from'] !== 'hostname' ? o['name-from'] : undefined;
    // At a terminal the operator may choose among several registrars; a boot job never guesses.
    const { terminalChoice } = await import('./choice-prompt.js');
    const choose = terminalChoice();
    const result = await runJoin({
      name: o.name,
      ...(nameFrom ? { nameFrom } : {}),
      role: o.role,
      cluster: o.cluster,
      stateDir: o['state-dir'],
      log,
      ...(o.registrar ? { registrarUrl: o.registrar } : {}),
      ...(token ? { token } : {}),
      ...(o['ca-fingerprint'] ? { caFingerprint: o['ca-fingerprint'] } : {}),
      ...(o['on-registered'] ? { onRegistered: o['on-registered'] } : {}),
      ...(o['on-changed'] ? { onChanged: o['on-changed'] } : {}),
      ...(o.timeout !== undefined ? { timeoutMs: o.timeout } : {}),
      ...(o.interface ? { interface: o.interface } : {}),
      keyType: o['key-type'],
      mdns: o.mdns === 'on',
      discoveryTimeoutMs: o['discovery-timeout'],
      signal: stop.signal,
      ...(choose ? { choose } : {}),
      ...(early ? { early } : {}),
    });
    process.stdout.write(
      result.status === 'registered'
        ? `registered ${result.name}: certificate ${result.certFile} (serial ${result.serial}), CA ${result.caFile}\n`
        : `already registered as ${result.name} (serial ${result.serial})\n`,
    );
  },
});
