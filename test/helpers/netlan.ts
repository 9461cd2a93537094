/**
 * The netns test LAN for tests: the builder itself lives in src/testnet/netlan.ts (the demo uses it
 * too); this module re-exports it and adds what only tests need:
 *
 *   netnsGate(suite): { skip, mustFail, reason? }       the decision for a suite: run; skip with a loud
 *                                                       console.warn; or, when CI=true, fail
 *   netnsSuite(suite, what?): the same, plus the test that fails when CI=true and namespaces are missing
 *   testLanFixture(prefix): { lan, dir }: a LAN and a temporary directory for a suite (beforeAll/afterAll)
 *   onJsonLines(stream, fn): fn for each JSON line a helper process writes
 *   spawnLanRegistrar(host, { cluster, stateDir, sock }): `muster registrar` in a LAN host (not waited for)
 *   registrarReady(child, what): the "registrar ready" record of `muster registrar` in a LAN host
 *   startMulticastSniffer(host, { group?, port? }): Promise<MulticastSniffer>
 *     sniffer.packets(), sniffer.waitFor(pred, ms), sniffer.stop()
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  createTestLan,
  killChild,
  netnsAvailable,
  type LanHost,
  type TestLan,
} from '../../src/testnet/netlan.js';

import { BIN } from './cli.js';

export * from '../../src/testnet/netlan.js';

/**
 * The decision every netns suite makes: run, skip loudly, or (CI=true) fail. Use as
 * `const net = netnsGate('mdns'); describe.skipIf(net.skip)(...)` plus `if (net.mustFail) it(...)`.
 */
export function netnsGate(suite: string): { skip: boolean; mustFail: boolean; reason?: string } {
  const a = netnsAvailable();
  if (a.ok) return { skip: false, mustFail: false };
  const ci = process.env.CI === 'true';
  const msg =
    `\n*** ${suite}: ${ci ? 'FAILING' : 'SKIPPING'} the network-namespace tests: ${a.reason}. ` +
    `They need root and iproute2 (DESIGN "Testing the network for real"). ***\n`;
  console.warn(msg);
  return { skip: true, mustFail: ci, reason: a.reason };
}

/**
 * netnsGate for a test file, with the test that makes CI fail (never skip) where namespaces are
 * missing. Call at the top level; `describe.skipIf(gate.skip)(...)` the suites that need the LAN.
 */
export function netnsSuite(suite: string, what = 'LAN'): ReturnType<typeof netnsGate> {
  const gate = netnsGate(suite);
  describe.skipIf(!gate.mustFail)(`${what} prerequisites (CI)`, () => {
    it('network namespaces are available in CI', () => {
      throw new Error(`CI=true but network namespaces are unavailable: ${gate.reason}`);
    });
  });
  return gate;
}

/**
 * A test LAN and a temporary directory (named from prefix) for the suite it is called in: made in
 * beforeAll, the LAN destroyed and the directory removed in afterAll (after the suite's own afterAll
 * hooks, which may still need them). The fields are set by the hook: read them inside tests and hooks.
 */
export function testLanFixture(prefix: string): { lan: TestLan; dir: string } {
  const fx = {} as { lan: TestLan; dir: string };
  beforeAll(async () => {
    fx.lan = await createTestLan();
    fx.dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterAll(async () => {
    await fx.lan?.destroy();
    if (fx.dir) rmSync(fx.dir, { recursive: true, force: true });
  });
  return fx;
}

/**
 * Starts `muster registrar` in LAN host h: HTTPS on 0.0.0.0:8443, mDNS on h's address, its state in
 * stateDir, its admin API on sock, JSON logs (what registrarReady reads), then `extra` arguments.
 * `bin` is the CLI to run (default: the compiled one). Does not wait: registrarReady(child) does.
 */
export function spawnLanRegistrar(
  h: LanHost,
  o: { cluster: string; stateDir: string; sock: string; extra?: string[]; bin?: string },
): ChildProcess {
  return h.spawn(
    process.execPath,
    [
      o.bin ?? BIN,
      'registrar',
      '--listen',
      '0.0.0.0:8443',
      '--interface',
      h.ip,
      '--cluster',
      o.cluster,
      '--state-dir',
      o.stateDir,
      '--admin-socket',
      o.sock,
      ...(o.extra ?? []),
    ],
    { env: { ...process.env, MUSTER_LOG_FORMAT: 'json' } },
  );
}

/**
 * Waits for `muster registrar` (child, with MUSTER_LOG_FORMAT=json) to log "registrar ready": that
 * record, and its output (stdout and stderr) as it grows. Rejects, with the output, when it exits
 * first or is not ready within timeoutMs; `what` names it in that error.
 */
export async function registrarReady<T>(
  child: ChildProcess,
  what: string,
  timeoutMs = 20_000,
): Promise<{ ready: T; out: () => string }> {
  let out = '';
  const ready = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${out}`)), timeoutMs);
    child.stdout!.on('data', (c: Buffer) => {
      out += c;
      const line = out.split('\n').find((l) => l.includes('"registrar ready"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as T);
      }
    });
    child.stderr!.on('data', (c: Buffer) => (out += c));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before it was ready:\n${out}`));
    });
  });
  return { ready, out: () => out };
}

/** Calls fn with each line (parsed as JSON) that a helper process writes, one object a line, to stream. */
export function onJsonLines(stream: Readable | null | undefined, fn: (msg: unknown) => void): void {
  let buf = '';
  stream?.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      fn(JSON.parse(line));
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Multicast sniffer: proves what did (or did not) appear on a link.

export interface SniffedPacket {
  /** Source address of the datagram. */
  from: string;
  fromPort: number;
  size: number;
  /** For mDNS (RFC 6762 §18.2): true when the QR bit says response. */
  response: boolean;
  /** Receive time in the sniffer, ms since epoch. */
  t: number;
  /** The datagram, hex. */
  hex: string;
}

export interface MulticastSniffer {
  packets(): SniffedPacket[];
  waitFor(pred: (p: SniffedPacket) => boolean, timeoutMs: number): Promise<SniffedPacket>;
  stop(): Promise<void>;
}

// Runs in the host's namespace: binds the port with SO_REUSEADDR (mDNS responders share 5353), joins the
// group on the host's address and prints one JSON line per datagram.
const SNIFFER_SCRIPT = `
const dgram = require('node:dgram');
const [group, port, iface] = [process.env.SNIFF_GROUP, Number(process.env.SNIFF_PORT), process.env.SNIFF_IFACE];
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
s.on('error', (e) => { process.stderr.write(String(e) + '\\n'); process.exit(1); });
s.on('message', (m, r) => {
  process.stdout.write(JSON.stringify({ from: r.address, fromPort: r.port, size: m.length,
    response: m.length > 2 && (m[2] & 0x80) !== 0, t: Date.now(), hex: m.toString('hex') }) + '\\n');
});
s.bind(port, '0.0.0.0', () => { s.addMembership(group, iface); process.stdout.write(JSON.stringify({ ready: true }) + '\\n'); });
process.on('SIGTERM', () => s.close(() => process.exit(0)));
`;

export async function startMulticastSniffer(
  host: LanHost,
  opts: { group?: string; port?: number } = {},
): Promise<MulticastSniffer> {
  const child = host.spawn(process.execPath, ['-e', SNIFFER_SCRIPT], {
    env: {
      ...process.env,
      SNIFF_GROUP: opts.group ?? '224.0.0.251',
      SNIFF_PORT: String(opts.port ?? 5353),
      SNIFF_IFACE: host.ip,
    },
  });
  const seen: SniffedPacket[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('exit', (code) =>
      reject(new Error(`sniffer in ${host.ns} exited (${code}): ${stderr.trim()}`)),
    );
    onJsonLines(child.stdout, (m) => {
      const msg = m as SniffedPacket | { ready: true };
      if ('ready' in msg) resolve();
      else {
        seen.push(msg);
        for (const w of [...waiters]) w();
      }
    });
  });
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(
      () => reject(new Error(`sniffer in ${host.ns} not ready after 5 s: ${stderr.trim()}`)),
      5000,
    ).unref(),
  );
  try {
    await Promise.race([ready, timeout]);
  } catch (err) {
    await killChild(child);
    throw err;
  }
  return {
    packets: () => [...seen],
    waitFor(pred, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const p = seen.find(pred);
          if (!p) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(p);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `sniffer in ${host.ns}: no matching packet within ${timeoutMs} ms (${seen.length} seen)`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    stop: () => killChild(child),
  };
}
