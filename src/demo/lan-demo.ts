/**
 * `npm run demo` as root: muster doing its job on a real, throw-away LAN (DESIGN "Discovery", "Testing
 * the network for real"). It builds the netns test network (src/testnet/netlan.ts: a LAN
 * 198.18.0.0/24 and a far subnet 198.18.1.0/24 behind a router that no multicast crosses), starts a
 * registrar there, opens install mode for two nodes, and boots four nodes with the real CLI:
 *
 *   db-1          LAN, boots before the registrar exists (a machine powered on before its controller):
 *                 the registrar, which starts with install mode closed, hears it (heard), it asks
 *                 (pending), and waits; when the operator opens install mode, the waiting node is
 *                 admitted at once (its long poll answers), without asking again
 *   web-1, web-2  LAN, zero configuration (`muster join --cluster demo`): found by mDNS, admitted by
 *                 install mode (`--max 3` with db-1, which then closes)
 *   edge-1        far subnet, where mDNS cannot reach: a join token and `--registrar URL`
 *
 * It follows the registrar's events (`muster events --follow --json`) and shows each node's progress
 * live, then a summary (address, how admitted, serial, time to registered, `openssl verify`) and a
 * verdict; exit 0 only if every node registered and verified. Everything runs in namespaces named
 * `mdemo<pid><hex>-*`, removed at the end, also on Ctrl-C (exit 130) or SIGTERM (exit 143): nothing
 * is sent on the machine's real interfaces. The admin commands talk to the registrar over its Unix
 * socket, which needs no network.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  createTestLan,
  FAR_SUBNET,
  killChild,
  LAN_SUBNET,
  netnsAvailable,
  type LanHost,
  type TestLan,
  type Where,
} from '../testnet/netlan.js';
import { LiveView, paint, type Seg } from './live-view.js';

/** Every namespace the demo makes is named `<DEMO_PREFIX><pid><hex>-<host>`. */
export const DEMO_PREFIX = 'mdemo';

const BIN = path.resolve(import.meta.dirname, '../cli/main.js');
const CLUSTER = 'demo';
const PORT = 8443;
const STAGES = ['heard', 'pending', 'accepted', 'issued', 'active'] as const;
type Stage = (typeof STAGES)[number];
/** Longest the nodes may take, all together, before the demo calls it a failure. */
const NODES_DEADLINE_MS = 45_000;
/** How long the "operator" looks at a pending node before approving it. */
const OPERATOR_PAUSE_MS = 3000;
const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

interface MusterEvent {
  seq: number;
  at: string;
  type: string;
  name?: string;
  detail?: Record<string, unknown>;
}

interface NodeView {
  name: string;
  state: string;
  channel: string;
  addresses: string[];
  decision?: { rule: string; detail: string };
  serial?: string;
}

interface DemoNode {
  readonly name: string;
  readonly hostName: string;
  readonly where: Where;
  /** How the story means it to be admitted (shown before it boots). */
  readonly plan: string;
  host?: LanHost;
  child?: ChildProcess;
  command?: string;
  startedAt?: number;
  doneAt?: number;
  code?: number;
  at: Partial<Record<Stage, number>>;
  serial?: string;
  /** How it found the registrar: mDNS or the --registrar URL (from its log). */
  foundBy?: string;
  note: string;
  lastProblem?: string;
  done?: Promise<void>;
}

const sec = (ms: number): string => `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs the demo; resolves with the exit code. Aborting `ctl.signal` (SIGINT, SIGTERM) tears it down and rejects. */
export async function runLanDemo(ctl: { signal: AbortSignal; out?: NodeJS.WriteStream }): Promise<number> {
  const out = ctl.out ?? process.stdout;
  const tty = out.isTTY === true && process.env.TERM !== 'dumb';
  const say = (segs: Seg[] | string): void => {
    out.write(paint(typeof segs === 'string' ? [[segs]] : segs, tty) + '\n');
  };
  const tStart = Date.now();
  const prefix = `${DEMO_PREFIX}${process.pid}${randomBytes(1).toString('hex')}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-lan-demo-'));
  const sock = path.join(dir, 'admin.sock');
  const helpers = new Set<ChildProcess>();
  let lan: TestLan | undefined;
  let registrar: ChildProcess | undefined;
  let view: LiveView | undefined;
  let tLive = 0;
  let token = ''; // set by `muster tokens create`
  const rel = (t: number = Date.now()): string => `+${((t - tLive) / 1000).toFixed(1).padStart(4)}s`;

  const nodes: DemoNode[] = [
    { name: 'db-1', hostName: 'db1', where: 'lan', plan: 'approval', at: {}, note: '' },
    { name: 'web-1', hostName: 'web1', where: 'lan', plan: 'install mode', at: {}, note: '' },
    { name: 'web-2', hostName: 'web2', where: 'lan', plan: 'install mode', at: {}, note: '' },
    { name: 'edge-1', hostName: 'edge1', where: 'far', plan: 'token', at: {}, note: '' },
  ];
  const byName = new Map(nodes.map((n) => [n.name, n]));

  /** `muster <args> --admin-socket S`, run the way an operator would (from this shell, over the socket). */
  const admin = (args: string[]): Promise<{ code: number; out: string; err: string }> =>
    new Promise((resolve) => {
      const c = spawn(process.execPath, [BIN, ...args, '--admin-socket', sock], { stdio: ['ignore', 'pipe', 'pipe'] });
      helpers.add(c);
      let so = '';
      let se = '';
      c.stdout!.setEncoding('utf8').on('data', (d: string) => (so += d));
      c.stderr!.setEncoding('utf8').on('data', (d: string) => (se += d));
      c.on('error', (e) => (se += String(e)));
      c.on('close', (code) => {
        helpers.delete(c);
        resolve({ code: code ?? 1, out: so.trim(), err: se.trim() });
      });
    });

  const log = (segs: Seg[]): void => (view ? view.log(segs) : say(segs));
  /** `+1.2s  who       what     detail`: one line of the story. */
  const line = (who: string, what: string, detail: Seg[], style: Seg[1] = 'plain', t?: number): void =>
    log([[`${rel(t)}  `, 'dim'], [who.padEnd(10), 'bold'], [what.padEnd(9), style], ...detail]);
  /** A line about one node: `+1.2s  web-1   heard    ...`. */
  const nodeLog = (n: DemoNode, what: string, text: string, style: Seg[1] = 'plain', t?: number): void =>
    line(n.name, what, [[text]], style, t);

  let teardownDone: Promise<string> | undefined;
  /** Stops everything and removes the LAN and the temp dir; says what is left (nothing, normally). */
  const teardown = (): Promise<string> =>
    (teardownDone ??= (async () => {
      view?.stop();
      for (const c of helpers) c.kill('SIGKILL');
      if (registrar) await killChild(registrar); // SIGTERM: it withdraws its advertisement
      const made = lan ? lan.hosts.length + 1 : 0;
      await lan?.destroy();
      rmSync(dir, { recursive: true, force: true });
      const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter((l) => l.startsWith(prefix + '-'));
      return left.length === 0
        ? `test LAN removed (${made} namespaces ${prefix}-*); ${dir} removed`
        : `STILL PRESENT: ${left.join(', ')}`;
    })());

  ctl.signal.addEventListener('abort', () => void teardown(), { once: true });
  const checkAbort = (): void => {
    if (ctl.signal.aborted) throw ctl.signal.reason;
  };

  let url = '';
  let regStartedAt = 0;
  let dbPending!: () => void;
  const dbPendingP = new Promise<void>((r) => (dbPending = r));
  const approvals: Promise<void>[] = [];

  /** The "operator": looks at the pending node (its key) for a moment, then approves it with the real CLI. */
  const approveLater = async (n: DemoNode): Promise<void> => {
    await sleep(OPERATOR_PAUSE_MS);
    if (ctl.signal.aborted) return;
    line('operator', 'approves', [['$ ', 'dim'], [`muster nodes approve ${n.name}`, 'cyan']]);
    const r = await admin(['nodes', 'approve', n.name]);
    if (ctl.signal.aborted) return;
    log([[' '.repeat(27)], [r.code === 0 ? `-> ${r.out}` : `-> FAILED (${r.code}): ${r.err}`, r.code === 0 ? 'plain' : 'red']]);
  };

  /** One event of the registrar's log (`muster events --follow --json`). */
  const onEvent = (ev: MusterEvent): void => {
    const t = Date.parse(ev.at);
    const d = ev.detail ?? {};
    if (ev.type === 'install-mode') {
      if (d.on === false) {
        line('registrar', 'closes', [[`install mode: ${String(d.reason ?? '')}`]], 'yellow', t);
      }
      return;
    }
    const n = ev.name ? byName.get(ev.name) : undefined;
    if (!n || !(STAGES as readonly string[]).includes(ev.type)) return;
    const stage = ev.type as Stage;
    if (n.at[stage] !== undefined) return;
    n.at[stage] = t;
    let text = '';
    switch (stage) {
      case 'heard':
        text = `the registrar heard it over mDNS ("ready to register"), from ${(d.addresses as string[] | undefined)?.join(', ') ?? '?'}`;
        break;
      case 'pending':
        text = `waits: ${String(d.reason ?? '')}`;
        if (n.name === 'db-1') {
          // The story: db-1 waits until the operator opens install mode, which admits it at once.
          n.note = 'waiting: install mode is closed';
          dbPending();
        } else {
          // Anything else that ends up waiting, the operator approves.
          n.note = 'waiting for an operator';
          approvals.push(approveLater(n));
        }
        break;
      case 'accepted':
        text = String(d.reason ?? d.rule ?? '');
        break;
      case 'issued':
        n.serial = String(d.serial ?? '');
        text = `certificate serial ${n.serial}`;
        break;
      case 'active':
        text = 'the node acknowledged its credentials';
        break;
    }
    if (!tty) nodeLog(n, stage, text, stage === 'pending' ? 'yellow' : 'green', t);
  };

  /** The node's own side of the story, from its JSON log on stderr. */
  const onNodeLog = (n: DemoNode, line: string): void => {
    let rec: { level?: number | string; msg?: string; url?: string; err?: string };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      if (line.trim()) n.lastProblem = line.trim();
      return;
    }
    const msg = rec.msg ?? '';
    const level = typeof rec.level === 'number' ? rec.level : 30;
    const notes: Record<string, string> = {
      'found the registrar by mDNS': 'found the registrar by mDNS',
      'no registrar found by mDNS: using --registrar': 'no mDNS answer: using --registrar',
      'registrar verified': 'registrar verified; asking to join',
      'waiting for the registrar to accept this node': 'waiting for an operator',
      'credentials written': 'credentials checked and written',
      acknowledged: 'acknowledged',
    };
    if (msg === 'found the registrar by mDNS') n.foundBy = 'mDNS';
    if (msg === 'no registrar found by mDNS: using --registrar') n.foundBy = '--registrar';
    if (level >= 40) n.lastProblem = rec.err ? `${msg}: ${rec.err}` : msg;
    if (msg.startsWith('trusting the registrar CA')) n.note = 'trusting the CA on first use; the token proves it';
    else if (notes[msg]) n.note = notes[msg];
    else if (level >= 40 && !/no registrar found on the LAN/.test(rec.err ?? '')) n.note = n.lastProblem ?? msg;
    if (!tty && n.foundBy && (msg === 'found the registrar by mDNS' || msg.startsWith('no registrar found by mDNS'))) {
      nodeLog(n, 'node', `${msg}${rec.url ? ` (${rec.url})` : ''}`, 'dim');
    }
  };

  /** Boots a node: the real `muster join` in the node's namespace. */
  const boot = (n: DemoNode): void => {
    const stateDir = path.join(dir, n.name);
    const args = ['join', '--cluster', CLUSTER, '--name', n.name, '--state-dir', stateDir];
    const env: NodeJS.ProcessEnv = { ...process.env, MUSTER_LOG_FORMAT: 'json' };
    if (n.where === 'far') {
      // Outside the broadcast domain: it looks by mDNS for 2 s, hears nothing, uses the URL.
      args.push('--registrar', url, '--discovery-timeout', '2s');
      env.MUSTER_TOKEN = token;
    }
    n.command = `${n.where === 'far' ? 'MUSTER_TOKEN=$TOKEN ' : ''}muster ${args.join(' ').replaceAll(dir, '$D')}`;
    n.note = n.where === 'far' ? 'looking by mDNS (2 s), then --registrar' : url ? 'looking for the registrar by mDNS' : 'no registrar yet: advertising, looking by mDNS';
    n.startedAt = Date.now();
    const child = n.host!.spawn(process.execPath, [BIN, ...args], { env });
    n.child = child;
    line(n.name, 'boots', [['$ ', 'dim'], [n.command, 'cyan'], [`   (${n.host!.ip})`, 'dim']]);
    let errBuf = '';
    child.stdout!.resume(); // its one line ("registered ..."): the registrar's events say more
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      errBuf += d;
      let nl: number;
      while ((nl = errBuf.indexOf('\n')) >= 0) {
        const line = errBuf.slice(0, nl);
        errBuf = errBuf.slice(nl + 1);
        onNodeLog(n, line);
      }
    });
    n.done = new Promise((resolve) =>
      child.on('exit', (code, sig) => {
        n.doneAt = Date.now();
        n.code = code ?? (sig ? 128 : 1);
        if (!ctl.signal.aborted) {
          if (n.code === 0) nodeLog(n, 'done', `registered in ${sec(n.doneAt - n.startedAt!)} (muster join exited 0)`, 'green');
          else nodeLog(n, 'FAILED', `muster join exited ${n.code}${n.lastProblem ? `: ${n.lastProblem}` : ''}`, 'red');
        }
        resolve();
      }),
    );
  };

  /** The live block: a header and one line per node, the time each state was reached since it booted. */
  const rows = (): Seg[][] => {
    const frame = SPINNER[Math.floor(Date.now() / 100) % SPINNER.length]!;
    const head: Seg[] = [['  ' + 'NODE'.padEnd(8) + 'WHERE'.padEnd(6) + STAGES.map((s) => s.padEnd(10)).join('') + 'NOW', 'dim']];
    return [
      head,
      ...nodes.map((n): Seg[] => {
        const segs: Seg[] = [['  ' + n.name.padEnd(8), 'bold'], [n.where.padEnd(6), 'dim']];
        const reached = STAGES.map((s) => n.at[s] !== undefined);
        STAGES.forEach((s, i) => {
          const at = n.at[s];
          if (at !== undefined) segs.push([sec(at - (n.startedAt ?? at)).padEnd(10), s === 'pending' ? 'yellow' : 'green']);
          else if (reached.slice(i + 1).some(Boolean)) segs.push(['–'.padEnd(10), 'dim']);
          else segs.push([''.padEnd(10)]);
        });
        if (n.startedAt === undefined) segs.push([token ? 'boots in a moment' : n.plan === 'token' ? 'boots once it has a token' : 'boots once install mode is on', 'dim']);
        else if (n.code === 0) segs.push([`✔ registered in ${sec(n.doneAt! - n.startedAt)}`, 'green']);
        else if (n.code !== undefined) segs.push([`✘ exit ${n.code}${n.lastProblem ? `: ${n.lastProblem}` : ''}`, 'red']);
        else segs.push([`${frame} `, 'cyan'], [n.note, n.at.pending && !n.at.accepted ? 'yellow' : 'plain'], [`  ${sec(Date.now() - n.startedAt)}`, 'dim']);
        return segs;
      }),
    ];
  };

  /** The registrar, as in test/lan/discovery.test.ts: listening on the LAN, mDNS on its interface. */
  const startRegistrar = async (regHost: LanHost): Promise<{ url: string; ca: string }> => {
    const regArgs = ['registrar', '--listen', `0.0.0.0:${PORT}`, '--interface', regHost.ip, '--cluster', CLUSTER, '--state-dir', path.join(dir, 'registrar'), '--admin-socket', sock];
    line('registrar', 'starts', [['$ ', 'dim'], [`muster ${regArgs.join(' ').replaceAll(dir, '$D')}`, 'cyan'], [`   (${regHost.ip})`, 'dim']]);
    const reg = regHost.spawn(process.execPath, [BIN, ...regArgs], { env: { ...process.env, MUSTER_LOG_FORMAT: 'json' } });
    registrar = reg;
    regStartedAt = Date.now();
    return new Promise<{ url: string; ca: string }>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`the registrar did not start within 20 s:\n${buf}`)), 20_000);
      reg.stdout!.on('data', (c: Buffer) => {
        buf += c;
        const line = buf.split('\n').find((l) => l.includes('"registrar ready"'));
        if (line) {
          clearTimeout(timer);
          resolve(JSON.parse(line) as { url: string; ca: string });
        }
      });
      reg.stderr!.on('data', (c: Buffer) => (buf += c));
      reg.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the registrar exited (${code}):\n${buf.trim().split('\n').slice(-5).join('\n')}`));
      });
      ctl.signal.addEventListener('abort', () => reject(ctl.signal.reason), { once: true });
    });
  };

  /** Live progress comes from the registrar's own event log, as an operator would watch it. */
  const followEvents = (): void => {
    const follow = spawn(process.execPath, [BIN, 'events', '--follow', '--json', '--admin-socket', sock], { stdio: ['ignore', 'pipe', 'pipe'] });
    helpers.add(follow);
    follow.on('exit', () => helpers.delete(follow));
    let evBuf = '';
    follow.stdout!.setEncoding('utf8').on('data', (d: string) => {
      evBuf += d;
      let nl: number;
      while ((nl = evBuf.indexOf('\n')) >= 0) {
        const line = evBuf.slice(0, nl).trim();
        evBuf = evBuf.slice(nl + 1);
        try {
          if (line) onEvent(JSON.parse(line) as MusterEvent);
        } catch {
          /* not an event line */
        }
      }
    });
  };

  /** An operator command at set-up; its output shown (a token only by its id). */
  const operatorStep = async (args: string[]): Promise<string> => {
    checkAbort();
    const r = await admin(args);
    if (r.code !== 0) throw new Error(`muster ${args.join(' ')} failed (${r.code}): ${r.err}`);
    const shown = args[0] === 'tokens' ? `${r.out.split('.')[0]}.<secret>  (= $TOKEN)` : r.out;
    line('operator', 'runs', [['$ ', 'dim'], [`muster ${args.join(' ')}`, 'cyan'], [`  -> ${shown}`]]);
    return r.out;
  };

  try {
    say([['muster live demo', 'bold'], [`: a registrar and four nodes on a throw-away LAN of network namespaces`, 'plain']]);
    say([[`  LAN ${LAN_SUBNET} and a far subnet ${FAR_SUBNET} behind a router (no multicast crosses it);`, 'dim']]);
    say([[`  namespaces ${prefix}-*, state in ${dir} ($D below); all removed at the end or on Ctrl-C`, 'dim']]);

    lan = await createTestLan({ prefix });
    checkAbort();
    const regHost = await lan.addHost('registrar', 'lan');
    for (const n of nodes) n.host = await lan.addHost(n.hostName, n.where);
    checkAbort();
    say(`test LAN up: registrar ${regHost.ip}; ${nodes.map((n) => `${n.name} ${n.host!.ip}`).join(', ')}`);
    say('');
    say([['  db-1 boots before its registrar exists; the registrar starts with install mode closed;', 'dim']]);
    say([['  opening install mode (--max 3) admits the waiting db-1 at once, then web-1 and web-2;', 'dim']]);
    say([['  edge-1 comes from the far subnet with a token.', 'dim']]);
    say('');

    view = new LiveView({ out, tty, rows });
    tLive = Date.now();
    if (!tty) say([['  time  who       what     detail', 'dim']]);
    view.start();

    // A machine powered on before its controller: it advertises "ready to register" and keeps looking.
    const db = byName.get('db-1')!;
    boot(db);
    await sleep(1200);
    checkAbort();
    const ready = await startRegistrar(regHost);
    url = `https://${regHost.ip}:${PORT}`;
    line('registrar', 'ready', [[`${url}, cluster ${CLUSTER}, CA ${ready.ca}`]], 'green');
    followEvents();

    // The registrar starts closed: db-1 becomes pending. Then install mode for the two web nodes.
    await Promise.race([dbPendingP, db.done, sleep(12_000)]);
    checkAbort();
    await operatorStep(['install-mode', 'on', '--for', '5m', '--max', '3']);
    token = await operatorStep(['tokens', 'create', '--ttl', '10m', '--uses', '1']);

    // Staggered boots, so that each node's states can be seen.
    for (const name of ['web-1', 'web-2', 'edge-1']) {
      checkAbort();
      boot(byName.get(name)!);
      await sleep(700);
    }
    const deadline = sleep(NODES_DEADLINE_MS).then(() => 'deadline' as const);
    const aborted = new Promise<'aborted'>((r) => ctl.signal.addEventListener('abort', () => r('aborted'), { once: true }));
    const all = (async () => {
      await Promise.all(nodes.map((n) => n.done));
      return 'done' as const;
    })();
    const outcome = await Promise.race([all, deadline, aborted]);
    checkAbort();
    if (outcome === 'deadline') {
      log([['not every node registered within ' + sec(NODES_DEADLINE_MS) + '; stopping them', 'red']]);
      await Promise.all(nodes.map((n) => (n.child ? killChild(n.child) : undefined)));
    }
    await Promise.all(approvals);
    // The node acks before it exits; its `active` event may be a moment behind on the stream.
    for (let i = 0; i < 30 && nodes.some((n) => n.code === 0 && n.at.active === undefined); i++) await sleep(100);
    view.stop();
    view = undefined;
    checkAbort();

    // What the registrar says about each node (decision, serial), then the node's files.
    const list = await admin(['nodes', 'list', '--json']);
    const records = new Map<string, NodeView>();
    if (list.code === 0) for (const r of (JSON.parse(list.out) as { items: NodeView[] }).items) records.set(r.name, r);
    const verify = nodes.map((n) => {
      const nd = path.join(dir, n.name);
      const v = spawnSync('openssl', ['verify', '-CAfile', path.join(nd, 'ca.crt'), path.join(nd, 'node.crt')], { encoding: 'utf8' });
      const text = (v.error ? `openssl: ${v.error.message}` : (v.stdout || v.stderr)).trim().split('\n').pop() ?? '';
      return { ok: v.status === 0 && text.endsWith(': OK'), text: v.status === 0 ? 'OK' : text.split(': ').slice(-1)[0] ?? text };
    });

    const headers = ['NODE', 'SUBNET', 'ADDRESS', 'FOUND BY', 'ADMITTED BY', 'SERIAL', 'REGISTERED IN', 'VERIFY'];
    const notes: string[] = [];
    const table = nodes.map((n, i) => {
      const rec = records.get(n.name);
      const dec = rec?.decision;
      const how = !dec ? '-' : dec.rule === 'install-mode' ? 'install mode' : dec.detail.replace(/ \(admin socket\)$/, '');
      let took = n.code === 0 && n.startedAt !== undefined ? sec(n.doneAt! - n.startedAt) : `exit ${n.code ?? '-'}`;
      if (n.code === 0 && n.at.pending !== undefined && n.at.accepted !== undefined) {
        took += ' *';
        const early = regStartedAt - n.startedAt!;
        notes.push(
          `  * from boot: ${n.name}${early > 0 ? ` booted ${sec(early)} before the registrar started and` : ''} waited ${sec(n.at.accepted - n.at.pending)} ${dec?.rule === 'install-mode' ? 'until install mode opened' : 'for the operator'}`,
        );
      }
      return [
        n.name,
        n.where === 'lan' ? 'LAN' : 'far',
        `${rec?.addresses[0] ?? n.host?.ip ?? '-'}/24`,
        n.foundBy ?? '-',
        how,
        rec?.serial ?? n.serial ?? '-',
        took,
        verify[i]!.text,
      ];
    });
    const widths = headers.map((h, c) => Math.max(h.length, ...table.map((r) => r[c]!.length)));
    const fmt = (r: string[]): string => '  ' + r.map((v, c) => v.padEnd(widths[c]!)).join('  ').trimEnd();
    say('');
    say([[fmt(headers), 'bold']]);
    for (const [i, r] of table.entries()) say([[fmt(r), verify[i]!.ok && nodes[i]!.code === 0 ? 'plain' : 'red']]);
    for (const l of notes) say([[l, 'dim']]);
    say([['  VERIFY: openssl verify -CAfile $D/<node>/ca.crt $D/<node>/node.crt', 'dim']]);

    const good = nodes.filter((n, i) => n.code === 0 && verify[i]!.ok).length;
    const gone = await teardown();
    const ok = good === nodes.length && !gone.startsWith('STILL');
    say('');
    say([
      [ok ? '✔ ' : '✘ ', ok ? 'green' : 'red'],
      [`${good} of ${nodes.length} nodes registered and verified by openssl in ${sec(Date.now() - tStart)}`, 'bold'],
    ]);
    say([[`  registrar stopped; ${gone}`, ok ? 'dim' : 'red']]);
    return ok ? 0 : 1;
  } catch (err) {
    if (ctl.signal.aborted) {
      const gone = await teardown();
      say('interrupted: registrar and nodes stopped');
      say(`  ${gone}`);
      throw err;
    }
    view?.stop();
    const gone = await teardown();
    say([['✘ demo failed: ', 'red'], [(err as Error).message]]);
    say(gone);
    return 1;
  } finally {
    await teardown();
  }

}

/** The entry point: runs the demo, turns SIGINT/SIGTERM into a clean teardown, exits. */
export async function runLanDemoMain(): Promise<never> {
  const ac = new AbortController();
  let code: number | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) return; // a second Ctrl-C: teardown is already under way
    code = sig === 'SIGINT' ? 130 : 143;
    // Abort first: the live view draws itself a last time (synchronously), then this line goes below it.
    ac.abort(new Error(`interrupted by ${sig}`));
    process.stdout.write(`interrupted (${sig}): stopping the nodes and the registrar, removing the test LAN ...\n`);
  };
  // Installed before the test LAN's own handlers (src/testnet/netlan.ts), which then remove the
  // namespaces synchronously and, seeing this listener, leave the exit to us.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => {
    if (process.stdout.isTTY) process.stdout.write('\x1b[?25h');
  });
  try {
    code = await runLanDemo({ signal: ac.signal });
  } catch (err) {
    if (!ac.signal.aborted) {
      console.error(`demo failed: ${(err as Error).message}`);
      code = 1;
    }
  }
  process.exit(code ?? 1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const a = netnsAvailable();
  if (!a.ok) {
    console.error(`the LAN demo needs network namespaces: ${a.reason}`);
    process.exit(1);
  }
  void runLanDemoMain();
}
