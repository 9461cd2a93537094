/**
 * `muster install-units --prefix IMAGE` names muster as the image runs it (issue 13, item 3): an
 * image built on another machine boots without the builder's /home/me/muster/dist/cli/main.js, and
 * a unit naming it restarts in a loop. Checked on the unit text install-units writes: with a prefix
 * (muster found inside the image, not installed there yet, --bin), without one (this machine's
 * binary, as before), and the refusals. test/boot/ boots an image built this way.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseCommandLine } from '../../src/cli/cli.js';
import { isMusterError } from '../../src/common/errors.js';
import { BIN } from '../helpers/cli.js';
import { cli } from './helpers.js';

const UNITS = [
  'muster-registrar.service',
  'muster-join.service',
  'muster-registered.target',
  'muster-renew.service',
  'muster-renew.timer',
];
/** The commands the units run, by unit (the target and the timer run none). */
const VERBS: Record<string, string> = {
  'muster-registrar.service': 'registrar ',
  'muster-join.service': 'join',
  'muster-renew.service': 'renew',
};

let tmp: string;
let image: string;
beforeEach(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'muster-install-units-'));
  image = path.join(tmp, 'image');
  mkdirSync(image);
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

/** Writes a file into the image tree (its parents made), mode given. */
function put(rel: string, text: string, mode = 0o755): string {
  const f = path.join(image, rel);
  mkdirSync(path.dirname(f), { recursive: true });
  writeFileSync(f, text);
  chmodSync(f, mode);
  return f;
}

/** muster as `npm install -g --prefix IMAGE/usr/local` lays it out, plus a node on the image's PATH. */
function installMusterInImage(opts: { node?: boolean } = {}): void {
  put('usr/local/lib/node_modules/muster/dist/cli/main.js', '#!/usr/bin/env node\nimport "./cli.js";\n');
  mkdirSync(path.join(image, 'usr/local/bin'), { recursive: true });
  symlinkSync('../lib/node_modules/muster/dist/cli/main.js', path.join(image, 'usr/local/bin/muster'));
  if (opts.node !== false) put('usr/bin/node', '\x7fELF', 0o755);
}

/** Runs `muster install-units ARGS` as main.ts does (parse, validate, run); the lines it printed. */
async function installUnits(args: string[]): Promise<string[]> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    const parsed = (await parseCommandLine(['install-units', '--no-reload', ...args]))!;
    await parsed.spec.run(parsed.values as never, parsed.ctx);
  } finally {
    spy.mockRestore();
  }
  return out.split('\n').filter((l) => l !== '');
}

const unit = (u: string): string => readFileSync(path.join(image, 'etc/systemd/system', u), 'utf8');
const execStarts = (): string[] =>
  UNITS.flatMap((u) => unit(u).match(/^ExecStart=.*$/gm) ?? []).filter((l) => l !== 'ExecStart=');

/** Every ExecStart= of the installed units runs `command` (and the verb of its unit). */
function expectCommand(command: string): void {
  for (const [u, verb] of Object.entries(VERBS)) {
    expect(unit(u), u).toMatch(
      new RegExp(`^ExecStart=${command.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} ${verb}`, 'm'),
    );
  }
  expect(execStarts()).toHaveLength(3);
}

/** Nothing of this machine's installation in the units: not its node, not this checkout. */
function expectNoBuilderPath(): void {
  const all = UNITS.map(unit).join('\n');
  expect(all).not.toContain(process.execPath);
  expect(all).not.toContain(path.resolve(import.meta.dirname, '../..'));
  expect(all).not.toContain(tmp);
}

describe('install-units --prefix IMAGE: the units run muster as installed in the image', () => {
  it('muster on the PATH inside the image: ExecStart= names it there, no path of this machine', async () => {
    installMusterInImage();
    const lines = await installUnits(['--prefix', image]);
    expectCommand('/usr/local/bin/muster');
    expectNoBuilderPath();
    expect(lines.filter((l) => l.startsWith('warning:'))).toEqual([]);
    expect(lines).toContain(
      `install ${path.join(image, 'etc/systemd/system/muster-join.service')} (ExecStart=/usr/local/bin/muster join)`,
    );
  });

  it('an absolute symlink in the image is followed inside the image, not on this machine', async () => {
    put('opt/muster/bin/muster', '#!/bin/sh\nexit 0\n');
    mkdirSync(path.join(image, 'usr/bin'), { recursive: true });
    symlinkSync('/opt/muster/bin/muster', path.join(image, 'usr/bin/muster'));
    const lines = await installUnits(['--prefix', image]);
    expectCommand('/usr/bin/muster');
    expect(lines.filter((l) => l.startsWith('warning:'))).toEqual([]);
  });

  it('muster not in the image (yet): /usr/bin/env muster, and a warning saying how to install it', async () => {
    const lines = await installUnits(['--prefix', image]);
    expectCommand('/usr/bin/env muster');
    expectNoBuilderPath();
    const warnings = lines.filter((l) => l.startsWith('warning:'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /muster is not installed in .*image.*npm install -g --prefix .*image\/usr\/local/,
    );
    expect(warnings[0]).toContain('--bin');
  });

  it('a node script with #!/usr/bin/env node in an image without node: installed, with a warning', async () => {
    installMusterInImage({ node: false });
    const lines = await installUnits(['--prefix', image]);
    expectCommand('/usr/local/bin/muster');
    expect(lines.filter((l) => l.startsWith('warning:'))).toEqual([
      expect.stringMatching(/has no node in \/usr\/local\/sbin, .*\/usr\/local\/bin\/muster needs one/),
    ]);
  });

  it('--bin PATH is written as given; a path the image lacks is a warning, not a refusal', async () => {
    put('srv/tools/muster', '#!/bin/sh\nexit 0\n');
    let lines = await installUnits(['--prefix', image, '--bin', '/srv/tools/muster']);
    expectCommand('/srv/tools/muster');
    expect(lines.filter((l) => l.startsWith('warning:'))).toEqual([]);

    lines = await installUnits(['--prefix', image, '--bin', '/opt/later/muster']);
    expectCommand('/opt/later/muster');
    expect(lines.filter((l) => l.startsWith('warning:'))).toEqual([
      `warning: ${image} has no file /opt/later/muster (--bin): install muster there`,
    ]);
  });

  it('--bin naming a node script that is not executable runs it through /usr/bin/env node', async () => {
    put('usr/lib/muster/main.js', '#!/usr/bin/env node\n', 0o644);
    put('usr/bin/node', '\x7fELF');
    await installUnits(['--prefix', image, '--bin', '/usr/lib/muster/main.js']);
    expectCommand('/usr/bin/env node /usr/lib/muster/main.js');
  });

  it('--upstart into an image: MUSTER_BIN names muster in the image', async () => {
    installMusterInImage();
    await installUnits(['--prefix', image, '--upstart']);
    const job = readFileSync(path.join(image, 'etc/init/muster-join.conf'), 'utf8');
    expect(job).toMatch(/^\s*MUSTER_BIN="\/usr\/local\/bin\/muster"$/m);
    expect(job).not.toContain(process.execPath);
  });

  it('--binary (a file of this machine) is still honoured, with a warning that the image lacks it', async () => {
    const host = path.join(tmp, 'host-bin', 'muster');
    mkdirSync(path.dirname(host));
    writeFileSync(host, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const lines = await installUnits(['--prefix', image, '--binary', host]);
    expectCommand(host);
    expect(lines.filter((l) => l.startsWith('warning:'))).toContainEqual(
      expect.stringMatching(
        new RegExp(`has no ${host.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} .*pass --bin PATH`),
      ),
    );
  });
});

describe('install-units without --prefix: this machine', () => {
  it("ExecStart= runs this machine's binary (node and the real path of the CLI), as before", () => {
    // --dry-run: nothing is written to this machine; a unit directory that cannot exist, so that each
    // unit is an "install" line carrying its ExecStart=.
    const unitDir = `/run/muster-install-units-test-${process.pid}-absent`;
    const r = cli(['install-units', '--dry-run', '--no-reload', '--unit-dir', unitDir]);
    expect(r.code, r.stderr).toBe(0);
    // Through node when the CLI file is not executable (the build leaves it 0644), else by itself.
    const esc = (p: string) => p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    expect(r.stdout).toMatch(
      new RegExp(
        `^dry run: would install ${esc(unitDir)}/muster-join\\.service \\(ExecStart=(${esc(process.execPath)} )?${esc(BIN)} join\\)$`,
        'm',
      ),
    );
    expect(r.stdout).not.toMatch(/\/usr\/bin\/env muster/);
  });

  it('--bin on this machine is written as given', () => {
    const unitDir = `/run/muster-install-units-test-${process.pid}-absent`;
    const r = cli([
      'install-units',
      '--dry-run',
      '--no-reload',
      '--unit-dir',
      unitDir,
      '--bin',
      '/usr/bin/env',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`(ExecStart=/usr/bin/env join)`);
  });
});

describe('install-units refusals: nothing written', () => {
  it('--bin and --binary together', async () => {
    const err = await installUnits(['--prefix', image, '--bin', '/usr/bin/muster', '--binary', BIN]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isMusterError(err) && err.code).toBe('MUSTER_ERR_USAGE');
    expect((err as Error).message).toMatch(/--bin and --binary/);
    expect(readdirSync(image)).toEqual([]);
  });

  it('a relative --bin: exit 2 from the real CLI, the image stays empty', () => {
    const r = cli(['install-units', '--prefix', image, '--no-reload', '--bin', 'usr/bin/muster']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--bin must be an absolute path/);
    expect(readdirSync(image)).toEqual([]);
  });

  it('--bin naming a file of the image that is not executable nor a node script', async () => {
    put('usr/bin/muster', 'not a program', 0o644);
    await expect(installUnits(['--prefix', image, '--bin', '/usr/bin/muster'])).rejects.toThrow(
      /--bin \/usr\/bin\/muster is not executable/,
    );
    expect(readdirSync(image)).toEqual(['usr']);
  });
});
