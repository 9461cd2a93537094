/**
 * The person at the terminal chooses among registrars (`muster join`, issue 11 item 2; node/choice.ts
 * decides when to ask). Offered only when stdin and stderr are both terminals: a boot job (stdin
 * /dev/null, output to the journal) is never asked and never guesses. The prompt goes to stderr, so
 * stdout keeps only the command's result.
 */
import readline from 'node:readline';
import { describeChoice, type AskChoice } from '../node/choice.js';

/** Wrong answers allowed before the prompt gives up (as if cancelled). */
const TRIES = 3;

interface Tty {
  isTTY?: boolean;
}

/** The terminal's AskChoice, or undefined when stdin or stderr is not a terminal. */
export function terminalChoice(
  input: NodeJS.ReadableStream & Tty = process.stdin,
  output: NodeJS.WritableStream & Tty = process.stderr,
): AskChoice | undefined {
  if (!input.isTTY || !output.isTTY) return undefined;
  return (choices, signal) =>
    new Promise((resolve) => {
      const n = choices.length;
      output.write(
        `\nSeveral registrars answer on this network and nothing pins one (--ca-fingerprint, --cluster):\n` +
          choices.map((c, i) => `  ${i + 1}) ${describeChoice(c)}\n`).join(''),
      );
      const rl = readline.createInterface({ input, output, terminal: true });
      let settled = false;
      const finish = (v: number | undefined): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        rl.close();
        resolve(v);
      };
      const onAbort = (): void => finish(undefined);
      signal?.addEventListener('abort', onAbort, { once: true });
      rl.on('close', () => finish(undefined)); // end of input (Ctrl-D)
      // In terminal mode readline takes Ctrl-C for itself: hand it back to the command's handler.
      rl.on('SIGINT', () => {
        finish(undefined);
        process.kill(process.pid, 'SIGINT');
      });
      let tries = 0;
      const ask = (): void =>
        rl.question(`Join which one? [1-${n}, empty to cancel]: `, (answer) => {
          const a = answer.trim();
          if (a === '') return finish(undefined);
          const k = /^[0-9]{1,3}$/.test(a) ? Number(a) : NaN;
          if (k >= 1 && k <= n) return finish(k - 1);
          if (++tries >= TRIES) return finish(undefined);
          output.write(`Answer a number from 1 to ${n}, or nothing to cancel.\n`);
          ask();
        });
      if (signal?.aborted) finish(undefined);
      else ask();
    });
}
