/**
 * CLI start-up (issue 12, target 2: "`muster join` and the operator commands start within 100 ms of
 * `node -e 0`"). Spawns `node dist/cli/main.js` for commands that finish without a registrar and
 * times spawn -> exit, interleaved with `node -e 0` (the in-run reference) so that a change of load
 * during the run weighs on both alike. The figure is the median of a command minus the median of
 * the reference. Nothing is sent anywhere: the operator command asks a socket that does not exist.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { DIST, log, median, round } from './lib.js';

export interface CliStartCase {
  name: string;
  /** Median wall ms from spawn to exit. */
  medianMs: number;
  /** medianMs minus the reference's median. */
  overNodeMs: number;
}

export interface CliStartResult {
  runs: number;
  /** `node -e 0`: median wall ms from spawn to exit. */
  referenceMedianMs: number;
  cases: CliStartCase[];
}

const MAIN = path.join(DIST, 'cli', 'main.js');

/** The commands timed, and what a run must print to count (so that a broken CLI is not timed fast). */
const CASES: {
  name: string;
  args: string[];
  expect: { code: number; stream: 'stdout' | 'stderr'; text: string };
}[] = [
  { name: 'muster --help', args: [MAIN, '--help'], expect: { code: 0, stream: 'stdout', text: 'Commands:' } },
  {
    name: 'muster join --help',
    args: [MAIN, 'join', '--help'],
    expect: { code: 0, stream: 'stdout', text: 'muster join' },
  },
  {
    name: 'muster tokens list (no registrar)',
    args: [MAIN, 'tokens', 'list', '--admin-socket', '/nonexistent/muster-bench-admin.sock'],
    expect: { code: 1, stream: 'stderr', text: 'cannot reach the registrar' },
  },
];

function timeSpawn(
  args: string[],
): Promise<{ ms: number; code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      // No MUSTER_* from the caller's shell.
      env: { PATH: process.env.PATH ?? '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ ms: performance.now() - t0, code, stdout, stderr }));
  });
}

export async function benchCliStart(o: { runs: number }): Promise<CliStartResult> {
  const reference: number[] = [];
  const times = CASES.map(() => [] as number[]);
  // One warm-up round (file cache), not counted.
  for (let round_ = -1; round_ < o.runs; round_++) {
    const r = await timeSpawn(['-e', '0']);
    if (round_ >= 0) reference.push(r.ms);
    for (const [i, c] of CASES.entries()) {
      const x = await timeSpawn(c.args);
      const text = c.expect.stream === 'stdout' ? x.stdout : x.stderr;
      if (x.code !== c.expect.code || !text.includes(c.expect.text)) {
        throw new Error(
          `${c.name}: exit ${x.code}, expected ${c.expect.code} and "${c.expect.text}": ${(x.stderr || x.stdout).trim().slice(0, 200)}`,
        );
      }
      if (round_ >= 0) times[i]!.push(x.ms);
    }
  }
  const referenceMedianMs = median(reference);
  const cases = CASES.map((c, i) => {
    const medianMs = median(times[i]!);
    return { name: c.name, medianMs: round(medianMs, 1), overNodeMs: round(medianMs - referenceMedianMs, 1) };
  });
  log(
    `cli: node -e 0 ${referenceMedianMs.toFixed(0)} ms; ` +
      cases.map((c) => `${c.name} ${c.medianMs.toFixed(0)} ms (+${c.overNodeMs.toFixed(0)})`).join('; '),
  );
  return { runs: o.runs, referenceMedianMs: round(referenceMedianMs, 1), cases };
}
