/**
 * `muster leave` (DESIGN "CLI": the node deprovisions itself): a signed leave to the registrar of its
 * bundle, then the local credentials are removed (node/leave.ts). Exit 0 when done; 1 when the node is
 * not registered or the registrar refuses, with nothing changed on the node.
 */
import { command } from './command.js';

export const leaveCommand = command({
  name: 'leave',
  describe: 'deprovision this node: revoke its certificate at the registrar and remove its credentials',
  scopes: ['leave'],
  examples: [
    ['$0 leave', 'leave the registrar this node is registered with, removing its key and credentials'],
    ['$0 leave --keep-key', 'the same, keeping node.key to join again with it'],
  ],
  async run(o) {
    const { createLogger } = await import('../common/log.js');
    const log = createLogger({ name: 'muster-leave', fd: 2 });
    const { runLeave } = await import('../node/leave.js');
    const r = await runLeave({
      stateDir: o['state-dir'],
      keepKey: o['keep-key'],
      log,
      ...(o.registrar ? { registrarUrl: o.registrar } : {}),
    });
    process.stdout.write(
      `left: ${r.name} (serial ${r.serial}) is removed at ${r.registrar}; ${r.removed.length} files removed${o['keep-key'] ? ', node.key kept' : ''}\n`,
    );
  },
});
