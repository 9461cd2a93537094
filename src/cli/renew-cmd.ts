/**
 * `muster renew` (DESIGN "CLI", "Renewal"; run daily by muster-renew.timer): renews the node's
 * certificate once two thirds of its lifetime have passed (node/renew.ts), and rewrites config.json when
 * the registrar's config changed. Exit 0 when renewed or nothing was due; 3 when the registrar removed
 * the node (the timer's unit does not retry it: only the operator can undo a removal); 1 otherwise.
 */
import { isMusterError } from '../common/errors.js';
import { command } from './command.js';
import { JOIN_EXIT } from './exit-codes.js';

export const renewCommand = command({
  name: 'renew',
  describe: "renew this node's certificate at two thirds of its lifetime, and pick up a changed config",
  scopes: ['renew'],
  examples: [
    ['$0 renew', 'renew if two thirds of the lifetime have passed (what muster-renew.timer runs)'],
    [
      '$0 renew --now --on-changed "systemctl reload myapp"',
      'renew now; reload myapp if config.json changed',
    ],
    ['$0 renew --rotate-key', 'renew with a new node key'],
  ],
  async run(o) {
    const { createLogger } = await import('../common/log.js');
    const log = createLogger({ name: 'muster-renew', fd: 2 });
    const { runRenew } = await import('../node/renew.js');
    try {
      const r = await runRenew({
        stateDir: o['state-dir'],
        now: o.now,
        rotateKey: o['rotate-key'],
        log,
        ...(o['on-renewed'] ? { onRenewed: o['on-renewed'] } : {}),
        ...(o['on-changed'] ? { onChanged: o['on-changed'] } : {}),
      });
      process.stdout.write(
        r.renewed
          ? `renewed: ${r.name} serial ${r.serial}, valid until ${r.notAfter}, next renewal due ${r.due}${r.configChanged ? '; config.json changed' : ''}\n`
          : `not due: ${r.name} serial ${r.serial} renews after ${r.due} (valid until ${r.notAfter})\n`,
      );
      return 0;
    } catch (err) {
      if (isMusterError(err) && err.code === 'removed') {
        process.stderr.write(`muster: ${err.message}\n`);
        return JOIN_EXIT.refused;
      }
      throw err;
    }
  },
});
