/**
 * `muster discover`'s command line (issue 11, item 2): parsed and validated in process, exactly as
 * `muster` does before it acts, and once through the real compiled CLI (refused before anything
 * starts; its --interface is loopback all the same, so that not even a bug could send mDNS on a real
 * interface).
 */
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/cli/cli.js';
import { EXIT, exitCodeForCommand } from '../../src/cli/exit-codes.js';
import { isMusterError } from '../../src/common/errors.js';
import { muster } from '../helpers/cli.js';

const refused = async (args: string[]): Promise<Error> => {
  try {
    await parseCommandLine(args);
  } catch (err) {
    return err as Error;
  }
  throw new Error(`${args.join(' ')} was accepted`);
};

describe('muster discover: flags', () => {
  it('defaults: 2 s, all interfaces, every cluster, text', async () => {
    const p = await parseCommandLine(['discover']);
    expect(p!.spec.name).toBe('discover');
    expect(p!.values).toMatchObject({ timeout: 2000, json: false });
    expect(p!.values.interface).toBeUndefined();
    expect(p!.values.cluster).toBeUndefined();
    const all = await parseCommandLine([
      'discover',
      '--json',
      '--timeout',
      '5s',
      '--interface',
      '198.18.0.5',
      '--cluster',
      'edge',
    ]);
    expect(all!.values).toMatchObject({
      timeout: 5000,
      json: true,
      interface: '198.18.0.5',
      cluster: 'edge',
    });
  });

  it.each([
    [['--timeout', '0s'], /--timeout must be between 1s and 1m/],
    [['--timeout', '2h'], /--timeout must be between 1s and 1m/],
    [['--timeout', 'soon'], /--timeout must be/],
    [['--timeout'], /--timeout/],
    [['--interface', 'eth0'], /--interface/],
    [['--cluster', 'Not A Label'], /--cluster must be a DNS label/],
    [['--timout', '5s'], /no flag --timout \(did you mean --timeout\?\)/],
  ])('discover %j is a usage error (exit 2)', async (args, message) => {
    const err = await refused(['discover', ...args]);
    expect(isMusterError(err, 'MUSTER_ERR_USAGE'), err.message).toBe(true);
    expect(err.message).toMatch(message);
    expect(exitCodeForCommand(err)).toBe(EXIT.usage);
  });

  it('the real CLI: a bad --timeout exits 2 with one line on stderr, and prints nothing', () => {
    const r = muster(['discover', '--timeout', '0s', '--interface', '127.0.0.1', '--json']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toEqual(['muster: --timeout must be between 1s and 1m, not "0s"']);
  });
});
