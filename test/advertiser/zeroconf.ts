// Test-only: a DNS-SD browser that is not ours, to check what muster advertises the way another stack
// sees it. python-zeroconf (Debian: python3-zeroconf) runs test/advertiser/zeroconf-browser.py in a
// netns host of the test LAN. Without it, the project's own browser runs in a separate process
// (test/advertiser/mdns-runner.mjs), with a loud warning: still a real browser on the wire, but ours.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killChild, onJsonLines, type LanHost } from '../helpers/netlan.js';
import { MdnsProc, ensureAdvertiserBuilt } from './driver.js';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'zeroconf-browser.py');
/** The Debian package that provides the independent browser (for .ci/run). */
export const ZEROCONF_PACKAGE = 'python3-zeroconf';

export interface BrowserEvent {
  ev: 'added' | 'updated' | 'removed';
  /** The instance, e.g. `r-0a1b2c3d4e` (without the service type). */
  name: string;
  txt: Record<string, string | null>;
  addresses: string[];
  /** Receive time in this process (ms since epoch). */
  t: number;
}

export interface IndependentBrowser {
  /** What is browsing: 'python-zeroconf' or 'muster advertiser (fallback)'. */
  readonly kind: string;
  readonly events: BrowserEvent[];
  waitFor(pred: (e: BrowserEvent) => boolean, ms: number, what: string): Promise<BrowserEvent>;
  stop(): Promise<void>;
}

let python: string | null | undefined;

/**
 * The python3 that can import zeroconf (Debian's /usr/bin/python3 first), or null.
 * MUSTER_ZEROCONF_PYTHON names another interpreter, or `none` to check the fallback.
 */
export function zeroconfPython(): string | null {
  if (python !== undefined) return python;
  python = null;
  const forced = process.env.MUSTER_ZEROCONF_PYTHON;
  if (forced === 'none') return python;
  for (const candidate of forced ? [forced] : ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(candidate, ['-c', 'import zeroconf'], { encoding: 'utf8' });
    if (r.status === 0) {
      python = candidate;
      break;
    }
  }
  return python;
}

const TYPES = { muster: '_muster._tcp.local.', 'muster-join': '_muster-join._tcp.local.' } as const;

class Events {
  readonly events: BrowserEvent[] = [];
  private readonly waiters = new Set<() => void>();

  push(e: BrowserEvent): void {
    this.events.push(e);
    for (const w of [...this.waiters]) w();
  }

  waitFor(
    pred: (e: BrowserEvent) => boolean,
    ms: number,
    what: string,
    diag: () => string,
  ): Promise<BrowserEvent> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const e = this.events.find(pred);
        if (!e) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(e);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no ${what} within ${ms} ms; seen: ${JSON.stringify(this.events)}; ${diag()}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }
}

/** Starts a browser for `type` in `host`, bound to the host's address; resolves once it listens. */
export async function startIndependentBrowser(
  host: LanHost,
  type: keyof typeof TYPES,
): Promise<IndependentBrowser> {
  const py = zeroconfPython();
  const events = new Events();
  if (py === null) {
    console.warn(
      `\n*** ${ZEROCONF_PACKAGE} is not installed: the "independent" browser is muster's own advertiser ` +
        `in a separate process. Install ${ZEROCONF_PACKAGE} (Debian) for a browser that is not ours. ***\n`,
    );
    ensureAdvertiserBuilt();
    const proc = await MdnsProc.start(host);
    let seen = 0;
    const pump = (): void => {
      for (; seen < proc.events.length; seen++) {
        const e = proc.events[seen]!;
        if (e.ev === 'up' || e.ev === 'update' || e.ev === 'down')
          events.push({
            ev: e.ev === 'up' ? 'added' : e.ev === 'update' ? 'updated' : 'removed',
            name: e.service.name,
            txt: e.service.txt,
            addresses: e.service.addresses,
            t: Date.now(),
          });
      }
    };
    proc.child.stdout?.on('data', () => setImmediate(pump));
    await proc.call('browse', { browse: 'b', type });
    return {
      kind: 'muster advertiser (fallback)',
      events: events.events,
      waitFor: (pred, ms, what) => events.waitFor(pred, ms, what, () => ''),
      stop: () => proc.terminate(),
    };
  }

  const child = host.spawn(py, ['-u', SCRIPT, host.ip, TYPES[type]]);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  onJsonLines(child.stdout, (m) => {
    const msg = m as Omit<BrowserEvent, 't'> | { ev: 'ready' };
    if (msg.ev === 'ready') ready();
    else
      events.push({
        ...msg,
        // python-zeroconf names the whole service: `<instance>.<type>.`
        name: msg.name.endsWith(`.${TYPES[type]}`) ? msg.name.slice(0, -TYPES[type].length - 1) : msg.name,
        t: Date.now(),
      });
  });
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`zeroconf browser exited (${code}): ${stderr.trim()}`))),
  );
  exited.catch(() => undefined);
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`zeroconf browser not ready after 10 s: ${stderr}`)), 10_000).unref(),
  );
  try {
    await Promise.race([isReady, exited, timeout]);
  } catch (err) {
    await killChild(child);
    throw err;
  }
  return {
    kind: 'python-zeroconf',
    events: events.events,
    waitFor: (pred, ms, what) => events.waitFor(pred, ms, what, () => `stderr: ${stderr.trim()}`),
    stop: () => killChild(child),
  };
}
