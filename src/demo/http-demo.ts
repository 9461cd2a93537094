/**
 * `npm run demo`: muster doing its job on this machine, on loopback only (no mDNS, no other
 * interface): a registrar with embedded defaults in a temporary directory, a join token, install mode,
 * an operator's approval, four nodes registering, every certificate checked with `openssl verify`,
 * then everything removed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BIN = path.resolve(import.meta.dirname, '../cli/main.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-demo-'));
const sock = path.join(dir, 'admin.sock');
const children = new Set<ChildProcess>();
const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string): string => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);

function cli(args: string[], env: NodeJS.ProcessEnv = {}): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--admin-socket', sock], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { code: r.status ?? 1, out: r.stdout.trim(), err: r.stderr.trim() };
}

function join(name: string, url: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<number> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, 'join', '--registrar', url, '--name', name, '--role', 'worker', '--state-dir', path.join(dir, name), '--mdns', 'off', ...extra], {
      env: { ...process.env, MUSTER_LOG_FORMAT: 'json', ...env },
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    children.add(c);
    c.on('exit', (code) => (children.delete(c), resolve(code ?? 1)));
  });
}

function cleanup(): void {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => (cleanup(), process.exit(130)));

async function main(): Promise<void> {
  console.log(bold('muster demo') + dim(` (everything on 127.0.0.1, in ${dir}; mDNS off)`));
  const reg = spawn(process.execPath, [BIN, 'registrar', '--state-dir', path.join(dir, 'registrar'), '--listen', '127.0.0.1:0', '--interface', '127.0.0.1', '--mdns', 'off', '--cluster', 'demo', '--admin-socket', sock], {
    env: { ...process.env, MUSTER_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(reg);
  const ready = await new Promise<{ url: string; ca: string }>((resolve, reject) => {
    let buf = '';
    reg.stdout!.on('data', (c: Buffer) => {
      buf += c;
      const line = buf.split('\n').find((l) => l.includes('"registrar ready"'));
      if (line) resolve(JSON.parse(line) as { url: string; ca: string });
    });
    reg.on('exit', () => reject(new Error(`the registrar did not start:\n${buf}`)));
  });
  console.log(`registrar up at ${ready.url}, CA ${ready.ca}`);

  // Live view of the registrar's events, as an operator would run `muster events --follow`.
  const follow = spawn(process.execPath, [BIN, 'events', '--follow', '--admin-socket', sock], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.add(follow);
  follow.stdout!.on('data', (c: Buffer) => {
    for (const l of c.toString().split('\n').filter(Boolean)) console.log(dim('  event ') + l.trim().replace(/\s+/g, ' '));
  });

  const token = cli(['tokens', 'create', '--ttl', '1h', '--uses', '2']).out;
  console.log(`\n$ muster tokens create --ttl 1h --uses 2  ${dim('-> ' + token.split('.')[0] + '.<secret>')}`);
  const tokenJoins = [join('web-1', ready.url, [], { MUSTER_TOKEN: token }), join('web-2', ready.url, [], { MUSTER_TOKEN: token })];

  console.log(`$ muster install-mode on --for 2m --max 1`);
  cli(['install-mode', 'on', '--for', '2m', '--max', '1']);
  const installJoin = join('db-1', ready.url);
  await Promise.all([...tokenJoins, installJoin]);

  console.log(`\na fourth node without token, install mode now off: it waits for the operator`);
  const waiting = join('edge-1', ready.url);
  for (let i = 0; i < 100; i++) {
    if (cli(['nodes', 'list', '--state', 'pending', '--json']).out.includes('edge-1')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`$ muster nodes approve edge-1  ${dim('-> ' + cli(['nodes', 'approve', 'edge-1']).out)}`);
  await waiting;
  await new Promise((r) => setTimeout(r, 300));

  console.log(`\n$ muster nodes list\n${cli(['nodes', 'list']).out}`);
  console.log('\n$ openssl verify -CAfile <node>/ca.crt <node>/node.crt');
  let ok = 0;
  for (const n of ['web-1', 'web-2', 'db-1', 'edge-1']) {
    const v = spawnSync('openssl', ['verify', '-CAfile', path.join(dir, n, 'ca.crt'), path.join(dir, n, 'node.crt')], { encoding: 'utf8' });
    console.log(`  ${n}: ${(v.stdout || v.stderr).trim().split(': ').pop()}`);
    if (v.status === 0) ok++;
  }
  reg.kill('SIGTERM');
  await new Promise((r) => reg.once('exit', r));
  console.log(`\n${bold(`${ok} of 4 nodes registered and verified`)}; registrar stopped, ${dir} removed.`);
  process.exitCode = ok === 4 ? 0 : 1;
}

main()
  .catch((err: Error) => {
    console.error(`demo failed: ${err.message}`);
    process.exitCode = 1;
  })
  .finally(cleanup);
