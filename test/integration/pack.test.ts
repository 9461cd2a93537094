/**
 * Install as an operator would (issue 4 "Install"): `npm pack` makes a tarball of compiled JavaScript
 * that installs globally (here into a temporary prefix) with a working `muster` binary, no TypeScript
 * compiler at run time.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/registrar.js';

const root = path.resolve(import.meta.dirname, '../..');

describe('npm pack', () => {
  it('produces a tarball that installs globally with a working muster binary', () => {
    const t = tempDir('muster-pack-');
    try {
      // --ignore-scripts: dist is already built (global setup); rebuilding it here would race other tests.
      const out = execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', t.dir, '--json'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const info = JSON.parse(out)[0] as { filename: string; files: { path: string }[] };
      const files = info.files.map((f) => f.path);
      expect(files).toContain('dist/cli/main.js');
      expect(files).toContain('systemd/muster-join.service');
      expect(files.some((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toBe(false); // compiled only
      expect(files.some((f) => f.startsWith('test/'))).toBe(false);

      const prefix = path.join(t.dir, 'prefix');
      const inst = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', path.join(t.dir, info.filename)], { encoding: 'utf8' });
      expect(inst.status, inst.stderr).toBe(0);
      const bin = path.join(prefix, 'bin', 'muster');
      expect(existsSync(bin)).toBe(true);
      const help = spawnSync(bin, ['--help'], { encoding: 'utf8' });
      expect(help.status, help.stderr).toBe(0);
      for (const cmd of ['registrar', 'join', 'install-mode', 'tokens', 'nodes', 'events', 'install-units', 'config']) expect(help.stdout).toContain(cmd);
      const version = spawnSync(bin, ['--version'], { encoding: 'utf8' });
      expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
      // No compiler in production: typescript is a devDependency only.
      const mods = readdirSync(path.join(prefix, 'lib', 'node_modules', 'muster', 'node_modules'));
      expect(mods).not.toContain('typescript');
      expect(mods).not.toContain('vitest');
    } finally {
      t.cleanup();
    }
  }, 240_000);
});
