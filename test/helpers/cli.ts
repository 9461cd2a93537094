/** Spawns the real, compiled CLI (dist/cli/main.js), as operators and unit files do. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

export const BIN = path.resolve(import.meta.dirname, '../../dist/cli/main.js');

export function muster(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, MUSTER_LOG_FORMAT: 'json', ...env },
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function musterAsync(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, MUSTER_LOG_FORMAT: 'json', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code, sig) => resolve({ code: code ?? (sig ? 128 : -1), stdout, stderr }));
  });
}

export interface SpawnedRegistrar {
  child: ChildProcess;
  url: string;
  ca: string;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * The arguments of a test registrar: its state in <dir>/reg, HTTPS on 127.0.0.1 at a free port, the
 * admin API on sock, and the cluster when one is given.
 */
export function localRegistrarArgs(dir: string, sock: string, cluster?: string): string[] {
  return [
    '--state-dir',
    path.join(dir, 'reg'),
    '--listen',
    '127.0.0.1:0',
    '--admin-socket',
    sock,
    ...(cluster === undefined ? [] : ['--cluster', cluster]),
  ];
}

/** Starts `muster registrar --mdns off` and resolves once it logs "registrar ready". */
export function spawnRegistrar(args: string[], env: NodeJS.ProcessEnv = {}): Promise<SpawnedRegistrar> {
  // Loopback is the "local link" of these tests only because they say so (issue 8: never by default).
  const link = args.includes('--interface') ? [] : ['--interface', '127.0.0.1'];
  const child = spawn(process.execPath, [BIN, 'registrar', '--mdns', 'off', ...link, ...args], {
    env: { ...process.env, MUSTER_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`registrar did not start:\n${out}`)), 30_000);
    const onData = (c: Buffer): void => {
      out += c.toString();
      for (const line of out.split('\n')) {
        if (!line.includes('"registrar ready"')) continue;
        const rec = JSON.parse(line) as { url: string; ca: string };
        clearTimeout(timer);
        resolve({
          child,
          url: rec.url,
          ca: rec.ca,
          output: () => out,
          exited,
          async stop(signal: NodeJS.Signals = 'SIGTERM') {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
        return;
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`registrar exited before it was ready:\n${out}`));
    });
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
