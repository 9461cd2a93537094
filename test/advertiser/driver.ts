// Test-only: drives test/advertiser/mdns-runner.mjs inside a netns host (test/helpers/netlan.ts).
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killChild, onJsonLines, type LanHost } from '../helpers/netlan.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const srcRoot = join(root, 'src');
const outRoot = join(root, 'dist');
export const MDNS_MODULE = join(outRoot, 'advertiser/mdns.js');
const RUNNER = join(here, 'mdns-runner.mjs');

/** src/advertiser/*.ts and what they import from src (src/common/clock.ts, errors.ts), transitively. */
function advertiserSources(): string[] {
  const dir = join(srcRoot, 'advertiser');
  const todo = readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
  const seen = new Set<string>();
  for (let f = todo.pop(); f !== undefined; f = todo.pop()) {
    if (seen.has(f)) continue;
    seen.add(f);
    for (const m of readFileSync(f, 'utf8').matchAll(/from '(\.{1,2}\/[^']+)\.js'/g))
      todo.push(resolve(dirname(f), `${m[1]}.ts`));
  }
  return [...seen];
}

/**
 * `npm test` builds first; a direct `vitest run` may find dist/ missing or older than src/advertiser.
 * Then compile only src/advertiser and the few src/common modules it imports (not the whole tree,
 * which may be mid-change elsewhere), into the same dist/ the build writes.
 */
export function ensureAdvertiserBuilt(): void {
  const sources = advertiserSources();
  const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));
  const built = sources.every((f) => {
    const js = join(outRoot, relative(srcRoot, f)).replace(/\.ts$/, '.js');
    return existsSync(js) && statSync(js).mtimeMs >= newest;
  });
  if (built) return;
  const tsc = join(root, 'node_modules/.bin/tsc');
  const args = [
    ...['--outDir', outRoot, '--rootDir', srcRoot, '--module', 'NodeNext', '--moduleResolution', 'NodeNext'],
    ...[
      '--target',
      'ES2022',
      '--strict',
      '--skipLibCheck',
      '--esModuleInterop',
      '--types',
      'node',
      '--sourceMap',
    ],
    ...sources,
  ];
  const r = spawnSync(tsc, args, { encoding: 'utf8', cwd: root });
  if (r.status !== 0) throw new Error(`compiling src/advertiser failed:\n${r.stdout}${r.stderr}`);
}

export interface ServiceView {
  name: string;
  fqdn: string;
  host: string;
  port: number;
  addresses: string[];
  referer?: string;
  txt: Record<string, string | null>;
  rawTxt: string[];
}

export type RunnerEvent =
  | { t: number; ev: 'ready' | 'closed' | 'busy' }
  | { t: number; ev: 'ack'; id: number; result?: unknown; error?: string }
  | { t: number; ev: 'up' | 'update' | 'down'; browse: string; service: ServiceView }
  | { t: number; ev: 'announced'; pub: string }
  | { t: number; ev: 'not-announced'; pub: string; code: string; message: string }
  | { t: number; ev: 'error'; code: string; message: string }
  | { t: number; ev: 'log'; level: string; msg: string; obj: unknown };

export class MdnsProc {
  readonly events: RunnerEvent[] = [];
  private readonly waiters = new Set<() => void>();
  private nextId = 1;
  private stderr = '';

  private constructor(
    readonly host: LanHost,
    readonly child: ChildProcess,
  ) {
    onJsonLines(child.stdout, (msg) => {
      this.events.push(msg as RunnerEvent);
      for (const w of [...this.waiters]) w();
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
  }

  /** Starts the runner in `host` with Mdns bound to the host's address (and options). */
  static async start(
    host: LanHost,
    opts: { host?: string; probe?: boolean; interface?: string | null; waitReady?: boolean } = {},
  ): Promise<MdnsProc> {
    const mdnsOpts = {
      interface: opts.interface === null ? undefined : (opts.interface ?? host.ip),
      host: opts.host,
      probe: opts.probe,
    };
    const child = host.spawn(process.execPath, [RUNNER], {
      env: { ...process.env, MDNS_MODULE, MDNS_OPTS: JSON.stringify(mdnsOpts) },
    });
    const p = new MdnsProc(host, child);
    if (opts.waitReady !== false) await p.waitFor((e) => e.ev === 'ready', 5000, 'socket ready');
    return p;
  }

  waitFor<E extends RunnerEvent>(pred: (e: RunnerEvent) => e is E, ms: number, what?: string): Promise<E>;
  waitFor(pred: (e: RunnerEvent) => boolean, ms: number, what?: string): Promise<RunnerEvent>;
  waitFor(pred: (e: RunnerEvent) => boolean, ms: number, what = 'event'): Promise<RunnerEvent> {
    return new Promise((resolve, reject) => {
      let from = 0;
      const check = (): void => {
        for (; from < this.events.length; from++) {
          const e = this.events[from];
          if (e && pred(e)) {
            this.waiters.delete(check);
            clearTimeout(timer);
            resolve(e);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(
          new Error(
            `${this.host.name}: no ${what} within ${ms} ms; stderr: ${this.stderr.trim()}; events: ${JSON.stringify(this.events.filter((e) => e.ev !== 'log')).slice(0, 2000)}`,
          ),
        );
      }, ms);
      this.waiters.add(check);
      check();
      if (this.child.exitCode !== null)
        reject(new Error(`${this.host.name}: runner exited (${this.child.exitCode}): ${this.stderr}`));
    });
  }

  async call(op: string, args: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.nextId++;
    this.child.stdin?.write(JSON.stringify({ id, op, ...args }) + '\n');
    const ack = await this.waitFor(
      (e): e is Extract<RunnerEvent, { ev: 'ack' }> => e.ev === 'ack' && e.id === id,
      10_000,
      `ack of ${op}`,
    );
    if (ack.error) throw new Error(`${this.host.name}: ${op} failed: ${ack.error}`);
    return ack.result;
  }

  serviceEvents(browse: string): Extract<RunnerEvent, { ev: 'up' | 'update' | 'down' }>[] {
    return this.events.filter(
      (e): e is Extract<RunnerEvent, { ev: 'up' | 'update' | 'down' }> =>
        (e.ev === 'up' || e.ev === 'update' || e.ev === 'down') && e.browse === browse,
    );
  }

  errors(): Extract<RunnerEvent, { ev: 'error' }>[] {
    return this.events.filter((e): e is Extract<RunnerEvent, { ev: 'error' }> => e.ev === 'error');
  }

  /** SIGTERM: the runner closes Mdns (goodbyes awaited) and exits. */
  async terminate(): Promise<void> {
    await killChild(this.child, 5000);
  }
}
