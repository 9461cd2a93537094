/**
 * netlan: a real, throw-away test network built from Linux network namespaces (DESIGN "Testing the
 * network for real"). mDNS is multicast: no test may send it on the machine's real interfaces, so every
 * test that opens an mDNS socket runs its processes inside the namespaces built here. It lives in src
 * (compiled into dist) because `npm run demo` builds the same LAN (src/demo/lan-demo.ts); the tests
 * reach it through test/helpers/netlan.ts, which adds the test-only parts (netnsGate, the sniffer).
 *
 * Topology (all names carry a per-run prefix, `mt<pid><rand>`; nothing outside them is touched):
 *
 *     <prefix>-<host>  eth0 198.18.0.x/24 ──┐                    ┌── eth0 198.18.1.x/24  <prefix>-<host>
 *     <prefix>-<host>  eth0 198.18.0.y/24 ──┤ brlan     brfar    ├── ...
 *                                           └─ <prefix>-r (router) ┘
 *                                              brlan 198.18.0.1/24, brfar 198.18.1.1/24
 *
 * - Both bridges live in the router namespace; the bridge interfaces carry the router's addresses.
 * - The router forwards unicast IPv4 (net.ipv4.ip_forward=1 inside its namespace only). It runs no
 *   multicast routing, so link-local multicast such as mDNS (224.0.0.251, RFC 6762 §11) never crosses:
 *   the "far" subnet is outside the LAN's broadcast domain.
 * - Every host namespace gets `lo` up, its veth up, an address, a default route via the router and a
 *   `224.0.0.0/4` route on its veth (without it, multicast sends fail with ENETUNREACH or leave by the
 *   wrong interface: CONVENTIONS "Known pitfalls"). IPv6 is disabled in every namespace so the only
 *   traffic is what the tests send.
 * - `ip netns exec` does not isolate the UTS namespace: every host shares the machine's host name.
 *   Code under test must be given an explicit host name (e.g. `<name>.local`).
 *
 * API
 *   netnsAvailable(): { ok: true } | { ok: false; reason }      root, `ip` present, a netns can be made
 *                                                                (NETLAN_FORCE_UNAVAILABLE=<why> forces "no",
 *                                                                to check the skip and CI paths)
 *   createTestLan({ prefix? }): Promise<TestLan>
 *     lan.addHost(name, 'lan' | 'far'): Promise<LanHost>          next free address on that subnet
 *     lan.hosts: LanHost[]
 *     lan.destroy(): Promise<void>                                 idempotent; kills every process in
 *                                                                  our namespaces, deletes them all
 *   LanHost { name, ns, ip, where, spawn(cmd, args, opts?), exec(cmd, args) }
 *   killChild(child, graceMs?): SIGTERM, then SIGKILL; resolves once it exited
 *
 * Cleanup: destroy() in afterAll (or the demo's finally); an 'exit' handler (and SIGINT/SIGTERM) deletes
 * whatever is left of the namespaces this process created, synchronously. Namespaces we did not create are never touched.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export type Where = 'lan' | 'far';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface LanHost {
  /** The name given to addHost. */
  readonly name: string;
  /** The network namespace the host's processes run in. */
  readonly ns: string;
  /** The host's IPv4 address on its subnet. */
  readonly ip: string;
  readonly where: Where;
  /** Starts `cmd args` inside the host's namespace (`ip netns exec <ns> cmd args`); killed by destroy(). */
  spawn(cmd: string, args: string[], opts?: { env?: NodeJS.ProcessEnv; cwd?: string }): ChildProcess;
  /** Runs `cmd args` inside the namespace to completion. */
  exec(cmd: string, args: string[], opts?: { timeoutMs?: number; input?: string }): Promise<ExecResult>;
}

export interface TestLan {
  readonly prefix: string;
  readonly routerNs: string;
  readonly hosts: readonly LanHost[];
  addHost(name: string, where: Where): Promise<LanHost>;
  destroy(): Promise<void>;
}

export const LAN_SUBNET = '198.18.0.0/24';
export const FAR_SUBNET = '198.18.1.0/24';
export const LAN_ROUTER = '198.18.0.1';
export const FAR_ROUTER = '198.18.1.1';
const FIRST_HOST_OCTET = 10;
const MAX_HOSTS_PER_SUBNET = 200;

function ipSync(args: string[]): ExecResult {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  return {
    code: r.status ?? -1,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? (r.error ? String(r.error) : ''),
  };
}

function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 15_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + String(err) });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr });
    });
    if (child.stdin) {
      child.stdin.on('error', () => undefined); // the command may exit without reading its input
      child.stdin.end(opts.input);
    }
  });
}

/** Runs `ip ...`; throws with the command and stderr on failure (the harness must not half-build silently). */
async function ip(...args: string[]): Promise<string> {
  const r = await run('ip', args);
  if (r.code !== 0) throw new Error(`netlan: 'ip ${args.join(' ')}' failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

let availability: { ok: true } | { ok: false; reason: string } | undefined;

/** Whether this machine can build a netns LAN: root, `ip` (iproute2) present, and a namespace can be made. */
export function netnsAvailable(): { ok: true } | { ok: false; reason: string } {
  if (availability) return availability;
  availability = probeAvailability();
  return availability;
}

function probeAvailability(): { ok: true } | { ok: false; reason: string } {
  // Test-only override to exercise the skip (and CI=true failure) paths on a machine that has netns.
  const forced = process.env.NETLAN_FORCE_UNAVAILABLE;
  if (forced) return { ok: false, reason: `NETLAN_FORCE_UNAVAILABLE=${forced}` };
  if (process.platform !== 'linux')
    return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { ok: false, reason: `not root (uid ${process.getuid()}); 'ip netns' needs root` };
  }
  const v = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (v.error || v.status !== 0) return { ok: false, reason: "the 'ip' command (iproute2) is not installed" };
  const probe = `mt${process.pid}probe${randomBytes(2).toString('hex')}`;
  const add = ipSync(['netns', 'add', probe]);
  if (add.code !== 0) return { ok: false, reason: `cannot create a network namespace: ${add.stderr.trim()}` };
  ipSync(['netns', 'del', probe]);
  return { ok: true };
}

// ---------------------------------------------------------------------------------------------------
// Last-resort cleanup: namespaces this process created and has not deleted yet.
const liveNamespaces = new Set<string>();
const liveChildren = new Set<ChildProcess>();
let handlersInstalled = false;

function cleanupSync(): void {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  liveChildren.clear();
  for (const ns of liveNamespaces) {
    killNamespacePidsSync(ns);
    ipSync(['netns', 'del', ns]);
  }
  liveNamespaces.clear();
}

function killNamespacePidsSync(ns: string): void {
  const r = ipSync(['netns', 'pids', ns]);
  for (const line of r.stdout.split('\n')) {
    const pid = Number(line.trim());
    if (Number.isInteger(pid) && pid > 1 && pid !== process.pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* exited meanwhile */
      }
    }
  }
}

function onSignal(sig: NodeJS.Signals): void {
  cleanupSync();
  process.removeListener(sig, onSignal);
  // Re-raise so the default action (or another handler) still ends the process.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', cleanupSync);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

// ---------------------------------------------------------------------------------------------------

function validatePrefix(prefix: string): void {
  if (!/^[a-z][a-z0-9]{1,15}$/.test(prefix))
    throw new Error(`netlan: bad prefix '${prefix}' ([a-z][a-z0-9]{1,15})`);
}

export async function createTestLan(opts: { prefix?: string } = {}): Promise<TestLan> {
  const prefix = opts.prefix ?? `mt${process.pid}${randomBytes(2).toString('hex')}`;
  validatePrefix(prefix);
  const a = netnsAvailable();
  if (!a.ok) throw new Error(`netlan: network namespaces unavailable: ${a.reason}`);
  installHandlers();

  const routerNs = `${prefix}-r`;
  const created: string[] = [];
  const hosts: LanHost[] = [];
  const children = new Set<ChildProcess>();
  const nextOctet: Record<Where, number> = { lan: FIRST_HOST_OCTET, far: FIRST_HOST_OCTET };
  let ifIndex = 0;
  let destroyed = false;
  let destroying: Promise<void> | undefined;

  const addNs = async (ns: string): Promise<void> => {
    await ip('netns', 'add', ns);
    created.push(ns);
    liveNamespaces.add(ns);
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
    // Only what the tests send: no IPv6 router solicitations, MLD or DAD chatter.
    await nsExec(ns, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1']);
    await nsExec(ns, 'sysctl', ['-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1']);
  };

  const destroy = async (): Promise<void> => {
    if (destroying) return destroying;
    destroying = (async () => {
      destroyed = true;
      await Promise.all([...children].map((c) => killChild(c)));
      for (const ns of [...created].reverse()) {
        killNamespacePidsSync(ns); // anything a spawned process left behind in our namespace
        const r = await run('ip', ['netns', 'del', ns]);
        if (r.code !== 0 && !/No such file/.test(r.stderr)) {
          console.warn(`netlan: could not delete namespace ${ns}: ${r.stderr.trim()}`);
          continue;
        }
        liveNamespaces.delete(ns);
      }
      created.length = 0;
    })();
    return destroying;
  };

  try {
    await addNs(routerNs);
    for (const [br, addr] of [
      ['brlan', `${LAN_ROUTER}/24`],
      ['brfar', `${FAR_ROUTER}/24`],
    ] as const) {
      // STP off: ports forward at once. Snooping off: the bridge floods multicast like a dumb switch.
      await ip('-n', routerNs, 'link', 'add', br, 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0');
      await ip('-n', routerNs, 'addr', 'add', addr, 'dev', br);
      await ip('-n', routerNs, 'link', 'set', br, 'up');
    }
    // Unicast routing between the subnets; there is no multicast routing daemon, so mDNS stays local.
    await nsExecOk(routerNs, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  } catch (err) {
    await destroy();
    throw err;
  }

  const addHost = async (name: string, where: Where): Promise<LanHost> => {
    if (destroyed) throw new Error('netlan: addHost after destroy()');
    if (!/^[a-z][a-z0-9]{0,19}$/.test(name))
      throw new Error(`netlan: bad host name '${name}' ([a-z][a-z0-9]{0,19})`);
    if (hosts.some((h) => h.name === name)) throw new Error(`netlan: host '${name}' already exists`);
    if (nextOctet[where] >= FIRST_HOST_OCTET + MAX_HOSTS_PER_SUBNET)
      throw new Error(`netlan: subnet ${where} is full`);
    const octet = nextOctet[where]++;
    const ns = `${prefix}-${name}`;
    const addr = where === 'lan' ? `198.18.0.${octet}` : `198.18.1.${octet}`;
    const gw = where === 'lan' ? LAN_ROUTER : FAR_ROUTER;
    const port = `${where === 'lan' ? 'l' : 'f'}${++ifIndex}`;
    await addNs(ns);
    await ip('-n', routerNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await ip('-n', routerNs, 'link', 'set', port, 'master', where === 'lan' ? 'brlan' : 'brfar');
    await ip('-n', routerNs, 'link', 'set', port, 'up');
    await ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
    await ip('-n', ns, 'link', 'set', 'eth0', 'up');
    await ip('-n', ns, 'route', 'add', 'default', 'via', gw);
    // Multicast leaves by eth0 (CONVENTIONS pitfalls: without it sends to 224.0.0.251 fail).
    await ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0');

    const host: LanHost = {
      name,
      ns,
      ip: addr,
      where,
      spawn(cmd, args, o = {}) {
        if (destroyed) throw new Error('netlan: spawn after destroy()');
        const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
          env: o.env ?? process.env,
          cwd: o.cwd,
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        child.stdin?.on('error', () => undefined); // EPIPE when the process is gone: not the test's concern
        children.add(child);
        liveChildren.add(child);
        child.on('exit', () => {
          children.delete(child);
          liveChildren.delete(child);
        });
        return child;
      },
      exec(cmd, args, o = {}) {
        return nsExec(ns, cmd, args, o);
      },
    };
    hosts.push(host);
    return host;
  };

  return {
    prefix,
    routerNs,
    hosts,
    addHost,
    destroy,
  };
}

function nsExec(
  ns: string,
  cmd: string,
  args: string[],
  o: { timeoutMs?: number; input?: string } = {},
): Promise<ExecResult> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], o);
}

async function nsExecOk(ns: string, cmd: string, args: string[]): Promise<void> {
  const r = await nsExec(ns, cmd, args);
  if (r.code !== 0) throw new Error(`netlan: '${cmd} ${args.join(' ')}' in ${ns} failed: ${r.stderr.trim()}`);
}

/** SIGTERM, then SIGKILL after 2 s; resolves when the child has exited. */
export function killChild(child: ChildProcess, graceMs = 2000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
