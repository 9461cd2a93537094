// Real time, real certificates (issue 9 "Tests"): with 60-second certificates a node renews through
// two lifetimes with no operator action, its certificate valid at every moment, and an operator's
// config change reaches it at its next renewal. `muster renew` runs every few seconds, as
// muster-renew.timer would run it; it renews only once two thirds of the lifetime have passed.
import { existsSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { opensslVerify, tempDir } from '../helpers/registrar.js';
import { cli } from './helpers.js';

const LIFETIME_S = 60;
let t: ReturnType<typeof tempDir>;
let sock: string;
let port: number;
let reg: SpawnedRegistrar;

const start = (nodeConfig: string) =>
  spawnRegistrar([
    '--state-dir',
    path.join(t.dir, 'reg'),
    '--listen',
    `127.0.0.1:${port}`,
    '--admin-socket',
    sock,
    '--cert-lifetime',
    `${LIFETIME_S}s`,
    '--node-config',
    nodeConfig,
  ]);

beforeAll(async () => {
  t = tempDir('muster-renew-rt-');
  sock = path.join(t.dir, 'admin.sock');
  port = await freePort();
  reg = await start('{"*": {"color": "blue"}}');
});
afterAll(async () => {
  await reg?.stop('SIGKILL');
  t?.cleanup();
});

describe('renewal in real time', () => {
  it('a node renews through two 60-second lifetimes with no operator action; a config change reaches it', async () => {
    const token = cli(['tokens', 'create', '--uses', '1', '--admin-socket', sock]).stdout.trim();
    const dir = path.join(t.dir, 'rt-1');
    const joined = cli(
      ['join', '--registrar', reg.url, '--name', 'rt-1', '--state-dir', dir, '--mdns', 'off'],
      {
        MUSTER_TOKEN: token,
      },
    );
    expect(joined.code, joined.stderr).toBe(0);
    const cert = () => new X509Certificate(readFileSync(path.join(dir, 'node.crt')));
    const serials = [cert().serialNumber];
    const changed = path.join(t.dir, 'changed');
    const started = Date.now();
    let configChangedAt: number | undefined;
    // Two lifetimes and a little more; the "timer" fires every 4 s.
    while (Date.now() - started < (2 * LIFETIME_S + 10) * 1000) {
      const r = cli(['renew', '--state-dir', dir, '--on-changed', `touch ${changed}`]);
      expect(r.code, r.stderr).toBe(0);
      const c = cert();
      // Valid at every moment: never past its notAfter.
      expect(Date.now()).toBeLessThan(Date.parse(c.validTo));
      if (c.serialNumber !== serials[serials.length - 1]) {
        serials.push(c.serialNumber);
        expect(opensslVerify(path.join(dir, 'ca.crt'), path.join(dir, 'node.crt')).ok).toBe(true);
        if (serials.length === 2) {
          // After the first renewal the operator changes the node config (a registrar restart).
          await reg.stop('SIGTERM');
          reg = await start('{"*": {"color": "green"}}');
          configChangedAt = Date.now();
        }
      }
      await sleep(4000);
    }
    // Two lifetimes: at least two renewals, each a new certificate.
    expect(serials.length).toBeGreaterThanOrEqual(3);
    expect(new Set(serials).size).toBe(serials.length);
    // The config change arrived with the next renewal, with no --now and no operator action on the node.
    expect(configChangedAt).toBeDefined();
    expect(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'))).toEqual({ color: 'green' });
    expect(existsSync(changed)).toBe(true);
  }, 200_000);
});
