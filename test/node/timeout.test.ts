/**
 * `muster join --timeout` bounds the whole run, long poll included (issue 14 item 6): a node left
 * pending by a real registrar gives up at its deadline with exit 7, not when its 30 s long poll would
 * have come back.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { isMusterError } from '../../src/common/errors.js';
import { musterAsync } from '../helpers/cli.js';
import { joinNode, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar;

beforeEach(async () => {
  t = tempDir();
  // No token, no install mode: every node stays pending, its long poll held for the full wait.
  reg = await startTestRegistrar(t.dir, { mdns: false });
});
afterEach(async () => {
  await reg?.close();
  t.cleanup();
});

const stateOf = async (name: string): Promise<string> =>
  (await reg.admin.request<{ node: { state: string } }>('GET', `/v1/admin/nodes/${name}`)).node.state;

describe('--timeout', () => {
  it('muster join --timeout 2s exits 7 at its deadline while a 30 s long poll is in flight', async () => {
    const dir = path.join(t.dir, 'node');
    const t0 = Date.now();
    const r = await musterAsync([
      'join',
      '--registrar',
      reg.url,
      '--name',
      'slow-1',
      '--state-dir',
      dir,
      '--mdns',
      'off',
      '--timeout',
      '2s',
    ]);
    const elapsed = Date.now() - t0;
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toMatch(/not registered after 2 s/);
    // It did ask and was waiting (pending), and it ended well before the 30 s poll would have.
    expect(await stateOf('slow-1')).toBe('pending');
    expect(elapsed).toBeLessThan(15_000);
    // Nothing but its key was written.
    expect(readdirSync(dir)).toEqual(['node.key']);
  });

  it('in process: the long poll asks for no more than the time left and ends in MUSTER_ERR_TIMEOUT', async () => {
    const t0 = Date.now();
    const err = await joinNode(reg, path.join(t.dir, 'node'), {
      name: 'slow-2',
      timeoutMs: 2_000,
      waitS: 30,
    }).catch((e: unknown) => e);
    expect(isMusterError(err, 'MUSTER_ERR_TIMEOUT')).toBe(true);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(await stateOf('slow-2')).toBe('pending');
  });
});
