/**
 * Exactly once through SIGKILLs at arbitrary instants (DESIGN "Exactly once"; issue 8 "Faults"), the
 * short form of the crash soak (the long form is bench/soak.ts, 20 kills in a 500-node herd): 100
 * nodes join (60 with a token limited to 60 uses, 40 through install mode --max 25) while the real
 * registrar is SIGKILLed 5 times at random instants and restarted on the same store. Every promise of
 * "exactly once" is then checked on the store (test/faults/crash-herd.ts): one record and one
 * certificate per node, the one it was given; no serial twice; --max and the token's uses exact; the
 * state counters agree with the index.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { tempDir } from '../helpers/registrar.js';
import { runCrashHerd } from '../faults/crash-herd.js';

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir('muster-herd-');
});
afterEach(() => t.cleanup());

it('5 SIGKILLs during a 100-node herd (token and install mode): each node once, no serial twice, --max and token uses exact', async () => {
  const r = await runCrashHerd({
    dir: t.dir,
    tokenNodes: 60,
    installNodes: 40,
    installMax: 25,
    kills: 5,
    deadlineMs: 75_000,
  });
  console.log(`crash herd: ${JSON.stringify({ ...r, violations: r.violations.length })}`);
  expect(r.violations).toEqual([]);
  expect(r.kills).toBe(5);
  // The kills hit a registrar that nodes were talking to (else this test proves nothing).
  expect(r.killsDuringHerd).toBe(5);
  expect(r.failedRequests).toBeGreaterThan(0);
  expect({
    certified: r.certified,
    pending: r.pending,
    tokenUses: r.tokenUses,
    installAccepted: r.installAccepted,
  }).toEqual({
    certified: 85,
    pending: 15,
    tokenUses: 60,
    installAccepted: 25,
  });
}, 120_000);
