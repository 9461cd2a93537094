/**
 * Install as an operator would (issue 4 "Install"): `npm pack` makes a tarball of compiled JavaScript
 * that installs globally (here into a temporary prefix) with a working `muster` binary, no TypeScript
 * compiler at run time. It ships the product only (issue 7 "Ship only the product"): no bench, demo or
 * test network, and source maps that carry their sources, since the .ts files they name do not ship.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/registrar.js';

const root = path.resolve(import.meta.dirname, '../..');

describe('npm pack', () => {
  it('produces a tarball that installs globally with a working muster binary', () => {
    const t = tempDir('muster-pack-');
    try {
      // --ignore-scripts: dist is already built (global setup); rebuilding it here would race other tests.
      const out = execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', t.dir, '--json'], {
        cwd: root,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const info = JSON.parse(out)[0] as { filename: string; files: { path: string }[] };
      const files = info.files.map((f) => f.path);
      expect(files).toContain('dist/cli/main.js');
      expect(files).toContain('systemd/muster-join.service');
      expect(files.some((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toBe(false); // compiled only
      expect(files.some((f) => f.startsWith('test/'))).toBe(false);
      // The product only: bench, demo and the test network stay in the repository (npm run bench/demo).
      expect(files.filter((f) => /^dist\/(bench|demo|testnet)\//.test(f))).toEqual([]);
      expect(
        existsSync(path.join(root, 'dist/demo/main.js')) && existsSync(path.join(root, 'dist/bench/run.js')),
      ).toBe(true);

      const prefix = path.join(t.dir, 'prefix');
      // --offline: the dependencies come from the npm cache `npm ci` filled, never the registry (tests
      // are hermetic after npm ci; without it, a machine with no network hangs here).
      const inst = spawnSync(
        'npm',
        [
          'install',
          '-g',
          '--offline',
          '--prefix',
          prefix,
          '--no-audit',
          '--no-fund',
          path.join(t.dir, info.filename),
        ],
        { encoding: 'utf8' },
      );
      expect(inst.status, inst.stderr).toBe(0);
      const bin = path.join(prefix, 'bin', 'muster');
      expect(existsSync(bin)).toBe(true);
      const help = spawnSync(bin, ['--help'], { encoding: 'utf8' });
      expect(help.status, help.stderr).toBe(0);
      const commands = [
        'registrar',
        'join',
        'install-mode',
        'tokens',
        'nodes',
        'events',
        'install-units',
        'config',
      ];
      for (const cmd of commands) expect(help.stdout).toContain(cmd);
      const version = spawnSync(bin, ['--version'], { encoding: 'utf8' });
      expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
      // Every shipped map resolves without the repository: each source it names comes with its content.
      const installed = path.join(prefix, 'lib', 'node_modules', 'muster');
      const maps = files.filter((f) => /\.c?js\.map$/.test(f));
      // The bundle every command runs, with its map and the code caches the build made for it.
      expect(maps.some((f) => /^dist\/chunks\/muster-\w+\.cjs\.map$/.test(f))).toBe(true);
      expect(files.filter((f) => f.endsWith('.v8cache')).length).toBeGreaterThan(0);
      expect(maps.length).toBeGreaterThan(0);
      for (const f of maps) {
        expect(files, `${f} without its .js`).toContain(f.slice(0, -'.map'.length));
        const map = JSON.parse(readFileSync(path.join(installed, f), 'utf8')) as {
          sources: string[];
          sourcesContent?: unknown[];
        };
        expect(map.sources.length, f).toBeGreaterThan(0);
        expect(map.sourcesContent?.length, `${f} has no sourcesContent`).toBe(map.sources.length);
        for (const c of map.sourcesContent ?? []) expect(typeof c === 'string' && c.length > 0, f).toBe(true);
      }

      // No compiler in production: typescript is a devDependency only.
      const mods = readdirSync(path.join(installed, 'node_modules'));
      expect(mods).not.toContain('typescript');
      expect(mods).not.toContain('vitest');
    } finally {
      t.cleanup();
    }
  }, 240_000);
});
