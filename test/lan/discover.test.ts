/**
 * `muster discover` and `muster join`'s choice among registrars on a real test LAN (issue 11, item 2;
 * DESIGN "Discovery", "Testing the network for real"): two registrars of different clusters and CAs in
 * network namespaces on 198.18.0.0/24, the real compiled CLI. A boot job (no terminal) never picks one;
 * a person at a terminal (a real pseudo-terminal, util-linux `script`) chooses, and the node joins that
 * one only. Nothing here sends a packet outside those namespaces.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { BIN, muster } from '../helpers/cli.js';
import {
  netnsSuite,
  registrarReady,
  spawnLanRegistrar,
  testLanFixture,
  type LanHost,
} from '../helpers/netlan.js';
import { opensslVerify } from '../helpers/registrar.js';
import { VERSION } from '../../src/common/version.js';
import { MdnsProc } from '../advertiser/driver.js';

const gate = netnsSuite('test/lan/discover.test.ts');

interface Reg {
  host: LanHost;
  child: ChildProcess;
  id: string;
  ca: string;
  cluster: string;
  sock: string;
  dir: string;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command in a LAN host to its end (killed after `limitMs`). */
function run(h: LanHost, cmd: string, args: string[], limitMs = 60_000): Promise<Run> {
  const child = h.spawn(cmd, args, { env: { ...process.env, MUSTER_LOG_FORMAT: 'json' } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c));
  child.stderr!.on('data', (c: Buffer) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  return new Promise((resolve) =>
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      resolve({ code: code ?? (sig ? 128 : -1), stdout, stderr });
    }),
  );
}

/** `muster discover --interface <h's address> <args>` in h. */
const discover = (h: LanHost, args: string[]): Promise<Run> =>
  run(h, process.execPath, [BIN, 'discover', '--interface', h.ip, ...args]);

describe.skipIf(gate.skip)('muster discover and the choice of muster join, on a test LAN', () => {
  const fx = testLanFixture('muster-discover-');
  let n = 0;
  const regs: Reg[] = [];
  const host = (): Promise<LanHost> => fx.lan.addHost(`d${++n}`, 'lan');

  async function startReg(cluster: string): Promise<Reg> {
    const h = await host();
    const dir = path.join(fx.dir, `reg-${cluster}`);
    const sock = path.join(fx.dir, `${cluster}.sock`);
    const child = spawnLanRegistrar(h, { cluster, stateDir: dir, sock });
    const { ready, out } = await registrarReady<{ id: string; ca: string }>(child, `registrar ${cluster}`);
    // On the LAN only once announced: a registrar still probing its name answers no query (RFC 6762
    // §8.1, ~750 ms), and a node started before then would hear the other registrar alone.
    const until = Date.now() + 10_000;
    while (!out().includes('"mdns: published"')) {
      if (Date.now() > until) throw new Error(`registrar ${cluster} never announced:\n${out()}`);
      await new Promise((res) => setTimeout(res, 50));
    }
    const reg = { host: h, child, id: ready.id, ca: ready.ca, cluster, sock, dir };
    regs.push(reg);
    return reg;
  }

  const admin = (r: Reg, args: string[]) => muster([...args, '--admin-socket', r.sock]);
  const nodes = (r: Reg) =>
    JSON.parse(admin(r, ['nodes', 'list', '--json']).stdout).items as { name: string; state: string }[];
  const admitted = (r: Reg, name: string): boolean =>
    ['accepted', 'issued', 'active'].includes(nodes(r).find((x) => x.name === name)?.state ?? '');

  beforeAll(async () => {
    // Two registrars, each with its own CA (made at first start), serving different clusters.
    await startReg('red');
    await startReg('blue');
  }, 120_000);

  afterAll(async () => {
    for (const r of regs) {
      if (r.child.exitCode !== null || r.child.signalCode !== null) continue;
      const exited = new Promise((res) => r.child.once('exit', res));
      r.child.kill('SIGTERM');
      await exited;
    }
  });

  it('discover --json lists both registrars with id, role, cluster, CA, mode, address, versions and source', async () => {
    const [red, blue] = regs as [Reg, Reg];
    expect(red.ca).not.toBe(blue.ca);
    expect(admin(blue, ['install-mode', 'on', '--for', '10m']).code).toBe(0);
    const h = await host();
    const r = await discover(h, ['--json', '--timeout', '3s']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { items: Record<string, unknown>[]; invalid: unknown[] };
    expect(out.invalid).toEqual([]);
    // Sorted by cluster: blue, then red.
    expect(out.items).toEqual([
      {
        id: blue.id,
        instance: blue.id,
        role: 'main',
        cluster: 'blue',
        ca: blue.ca,
        mode: 'open',
        addresses: [blue.host.ip],
        port: 8443,
        v: 1,
        software: VERSION,
        heardFrom: blue.host.ip,
      },
      {
        id: red.id,
        instance: red.id,
        role: 'main',
        cluster: 'red',
        ca: red.ca,
        mode: 'closed',
        addresses: [red.host.ip],
        port: 8443,
        v: 1,
        software: VERSION,
        heardFrom: red.host.ip,
      },
    ]);

    // The table for people, and --cluster.
    const text = await discover(h, ['--timeout', '3s', '--cluster', 'red']);
    expect(text.code, text.stderr).toBe(0);
    const lines = text.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+ROLE\s+CLUSTER\s+CA\s+MODE\s+ADDRESS\s+VERSION\s+HEARD FROM$/);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain(red.id);
    expect(lines[1]).toContain(`${red.ca.slice(0, 12)}…`);
    expect(lines[1]).toContain(`${red.host.ip}:8443`);
    expect(lines[1]).toContain(`v1 ${VERSION}`);

    // Nothing heard: exit 0, an empty list, a note on stderr.
    const none = await discover(h, ['--json', '--timeout', '1s', '--cluster', 'green']);
    expect(none.code, none.stderr).toBe(0);
    expect(JSON.parse(none.stdout)).toEqual({ items: [], invalid: [] });
    expect(none.stderr).toMatch(/no registrar of cluster green heard within 1s/);
  }, 180_000);

  it('join with no terminal and nothing pinned (a boot job): never a pick, exit 7 at --timeout with both listed, no credentials', async () => {
    const [red, blue] = regs as [Reg, Reg];
    admin(red, ['install-mode', 'on', '--for', '10m']);
    admin(blue, ['install-mode', 'on', '--for', '10m']);
    const h = await host();
    const dir = path.join(fx.dir, 'node-boot');
    const r = await run(h, process.execPath, [
      BIN,
      'join',
      '--name',
      'boot-1',
      '--state-dir',
      dir,
      '--interface',
      h.ip,
      '--discovery-timeout',
      '2s',
      '--timeout',
      '6s',
    ]);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toMatch(/found 2 registrars with different CAs and no CA is pinned/);
    for (const reg of [red, blue]) {
      expect(r.stderr).toContain(reg.ca);
      expect(r.stderr).toContain(`cluster ${reg.cluster}`);
      expect(admitted(reg, 'boot-1')).toBe(false);
    }
    expect(r.stderr).toMatch(/--ca-fingerprint/);
    expect(r.stderr).not.toMatch(/Join which one/);
    // At most its key: no certificate, CA or bundle.
    expect(readdirSync(dir).filter((f) => f !== 'node.key')).toEqual([]);
    admin(red, ['install-mode', 'off']);
    admin(blue, ['install-mode', 'off']);
  }, 180_000);

  it('join at a terminal answering "2": joins the registrar listed second, pinned to its CA; the other admits nothing', async () => {
    const h = await host();
    const dir = path.join(fx.dir, 'node-tty');
    const cmd = [process.execPath, BIN, 'join', '--name', 'tty-1', '--state-dir', dir, '--interface', h.ip]
      .concat(['--discovery-timeout', '2s', '--timeout', '60s'])
      .map((a) => `'${a}'`)
      .join(' ');
    // util-linux script: the join runs on a pseudo-terminal (stdin and stderr are TTYs); -e: its exit code.
    const child = h.spawn('script', ['-qefc', cmd, '/dev/null'], {
      env: { ...process.env, MUSTER_LOG_FORMAT: 'json' },
    });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c));
    child.stderr!.on('data', (c: Buffer) => (out += c));
    const exited = new Promise<number>((res) =>
      child.on('exit', (code, sig) => res(code ?? (sig ? 128 : -1))),
    );
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    try {
      await new Promise<void>((res, rej) => {
        const check = (): void => {
          if (out.includes('Join which one? [1-2, empty to cancel]')) res();
        };
        child.stdout!.on('data', check);
        void exited.then((code) => rej(new Error(`join exited (${code}) before the prompt:\n${out}`)));
      });
      const offered = [...out.matchAll(/^\s*([12])\) (\S+) at (\S+) \(cluster (\S+), CA (\S+), mode/gm)].map(
        (m) => ({ n: m[1], id: m[2], cluster: m[4], ca: m[5] }),
      );
      expect(offered.map((o) => o.n)).toEqual(['1', '2']);
      const second = regs.find((r) => r.id === offered[1]!.id)!;
      const first = regs.find((r) => r.id === offered[0]!.id)!;
      expect(second).toBeDefined();
      expect(first).not.toBe(second);
      expect(offered[1]).toMatchObject({ cluster: second.cluster, ca: second.ca });
      // Install mode on there only, then the answer.
      expect(admin(second, ['install-mode', 'on', '--for', '10m']).code).toBe(0);
      child.stdin!.write('2\r');
      const code = await exited;
      expect(code, out).toBe(0);
      expect(out).toMatch(/registrar chosen at the terminal/);
      expect(out).toMatch(/registered tty-1: certificate/);
      // The certificate chains to the chosen registrar's own CA, and to no other.
      const cert = path.join(dir, 'node.crt');
      expect(opensslVerify(path.join(second.dir, 'ca', 'ca.crt'), cert).ok).toBe(true);
      expect(existsSync(path.join(first.dir, 'ca', 'ca.crt'))).toBe(true);
      expect(opensslVerify(path.join(first.dir, 'ca', 'ca.crt'), cert).ok).toBe(false);
      expect(nodes(second).find((x) => x.name === 'tty-1')?.state).toBe('active');
      expect(admitted(first, 'tty-1')).toBe(false);
      expect(existsSync(path.join(dir, 'bundle.json'))).toBe(true);
    } finally {
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }, 180_000);

  it('a forged advertisement that does not validate is listed apart with the reason; discover still exits 0', async () => {
    const rogueHost = await host();
    const rogue = await MdnsProc.start(rogueHost);
    try {
      await rogue.call('publish', {
        pub: 'f',
        spec: {
          type: 'muster',
          name: 'forged',
          port: 8443,
          txt: { v: '1', role: 'main', cluster: 'red', ca: 'not-a-fingerprint', mode: 'open' },
        },
      });
      const h = await host();
      const r = await discover(h, ['--json', '--timeout', '3s']);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { items: { id: string }[]; invalid: unknown[] };
      expect(out.items.map((i) => i.id).sort()).toEqual(regs.map((x) => x.id).sort());
      expect(out.invalid).toEqual([
        {
          instance: 'forged',
          heardFrom: rogueHost.ip,
          reason: expect.stringMatching(/ca="not-a-fingerprint" is not/),
        },
      ]);
      expect(r.stderr).toMatch(/ignored 1 invalid advertisement:\n {2}forged from [0-9.]+: ca=/);
    } finally {
      await rogue.terminate();
    }
  }, 180_000);
});
