/**
 * The crash soak (issue 8 "Faults"): the registrar SIGKILLed at random instants 20 times during a
 * 500-node herd, then every promise of "exactly once" checked on the store (test/faults/crash-herd.ts:
 * one record and one certificate per node, the one it was given; no serial twice; install mode's --max
 * and the token's uses exact; state counters consistent). The short form (5 kills, 100 nodes) runs in
 * `npm test` (test/integration/crash-random.test.ts).
 *
 *   npm run build && npx vitest run --config bench/soak.config.ts
 *   SOAK_NODES=1000 SOAK_KILLS=40 npx vitest run --config bench/soak.config.ts
 *
 * 60 % of the nodes join with one token limited to exactly their number of uses, the others through
 * install mode (`--remote --max`, 80 fewer slots than nodes, at most 40 % fewer: those wait as pending).
 * Prints its counts; fails on any violation.
 */
import { expect, it } from 'vitest';
import { runCrashHerd } from '../test/faults/crash-herd.js';
import { tempDir } from '../test/helpers/registrar.js';

const NODES = Number(process.env.SOAK_NODES ?? 500);
const KILLS = Number(process.env.SOAK_KILLS ?? 20);

it(`soak: ${KILLS} SIGKILLs during a ${NODES}-node herd`, async () => {
  const tokenNodes = Math.round(NODES * 0.6);
  const installNodes = NODES - tokenNodes;
  const installMax = installNodes - Math.min(80, Math.floor(installNodes * 0.4));
  const t = tempDir('muster-soak-');
  const line = (s: string): boolean => process.stdout.write(`${s}\n`);
  try {
    line(
      `soak: ${NODES} nodes (${tokenNodes} token, ${installNodes} install mode --max ${installMax}), ${KILLS} kills`,
    );
    const r = await runCrashHerd({
      dir: t.dir,
      tokenNodes,
      installNodes,
      installMax,
      kills: KILLS,
      deadlineMs: 30 * 60_000,
      progress: (s) => line(`  ${s}`),
    });
    line('soak result:');
    for (const [k, v] of Object.entries(r)) {
      if (k !== 'violations') line(`  ${k.padEnd(16)} ${v}`);
    }
    line(`  violations       ${r.violations.length}`);
    for (const v of r.violations) line(`    ${v}`);
    expect(r.violations).toEqual([]);
    expect(r.kills).toBe(KILLS);
  } finally {
    t.cleanup();
  }
});
