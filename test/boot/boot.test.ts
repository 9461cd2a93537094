/**
 * The units under a real systemd as PID 1 (issue 13, item 3): systemd-nspawn containers on the
 * cached Debian rootfs (test/boot/make-rootfs.sh, built by .ci/run), on the test LAN (network
 * namespaces, 198.18.0.0/24: no packet on the machine's interfaces).
 *
 * The image is built as an operator builds one, from outside: `npm pack`, the tarball installed into
 * the image tree with `npm install -g --offline --prefix IMAGE/usr/local` (dependencies from the
 * cache `npm ci` filled), then `muster install-units --prefix IMAGE` run by this machine's muster,
 * and the units enabled with `systemctl --root=IMAGE enable`. Node comes from this machine,
 * bind-mounted read-only (bookworm's nodejs is 18).
 *
 * One registrar container (muster-registrar.service, hardened, as the user muster) and one node
 * container (muster-join.service, muster-renew.timer, and a unit of the operator's that requires
 * muster-registered.target) boot on the same LAN: the node registers over mDNS while install mode
 * is on. The tests run in order, each on what the one before left.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../helpers/cli.js';
import { testLanFixture, type LanHost } from '../helpers/netlan.js';
import { bootSuite, Container, overlay, runOk, type Overlay } from './nspawn.js';

const suite = bootSuite('test/boot/boot.test.ts');
const ROOT = path.resolve(import.meta.dirname, '../..');
const CLUSTER = 'boot';
/** Any of these in a service's journal is its sandbox refusing it something. */
const DENIED =
  /permission denied|EACCES|EPERM|operation not permitted|read-only file system|SIGSYS|bad system call|peer credentials/i;

/** `openssl verify`: the node's certificate chains to the CA it holds (an independent check). */
const verified = (dir: string): boolean =>
  spawnSync('openssl', ['verify', '-CAfile', path.join(dir, 'ca.crt'), path.join(dir, 'node.crt')]).status ===
  0;

/** The operator's service that needs the credentials (systemd/README.md "Services that need the credentials"). */
const CREDS_USER = `[Unit]
Description=boot test: a service that needs this machine's muster credentials
Requires=muster-registered.target
After=muster-registered.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'mkdir -p /var/lib/creds-user && cp /var/lib/muster/node.crt /var/lib/creds-user/node.crt'

[Install]
WantedBy=muster-registered.target
`;

/**
 * Node certificates live 90 s here, so that one renews during the test (at two thirds of its
 * lifetime, 60 s after it was issued) while the reboot still finds it valid.
 */
const CERT_LIFETIME = '90s';
/** The test's drop-in (an operator's would be `systemctl edit`): the daily timer fires every few seconds. */
const RENEW_TIMER_SOON = `[Timer]
OnCalendar=
RandomizedDelaySec=0
Persistent=false
OnActiveSec=2s
OnUnitInactiveSec=3s
AccuracySec=1s
`;

describe.skipIf(suite.skip)('the units under systemd in nspawn containers', () => {
  const fx = testLanFixture('muster-boot-');
  let layer: string;
  let installOutput: string;
  const overlays: Overlay[] = [];
  const containers: Container[] = [];
  let regHost: LanHost;
  let nodeHost: LanHost;
  let registrar: Container;
  let node: Container;
  let firstCert: string;

  beforeAll(async () => {
    // The image layer every container boots: muster installed as an operator installs it.
    const image = await overlay([suite.rootfs], path.join(fx.dir, 'image'));
    overlays.push(image);
    const pack = path.join(fx.dir, 'pack');
    mkdirSync(pack);
    // --ignore-scripts: dist is already built (global setup); rebuilding it here would race other tests.
    const info = JSON.parse(
      await runOk('npm', ['pack', '--ignore-scripts', '--pack-destination', pack, '--json', ROOT]),
    )[0] as { filename: string };
    await runOk('npm', [
      'install',
      '-g',
      '--offline',
      '--prefix',
      path.join(image.root, 'usr/local'),
      '--no-audit',
      '--no-fund',
      path.join(pack, info.filename),
    ]);
    // The packed CLI runs (a tarball missing part of the build would only show as a restart loop).
    await runOk(process.execPath, [path.join(image.root, 'usr/local/bin/muster'), '--version']);
    installOutput = await runOk(process.execPath, [
      BIN,
      'install-units',
      '--prefix',
      image.root,
      '--no-reload',
    ]);
    await image.unmount();
    layer = image.upper;
    regHost = await fx.lan.addHost('reg', 'lan');
    nodeHost = await fx.lan.addHost('node1', 'lan');
  }, 300_000);

  afterAll(async () => {
    for (const c of containers) await c.poweroff(30_000);
    for (const o of overlays.reverse()) await o.unmount();
  }, 120_000);

  /** A container on the image layer: its own overlay, `setup` run on its tree before it boots. */
  async function container(
    name: string,
    host: LanHost,
    setup: (root: string) => Promise<void>,
  ): Promise<Container> {
    const o = await overlay([layer, suite.rootfs], path.join(fx.dir, name));
    overlays.push(o);
    await setup(o.root);
    const c = new Container(name, o.root, host.ns);
    containers.push(c);
    return c;
  }

  const active = (c: Container, unit: string) => async () =>
    (await c.exec('systemctl', ['is-active', unit])).stdout.trim() === 'active' ? true : undefined;
  const muster = (c: Container, args: string[]) => c.exec('muster', args);

  it('install-units --prefix wrote the units for muster as installed in the image', () => {
    const unit = (u: string) => readFileSync(path.join(layer, 'etc/systemd/system', u), 'utf8');
    expect(unit('muster-join.service')).toMatch(/^ExecStart=\/usr\/local\/bin\/muster join$/m);
    expect(unit('muster-renew.service')).toMatch(/^ExecStart=\/usr\/local\/bin\/muster renew$/m);
    expect(unit('muster-registrar.service')).toMatch(/^ExecStart=\/usr\/local\/bin\/muster registrar /m);
    // The only warning: node is not in the image (here it is bind-mounted when the container boots).
    expect(installOutput.split('\n').filter((l) => l.startsWith('warning:'))).toEqual([
      expect.stringMatching(/has no node in .*: \/usr\/local\/bin\/muster needs one/),
    ]);
    expect(readFileSync(path.join(layer, 'etc/passwd'), 'utf8')).toMatch(/^muster:x:\d+:\d+:/m);
  });

  it('the registrar container runs muster-registrar.service under its hardening, as muster', async () => {
    registrar = await container('reg', regHost, async (root) => {
      appendFileSync(
        path.join(root, 'etc/muster/muster.env'),
        `MUSTER_CLUSTER=${CLUSTER}\nMUSTER_CERT_LIFETIME=${CERT_LIFETIME}\n`,
      );
      await runOk('systemctl', [`--root=${root}`, 'enable', 'muster-registrar.service']);
    });
    await registrar.boot();
    await registrar.waitFor(
      'muster-registrar.service active',
      active(registrar, 'muster-registrar.service'),
      { units: ['muster-registrar.service'] },
    );
    // Install mode through the admin socket (root, over SO_PEERCRED read by perl in the sandbox).
    const on = await registrar.waitFor(
      'install mode on',
      async () => {
        const r = await muster(registrar, ['install-mode', 'on', '--for', '30m']);
        return r.code === 0 ? r : undefined;
      },
      { units: ['muster-registrar.service'] },
    );
    expect(on.code, on.stderr).toBe(0);

    const svc = await registrar.show('muster-registrar.service', [
      'ActiveState',
      'SubState',
      'NRestarts',
      'MainPID',
    ]);
    expect(svc).toMatchObject({ ActiveState: 'active', SubState: 'running', NRestarts: '0' });
    const passwd = readFileSync(path.join(registrar.root, 'etc/passwd'), 'utf8');
    const uid = /^muster:x:(\d+):/m.exec(passwd)![1];
    const status = (await registrar.exec('cat', [`/proc/${svc.MainPID}/status`])).stdout;
    expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe(uid);
    expect(/^CapEff:\s+(\w+)/m.exec(status)?.[1]).toBe('0000000000000000');
    expect(/^NoNewPrivs:\s+(\d)/m.exec(status)?.[1]).toBe('1');
    expect(/^Seccomp:\s+(\d)/m.exec(status)?.[1]).toBe('2');
    // Its state directory, the only place it may write: its own, 0700, and written to.
    const state = path.join(registrar.root, 'var/lib/muster-registrar');
    expect(statSync(state).uid).toBe(Number(uid));
    expect(statSync(state).mode & 0o777).toBe(0o700);
    // What it wrote there under ProtectSystem=strict: its CA (the key private to it) and its store.
    expect(readdirSync(state)).toEqual(expect.arrayContaining(['ca', 'registry']));
    const ca = readdirSync(path.join(state, 'ca'));
    expect(ca).toEqual(expect.arrayContaining(['ca.crt', 'ca.key']));
    for (const f of ca) expect(statSync(path.join(state, 'ca', f)).uid, f).toBe(Number(uid));
  }, 300_000);

  it('the node container boots, registers over mDNS under install mode and reaches muster-registered.target; the unit that requires it runs', async () => {
    node = await container('node1', nodeHost, async (root) => {
      appendFileSync(path.join(root, 'etc/muster/muster.env'), `MUSTER_CLUSTER=${CLUSTER}\n`);
      writeFileSync(path.join(root, 'etc/systemd/system/creds-user.service'), CREDS_USER);
      await runOk('systemctl', [
        `--root=${root}`,
        'enable',
        'muster-join.service',
        'muster-renew.timer',
        'creds-user.service',
      ]);
    });
    await node.boot();
    await node.waitFor('muster-registered.target active', active(node, 'muster-registered.target'), {
      units: ['muster-join.service'],
    });
    await node.waitFor('creds-user.service active', active(node, 'creds-user.service'), {
      units: ['creds-user.service'],
    });

    const join = await node.show('muster-join.service', ['Result', 'ExecMainStatus']);
    expect(join).toMatchObject({ Result: 'success', ExecMainStatus: '0' });
    expect(await node.journal('muster-join.service')).toContain('found the registrar by mDNS');
    const state = path.join(node.root, 'var/lib/muster');
    firstCert = readFileSync(path.join(state, 'node.crt'), 'utf8');
    expect(verified(state)).toBe(true);
    // The operator's unit ran after the credentials were there: it copied the certificate.
    expect(readFileSync(path.join(node.root, 'var/lib/creds-user/node.crt'), 'utf8')).toBe(firstCert);

    // The registrar (in its container) admitted it by install mode, under the container's host name.
    const list = JSON.parse((await muster(registrar, ['nodes', 'list', '--json'])).stdout);
    expect(list.items).toHaveLength(1);
    expect(list.items[0]).toMatchObject({ name: 'node1', state: 'active' });
    expect(list.items[0].decision.rule).toBe('install-mode');
  }, 300_000);

  it('after a reboot the join exits 0 at once (already registered); the renewal timer renews the certificate when due', async () => {
    // The drop-in takes effect at the next boot (no daemon-reload: systemd reads it as it starts).
    const dropIns = path.join(node.root, 'etc/systemd/system/muster-renew.timer.d');
    mkdirSync(dropIns);
    writeFileSync(path.join(dropIns, 'test.conf'), RENEW_TIMER_SOON);
    await node.reboot();
    await node.waitFor('muster-registered.target active', active(node, 'muster-registered.target'), {
      units: ['muster-join.service'],
    });
    const join = await node.show('muster-join.service', ['Result', 'ExecMainStatus', 'NRestarts']);
    expect(join).toMatchObject({ Result: 'success', ExecMainStatus: '0', NRestarts: '0' });
    const log = await node.journal('muster-join.service');
    expect(log).toContain('already registered');
    expect(log).not.toMatch(/found the registrar by mDNS/);

    const state = path.join(node.root, 'var/lib/muster');
    const renewed = await node.waitFor(
      'a renewed node.crt',
      async () => {
        const now = readFileSync(path.join(state, 'node.crt'), 'utf8');
        return now !== firstCert ? now : undefined;
      },
      { units: ['muster-renew.service', 'muster-renew.timer'] },
    );
    await node.waitFor(
      'muster-renew.service finished',
      async () => {
        const s = await node.show('muster-renew.service', ['ActiveState']);
        return s.ActiveState === 'inactive' ? true : undefined;
      },
      { units: ['muster-renew.service', 'muster-renew.timer'] },
    );
    const renew = await node.show('muster-renew.service', ['Result', 'ExecMainStatus']);
    expect(renew).toMatchObject({ Result: 'success', ExecMainStatus: '0' });
    const timers = await node.exec('systemctl', ['list-timers', '--all', '--no-pager', 'muster-renew.timer']);
    expect(timers.stdout).toMatch(/muster-renew\.timer\s+muster-renew\.service/);
    expect(new X509Certificate(renewed).serialNumber).not.toBe(new X509Certificate(firstCert).serialNumber);
    expect(verified(state)).toBe(true);
    expect(existsSync(path.join(state, 'node.key'))).toBe(true);
    const renewLog = await node.journal('muster-renew.service');
    expect(renewLog).not.toMatch(DENIED);
    expect(log).not.toMatch(DENIED);
  }, 300_000);

  it("the registrar's sandbox refused it nothing while it served the join and the renewal", async () => {
    const svc = await registrar.show('muster-registrar.service', ['ActiveState', 'NRestarts']);
    expect(svc).toMatchObject({ ActiveState: 'active', NRestarts: '0' });
    const log = await registrar.journal('muster-registrar.service');
    expect(log).toContain('registrar ready');
    expect(log).not.toMatch(DENIED);
    const list = JSON.parse((await muster(registrar, ['nodes', 'list', '--json'])).stdout);
    expect(list.items).toEqual([expect.objectContaining({ name: 'node1', state: 'active' })]);
  }, 120_000);
});
