/**
 * The admin web page opens its event stream on the last events of the log. On etcd, sequence numbers
 * are the commit's revision x 256 plus the event's place (issue 12, target 6), so "the last 50" is
 * not `last - 50`: tailStart widens the window until it holds them.
 */
import { expect, it } from 'vitest';
import { tailStart } from '../../src/registrar/admin-web.js';

function log(seqs: number[]) {
  return {
    lastEventSeq: async () => seqs.at(-1) ?? 0,
    listEvents: async (after: number, limit: number) =>
      seqs
        .filter((s) => s > after)
        .slice(0, limit)
        .map((seq) => ({ seq }) as never),
  };
}
const shown = async (seqs: number[], n: number) => {
  const after = await tailStart(log(seqs), n);
  return seqs.filter((s) => s > after);
};

it('dense numbers (level, memory): exactly the last n', async () => {
  const seqs = Array.from({ length: 500 }, (_, i) => i + 1);
  expect(await shown(seqs, 50)).toEqual(seqs.slice(-50));
});

it('sparse numbers (etcd: revision x 256 + place): still the last n, not only the last commit', async () => {
  // 300 commits of one or two events each, revisions 1,000 apart.
  const seqs: number[] = [];
  for (let r = 1; r <= 300; r++) {
    seqs.push(r * 1000 * 256);
    if (r % 2) seqs.push(r * 1000 * 256 + 1);
  }
  const got = await shown(seqs, 50);
  expect(got.slice(-50)).toEqual(seqs.slice(-50));
  expect(got.length).toBeLessThanOrEqual(2 * 50 + 2); // the window doubles: at most about twice n
});

it('fewer events than n, or none: from the start of the log', async () => {
  expect(await tailStart(log([256, 512, 99_999]), 50)).toBe(0);
  expect(await tailStart(log([]), 50)).toBe(0);
});
