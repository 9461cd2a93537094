/**
 * `muster join`'s choice among registrars (issue 11, item 2; src/node/choice.ts, src/cli/choice-prompt.ts):
 * one CA and cluster is no choice (no prompt); several with nothing pinned is a choice for a person at
 * a terminal, and an error a boot job logs and retries (DESIGN "Discovery": never a silent pick).
 */
import { describe, expect, it, vi } from 'vitest';
import { PassThrough } from 'node:stream';
import { createHash } from 'node:crypto';
import { isMusterError } from '../../src/common/errors.js';
import { exitCodeFor, JOIN_EXIT } from '../../src/cli/exit-codes.js';
import { terminalChoice } from '../../src/cli/choice-prompt.js';
import { AmbiguousError, chooseRegistrar, MAX_CHOICES, type AskChoice } from '../../src/node/choice.js';
import type { Candidate } from '../../src/node/discovery.js';
import { retryable } from '../../src/node/join-loop.js';

const fp = (s: string): string => createHash('sha256').update(s).digest('base64url');
const CA_A = fp('ca-a');
const CA_B = fp('ca-b');

const cand = (id: string, ca: string, cluster: string, ip: string, role = 'main'): Candidate => ({
  id,
  url: `https://${ip}:8443`,
  role,
  cluster,
  ca,
  mode: 'open',
  addresses: [ip],
});

const A = cand('reg-a', CA_A, 'red', '198.18.0.2');
const A2 = cand('reg-a2', CA_A, 'red', '198.18.0.3'); // another registrar of the same CA and cluster
const B = cand('reg-b', CA_B, 'blue', '198.18.0.4');
const TIER = cand('tier-1', CA_A, 'edge', '198.18.0.5', 'cluster'); // same root CA, another cluster

const errorOf = async (p: Promise<unknown>): Promise<Error> => {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('no error');
};

describe('chooseRegistrar', () => {
  it('one registrar, or several of one CA and cluster: no prompt, all of them tried', async () => {
    const ask = vi.fn<AskChoice>();
    expect(await chooseRegistrar([A], { ask })).toEqual({ candidates: [A] });
    expect(await chooseRegistrar([A, A2], { ask })).toEqual({ candidates: [A, A2] });
    expect(await chooseRegistrar([], { ask })).toEqual({ candidates: [] });
    expect(ask).not.toHaveBeenCalled();
  });

  it('pinned: discovery kept only the pinned CA, and one cluster of it is no choice', async () => {
    const ask = vi.fn<AskChoice>();
    expect(await chooseRegistrar([A, A2], { trusted: CA_A, ask })).toEqual({ candidates: [A, A2] });
    expect(ask).not.toHaveBeenCalled();
  });

  it('a main and a tier registrar of one root CA are two choices only because their clusters differ', async () => {
    const ask = vi.fn<AskChoice>().mockResolvedValue(1);
    const r = await chooseRegistrar([A, TIER, A2], { ask });
    expect(ask).toHaveBeenCalledTimes(1);
    expect(ask.mock.calls[0]![0]).toEqual([A, TIER]); // one choice per CA and cluster, in the order heard
    expect(r).toEqual({ candidates: [TIER], chosen: TIER });
    // Even with the CA pinned, two clusters of it remain a choice.
    const err = await errorOf(chooseRegistrar([A, TIER], { trusted: CA_A }));
    expect(err.message).toMatch(/found 2 registrars serving different clusters and no --cluster is set/);
    expect(err.message).toContain('tier-1 at https://198.18.0.5:8443 (tier registrar, cluster edge');
  });

  it('the chosen group is returned whole: every registrar of that CA and cluster is tried', async () => {
    const r = await chooseRegistrar([A, B, A2], { ask: async () => 0 });
    expect(r).toEqual({ candidates: [A, A2], chosen: A });
  });

  it('nobody to ask (a boot job): MUSTER_ERR_AMBIGUOUS, retried by the join loop, naming both CAs and how to pin', async () => {
    const err = await errorOf(chooseRegistrar([A, B]));
    expect(err).toBeInstanceOf(AmbiguousError);
    expect(isMusterError(err, 'MUSTER_ERR_AMBIGUOUS')).toBe(true);
    expect(retryable(err)).toBe(true);
    expect(err.message).toBe(
      `found 2 registrars with different CAs and no CA is pinned: reg-a at https://198.18.0.2:8443 (cluster red, CA ${CA_A}, mode open); ` +
        `reg-b at https://198.18.0.4:8443 (cluster blue, CA ${CA_B}, mode open). ` +
        'Pin the right one with --ca-fingerprint, or choose with --cluster.',
    );
  });

  it.each([
    ['cancelled', undefined],
    ['a number not offered', 2],
    ['a negative number', -1],
    ['not a whole number', 0.5],
  ])('%s: MUSTER_ERR_NOT_CHOSEN, not retried, exit 5, with the list and how to pin', async (_w, answer) => {
    const err = await errorOf(chooseRegistrar([A, B], { ask: async () => answer }));
    expect(isMusterError(err, 'MUSTER_ERR_NOT_CHOSEN')).toBe(true);
    expect(retryable(err)).toBe(false);
    expect(exitCodeFor(err)).toBe(JOIN_EXIT.mismatch);
    expect(err.message).toContain(CA_A);
    expect(err.message).toContain(CA_B);
    expect(err.message).toMatch(/--ca-fingerprint/);
  });

  it('the signal aborted while asking: the abort reason, not a choice', async () => {
    const stop = new AbortController();
    const err = await errorOf(
      chooseRegistrar([A, B], {
        signal: stop.signal,
        ask: async () => {
          stop.abort(new Error('stopped by SIGTERM'));
          return 0;
        },
      }),
    );
    expect(err.message).toBe('stopped by SIGTERM');
  });

  it('a flood of advertisements offers MAX_CHOICES at most, and says how many more', async () => {
    const many = Array.from({ length: MAX_CHOICES + 3 }, (_, i) =>
      cand(`r${i}`, fp(`ca-${i}`), 'red', `198.18.1.${i + 1}`),
    );
    const ask = vi.fn<AskChoice>().mockResolvedValue(undefined);
    const err = await errorOf(chooseRegistrar(many, { ask }));
    expect(ask.mock.calls[0]![0]).toHaveLength(MAX_CHOICES);
    expect(err.message).toMatch(/found 12 registrars .*; and 3 more\./);
  });
});

describe('the terminal prompt', () => {
  /** A fake terminal: stdin and stderr that say they are TTYs. */
  function tty(): {
    input: PassThrough & { isTTY: boolean };
    output: PassThrough & { isTTY: boolean };
    text: () => string;
  } {
    const input = Object.assign(new PassThrough(), { isTTY: true });
    const output = Object.assign(new PassThrough(), { isTTY: true });
    let text = '';
    output.on('data', (c: Buffer) => (text += c.toString()));
    return { input, output, text: () => text };
  }

  it('is offered only when stdin and stderr are terminals (a boot job is never asked)', () => {
    const t = tty();
    expect(terminalChoice(Object.assign(new PassThrough(), { isTTY: false }), t.output)).toBeUndefined();
    expect(terminalChoice(t.input, Object.assign(new PassThrough(), { isTTY: false }))).toBeUndefined();
    expect(terminalChoice(t.input, t.output)).toBeTypeOf('function');
  });

  it('lists the choices numbered and takes a number', async () => {
    const t = tty();
    const asked = terminalChoice(t.input, t.output)!([A, B]);
    t.input.write('2\r');
    expect(await asked).toBe(1);
    expect(t.text()).toContain(`1) reg-a at https://198.18.0.2:8443 (cluster red, CA ${CA_A}, mode open)`);
    expect(t.text()).toContain('2) reg-b at https://198.18.0.4:8443');
    expect(t.text()).toContain('Join which one? [1-2, empty to cancel]');
  });

  it('an empty answer or end of input cancels', async () => {
    const t = tty();
    const empty = terminalChoice(t.input, t.output)!([A, B]);
    t.input.write('\r');
    expect(await empty).toBeUndefined();
    const t2 = tty();
    const eof = terminalChoice(t2.input, t2.output)!([A, B]);
    t2.input.end();
    expect(await eof).toBeUndefined();
  });

  it('a wrong answer is asked again; three wrong answers cancel', async () => {
    const t = tty();
    const again = terminalChoice(t.input, t.output)!([A, B]);
    t.input.write('7\r');
    await new Promise((r) => setImmediate(r));
    t.input.write('1\r');
    expect(await again).toBe(0);
    expect(t.text()).toContain('Answer a number from 1 to 2, or nothing to cancel.');
    const t2 = tty();
    const never = terminalChoice(t2.input, t2.output)!([A, B]);
    for (const a of ['x', '0', '3']) {
      t2.input.write(`${a}\r`);
      await new Promise((r) => setImmediate(r));
    }
    expect(await never).toBeUndefined();
  });

  it('the signal aborting closes the prompt without a choice', async () => {
    const t = tty();
    const stop = new AbortController();
    const asked = terminalChoice(t.input, t.output)!([A, B], stop.signal);
    stop.abort();
    expect(await asked).toBeUndefined();
  });
});
