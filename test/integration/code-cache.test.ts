/**
 * The bin compiles the bundled CLI with the V8 code caches the build made for it (scripts/build.mjs
 * warmUp, scripts/bundle/bin.js; issue 12, targets 2 and 4). What an operator relies on: the build
 * made a cache for each command it names and V8 takes each one for this bundle (a build whose warm-up
 * failed would otherwise start every command slowly and say nothing), and a cache V8 refuses, or none,
 * changes nothing a command does.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BIN } from '../helpers/cli.js';
import { tempDir } from '../helpers/registrar.js';

const root = path.resolve(import.meta.dirname, '../..');

/** The bundle and the commands with a cache, as the build wrote them into the bin. */
function binInfo(bin: string): { bundle: string; caches: string[] } {
  const text = readFileSync(bin, 'utf8');
  const bundle = /new URL\('([^']+\.cjs)', import\.meta\.url\)/.exec(text)?.[1];
  const caches = /const CACHES = new Set\(\[([^\]]*)\]\)/.exec(text)?.[1];
  if (!bundle || caches === undefined) throw new Error(`${bin} does not name its bundle and caches`);
  return {
    bundle: path.resolve(path.dirname(bin), bundle),
    caches: [...(JSON.parse(`[${caches}]`) as string[]), 'help'],
  };
}

const cacheOf = (bundle: string, command: string): string => bundle.replace(/\.cjs$/, `.${command}.v8cache`);

function run(bin: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    env: { ...process.env, MUSTER_LOG_FORMAT: 'json' },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('the code caches of the bundled CLI', () => {
  it('exist for the registrar, join, tokens and --help, and V8 takes each for this bundle', () => {
    const { bundle, caches } = binInfo(BIN);
    expect(caches.sort()).toEqual(['help', 'join', 'registrar', 'tokens']);
    for (const c of caches) expect(existsSync(cacheOf(bundle, c)), c).toBe(true);
    // In a plain node, as the bin runs: V8 refuses a cache made under other flags (a test worker's).
    const check = spawnSync(
      process.execPath,
      [
        '-e',
        `const { Script } = require('node:vm'); const fs = require('node:fs');
         const [bundle, ...files] = process.argv.slice(1);
         const text = fs.readFileSync(bundle, 'latin1');
         console.log(JSON.stringify(files.map((f) => new Script(text, { filename: bundle, cachedData: fs.readFileSync(f) }).cachedDataRejected)));`,
        bundle,
        ...caches.map((c) => cacheOf(bundle, c)),
      ],
      { encoding: 'utf8' },
    );
    expect(check.status, check.stderr).toBe(0);
    expect(JSON.parse(check.stdout)).toEqual(caches.map(() => false));
  });

  it('a cache V8 refuses, or none, changes nothing a command prints or exits with', () => {
    const t = tempDir('muster-code-cache-');
    try {
      const { bundle, caches } = binInfo(BIN);
      // A copy of the installed layout: package.json, node_modules, the bin and the bundle.
      const copy = (kind: 'garbage' | 'truncated' | 'none'): string => {
        const dir = path.join(t.dir, kind);
        mkdirSync(path.join(dir, 'dist', 'cli'), { recursive: true });
        mkdirSync(path.join(dir, 'dist', 'chunks'));
        copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
        symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
        const bin = path.join(dir, 'dist', 'cli', 'main.js');
        copyFileSync(BIN, bin);
        const copied = path.join(dir, 'dist', 'chunks', path.basename(bundle));
        copyFileSync(bundle, copied);
        return bin;
      };
      const garbage = copy('garbage');
      const truncated = copy('truncated');
      const none = copy('none');
      for (const c of binInfo(garbage).caches) {
        writeFileSync(cacheOf(binInfo(garbage).bundle, c), Buffer.alloc(4096, 0x5a));
        const real = readFileSync(cacheOf(bundle, c));
        writeFileSync(cacheOf(binInfo(truncated).bundle, c), real.subarray(0, real.length >> 1));
      }
      const sock = path.join(t.dir, 'no-registrar.sock');
      const commands = [
        ['--version'],
        ['--help'],
        ['join', '--help'],
        ['tokens', 'list', '--admin-socket', sock],
      ];
      for (const args of commands) {
        const expected = run(BIN, args);
        expect(expected.stdout + expected.stderr, args.join(' ')).not.toBe('');
        for (const bin of [garbage, truncated, none]) {
          const got = run(bin, args);
          expect({ ...got, stderr: got.stderr.replaceAll(t.dir, '') }, `${bin} ${args.join(' ')}`).toEqual({
            ...expected,
            stderr: expected.stderr.replaceAll(t.dir, ''),
          });
        }
      }
      expect(caches.length).toBeGreaterThan(0);
    } finally {
      t.cleanup();
    }
  }, 120_000);
});
