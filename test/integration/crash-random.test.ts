/**
 * Exactly once through SIGKILLs at arbitrary instants (DESIGN "Exactly once"): while 40 nodes join
 * concurrently, the registrar is killed three times at random moments and restarted on the same
 * store. In the end every node holds one certificate; every serial is unique and belongs to the
 * record that carries it; the state counters kept in the store agree with the state index.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import path from 'node:path';
import { joinProofMac, parseToken } from '../../src/common/proof.js';
import { LevelRegistry } from '../../src/store/level.js';
import { NODE_STATES } from '../../src/store/types.js';
import { freePort, muster, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { api, csrFor, tempDir } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let reg: SpawnedRegistrar | undefined;
let sock: string;
let port: number;

beforeEach(async () => {
  t = tempDir();
  sock = path.join(t.dir, 'admin.sock');
  port = await freePort();
});
afterEach(async () => {
  await reg?.stop('SIGKILL');
  t.cleanup();
});

const args = (): string[] => ['--state-dir', path.join(t.dir, 'reg'), '--listen', `127.0.0.1:${port}`, '--admin-socket', sock, '--rate-limit', '100000'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

it('SIGKILLs at random instants during concurrent joins: one certificate per node, no serial reused, counters consistent', async () => {
  reg = await spawnRegistrar(args());
  const token = muster(['tokens', 'create', '--admin-socket', sock]).stdout.trim();
  const { id, secret } = parseToken(token)!;
  const url = `https://127.0.0.1:${port}`;
  const nodes = Array.from({ length: 40 }, (_, i) => ({ name: `k${i}`, ...csrFor(`k${i}`) }));
  const certs = new Map<string, Set<string>>();
  let stop = false;

  // Each node keeps asking (as the agent does) until it has its bundle; answers are recorded.
  const runNode = async (n: (typeof nodes)[number]): Promise<void> => {
    await sleep(Math.random() * 300);
    while (!stop) {
      const ts = Math.floor(Date.now() / 1000);
      const proof = { id, ts, hmac: joinProofMac(secret, { name: n.name, role: 'worker', cluster: '', key: n.fp, ts }) };
      try {
        const r = await api({ url }, 'POST', '/v1/join', { name: n.name, role: 'worker', cluster: '', csr: n.csr, proof });
        if (r.status === 200 || r.status === 201) {
          const s = certs.get(n.name) ?? new Set<string>();
          s.add(r.body.certificate);
          certs.set(n.name, s);
          return;
        }
      } catch {
        // the registrar is down: retry shortly
      }
      await sleep(50 + Math.random() * 150);
    }
  };
  const all = Promise.all(nodes.map(runNode));

  for (let k = 0; k < 3; k++) {
    await sleep(50 + Math.random() * 400);
    await reg.stop('SIGKILL');
    reg = await spawnRegistrar(args());
  }
  const deadline = setTimeout(() => (stop = true), 45_000);
  await all;
  clearTimeout(deadline);
  expect(certs.size).toBe(40);
  for (const s of certs.values()) expect(s.size).toBe(1); // asked again after a crash: the same certificate

  await reg.stop('SIGTERM');
  reg = undefined;
  const r = await LevelRegistry.open(path.join(t.dir, 'reg', 'registry'));
  try {
    const records = await r.listNodes({ limit: 1000 });
    expect(records).toHaveLength(40);
    for (const rec of records) expect(rec.state).toBe('issued');
    const serials = await r.listSerials();
    expect(new Set(serials.map((s) => s.serial)).size).toBe(serials.length);
    expect(serials).toHaveLength(40); // a signature lost in a crash never reached the store
    const byName = new Map(records.map((x) => [x.name, x]));
    for (const s of serials) expect(byName.get(s.name)?.serial).toBe(s.serial);
    for (const [name, set] of certs) expect([...set][0]).toBe(byName.get(name)!.certificate);
    const counts = await r.counts();
    for (const state of NODE_STATES) expect(counts[state]).toBe((await r.namesInState(state)).length);
    const tokens = await r.listTokens();
    expect(tokens[0]!.used).toBe(40);
  } finally {
    await r.close();
  }
}, 90_000);
