/**
 * `npm run demo` (src/demo/main.ts, lan-demo.ts): the compiled demo run as a child process, as a person
 * runs it. On a machine with network namespaces it must register and verify its four nodes, and leave
 * no namespace, no process and no temporary directory behind, also when interrupted by Ctrl-C.
 * Without them it says why and runs the loopback demo (mDNS off, 127.0.0.1 only).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { netnsSuite } from '../helpers/netlan.js';

const gate = netnsSuite('test/lan/demo.test.ts', 'LAN demo');
const MAIN = path.resolve(import.meta.dirname, '../../dist/demo/main.js');
const NODES = ['db-1', 'web-1', 'web-2', 'edge-1'];

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

function startDemo(env: NodeJS.ProcessEnv = {}): Run {
  // A pipe, not a terminal: the demo appends plain lines instead of redrawing in place.
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return { child, output: () => out, exited };
}

async function waitForOutput(run: Run, re: RegExp, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!re.test(run.output())) {
    if (Date.now() - t0 > ms) throw new Error(`no ${re} within ${ms} ms:\n${run.output()}`);
    if (run.child.exitCode !== null)
      throw new Error(`the demo exited (${run.child.exitCode}) before ${re}:\n${run.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What the demo says it made: its namespace prefix and its state directory. */
function made(out: string): { prefix: string; dir: string } {
  const m = /namespaces (mdemo[a-z0-9]+)-\*, state in (\S+) /.exec(out);
  if (!m) throw new Error(`the demo did not say which namespaces and directory it uses:\n${out}`);
  return { prefix: m[1]!, dir: m[2]! };
}

function namespacesWith(prefix: string): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/** Processes whose command line mentions the demo's directory (registrar, nodes, `muster events`). */
function processesUsing(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(dir)) found.push(`${pid}: ${cmd}`);
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

async function expectNothingLeft(prefix: string, dir: string, pid: number): Promise<void> {
  // Processes killed with SIGKILL may take a moment to be reaped by init.
  for (let i = 0; i < 20 && processesUsing(dir).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  expect(processesUsing(dir)).toEqual([]);
  expect(namespacesWith(prefix)).toEqual([]);
  expect(namespacesWith(`mdemo${pid}`)).toEqual([]);
  expect(existsSync(dir)).toBe(false);
}

describe.skipIf(gate.skip)('npm run demo on a test LAN', () => {
  it('registers and verifies its four nodes, prints the summary, exits 0 and leaves nothing behind', async () => {
    const run = startDemo();
    const t0 = Date.now();
    const { code } = await run.exited;
    const out = run.output();
    expect(code, out).toBe(0);
    expect(Date.now() - t0).toBeLessThan(40_000);
    const { prefix, dir } = made(out);
    // The summary: one row per node, every one admitted, with a serial and `openssl verify` OK.
    const rows = out.split('\n').filter((l) => /^ {2}(db-1|web-1|web-2|edge-1) +(LAN|far) /.test(l));
    expect(rows.map((r) => r.trim().split(/\s+/)[0])).toEqual(NODES);
    for (const r of rows) expect(r, r).toMatch(/\s[0-9A-F]{6,}\s+\d+\.\d s(?: \*)?\s+OK$/);
    expect(rows.find((r) => r.includes('edge-1'))).toMatch(
      /far +198\.18\.1\.\d+\/24 +--registrar +join token /,
    );
    expect(rows.find((r) => r.includes('web-1'))).toMatch(/LAN +198\.18\.0\.\d+\/24 +mDNS +install mode /);
    expect(rows.find((r) => r.includes('db-1'))).toMatch(/mDNS +install mode /);
    // The story, as the registrar's events told it: db-1 was heard, waited, and was admitted when
    // install mode opened (issue 14: nodes already waiting need not ask again), with no approval.
    expect(out).toMatch(/db-1 +heard /);
    expect(out).toMatch(/db-1 +pending /);
    expect(out).not.toMatch(/muster nodes approve/);
    expect(out).toMatch(/db-1 .*waited [\d.]+ s until install mode opened/);
    expect(out).toMatch(/registrar closes +install mode: 3 node\(s\) accepted/);
    expect(out).toContain('4 of 4 nodes registered and verified by openssl');
    expect(out).not.toContain('\x1b['); // not a terminal: no cursor movement, no colours
    await expectNothingLeft(prefix, dir, run.child.pid!);
  });

  it('Ctrl-C: exits 130 within a few seconds, with no namespace, process or directory left', async () => {
    const run = startDemo();
    await waitForOutput(run, /registrar +ready /, 20_000);
    const { prefix, dir } = made(run.output());
    expect(namespacesWith(prefix).length).toBeGreaterThan(0);
    const sent = Date.now();
    run.child.kill('SIGINT');
    const { code, at } = await run.exited;
    expect(code, run.output()).toBe(130);
    expect(at - sent).toBeLessThan(5000);
    expect(run.output()).toContain('interrupted (SIGINT)');
    expect(run.output()).not.toContain('nodes registered and verified');
    await expectNothingLeft(prefix, dir, run.child.pid!);
  });

  it('SIGTERM: exits 143 and cleans up the same way', async () => {
    const run = startDemo();
    await waitForOutput(run, /web-1 +boots /, 25_000);
    const { prefix, dir } = made(run.output());
    run.child.kill('SIGTERM');
    const { code } = await run.exited;
    expect(code, run.output()).toBe(143);
    await expectNothingLeft(prefix, dir, run.child.pid!);
  });
});

describe('npm run demo without network namespaces', () => {
  it('says why and runs the loopback demo instead', async () => {
    const run = startDemo({ NETLAN_FORCE_UNAVAILABLE: 'testing the fallback' });
    const { code } = await run.exited;
    const out = run.output();
    expect(code, out).toBe(0);
    expect(out.split('\n')[0]).toBe(
      'NETLAN_FORCE_UNAVAILABLE=testing the fallback: running the loopback demo instead (mDNS needs network namespaces)',
    );
    expect(out).toContain('4 of 4 nodes registered and verified');
    expect(out).not.toMatch(/mdemo/);
  });
});
