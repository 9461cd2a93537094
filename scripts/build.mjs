// @ts-check
/**
 * `npm run build`: the compiled tree, then the bundled command line (issue 12, target 2: the CLI starts
 * within 100 ms of `node -e 0`, a registrar serves within 0.3 s of its spawn).
 *
 * 1. `tsc -p tsconfig.build.json` compiles src/ to dist/ file by file (bench, demo and the test network
 *    run from there; type errors fail the build, as before, but dist/ is still emitted).
 * 2. esbuild bundles src/cli/main.ts, everything it imports and the packages in BUNDLED into one
 *    CommonJS script, dist/chunks/muster-<hash>.cjs (tsconfig.build.json leaves main.ts out). Resolving,
 *    reading and compiling ~400 small modules cost more at start-up than any command's own work. The
 *    lazy `import()`s of command implementations (registrar, agent, admin client...) stay lazy: esbuild
 *    wraps each module in a function run at its first import, and V8 compiles a function only when it
 *    is first called. dist/chunks/ is at the depth of dist/cli/ and dist/common/, so `new
 *    URL('../../package.json', import.meta.url)` (common/version.ts) and `../../systemd/`
 *    (cli/install-units.ts) find the same files from the bundle and from the compiled tree.
 * 3. The code caches: the build runs `--help`, a registrar's start, `tokens create` and `muster join`
 *    once each (warmUp) and keeps what V8 compiled for each as dist/chunks/muster-<hash>.<command>.v8cache.
 * 4. dist/cli/main.js, the `muster` bin, from scripts/bundle/bin.js: compiles the bundle with the cache
 *    of the command being run (issue 12, targets 2 and 4; node 20 has no code cache for ES modules).
 *
 * Packages other than yargs stay external (imported from node_modules at run time, as the compiled tree
 * does): they are not on the start-up path, and several find files by path at run time (etcd3's .proto
 * files, level's native addon, pino-pretty through createRequire). yargs' y18n looks for its locale
 * files next to yargs and finds none beside the bundle: it then prints the English strings in yargs'
 * code, the same text as its en.json for every message muster shows or parses (cli.ts explainUsage).
 *
 * Runs offline (prepack runs it): esbuild is a devDependency whose binary `npm ci` installs.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { setTimeout, clearTimeout } from 'node:timers';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

/**
 * The packages src/ imports that go into the bundle (with everything they import in turn): yargs for
 * every command; fastify, prom-client and pino for the registrar, whose start was mostly resolving,
 * reading and compiling their ~300 files one by one (issue 12, target 2); bonjour-service's responder
 * (multicast-dns, dns-packet) for every `muster join` that looks for its registrar (target 4).
 */
const BUNDLED = new Set(['yargs', 'fastify', 'prom-client', 'pino', 'bonjour-service']);
/**
 * Never bundled, though a bundled package requires them: fastify loads these only when asked (Ajv and
 * fast-json-stringify when an app has no compilers of its own: muster's apps bring theirs,
 * fallback/validate.ts; light-my-request for inject(), which tests use), so they stay files in
 * node_modules, read if ever required, and out of the code every start parses.
 */
const ON_DEMAND = new Set([
  '@fastify/ajv-compiler',
  '@fastify/fast-json-stringify-compiler',
  'light-my-request',
]);

/** The package name of a bare import specifier: `yargs/helpers` -> `yargs`, `@a/b/c` -> `@a/b`. */
const packageOf = (/** @type {string} */ spec) =>
  spec
    .split('/')
    .slice(0, spec.startsWith('@') ? 2 : 1)
    .join('/');

/** @type {esbuild.Plugin} */
const externals = {
  name: 'muster-externals',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.kind === 'entry-point') return undefined;
      if (args.path.startsWith('node:')) return { path: args.path, external: true };
      if (ON_DEMAND.has(packageOf(args.path))) return { path: args.path, external: true };
      // Inside a bundled package: bundle what it imports too (its own dependencies).
      if (args.importer.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      if (BUNDLED.has(packageOf(args.path))) return undefined;
      return { path: args.path, external: true };
    });
  },
};

/**
 * string-width, as imported by yargs, cliui and wrap-ansi, is scripts/bundle/string-width.js: the width
 * of printable ASCII (all of muster's usage text) without loading string-width, whose Unicode regexes
 * and Intl.Segmenter cost tens of ms at load. Other text goes to yargs' own string-width (8.x; cliui and
 * wrap-ansi ask for ^7: same API, and they agree on every string muster prints).
 */
/** @type {esbuild.Plugin} */
const asciiStringWidth = {
  name: 'muster-ascii-string-width',
  setup(build) {
    const shim = path.join(root, 'scripts', 'bundle', 'string-width.js');
    const yargsDir = path.dirname(require.resolve('yargs/package.json'));
    build.onResolve({ filter: /^string-width$/ }, async (args) => {
      if (args.pluginData === 'real') return undefined;
      if (args.importer !== shim) return { path: shim };
      const r = await build.resolve(args.path, {
        kind: args.kind,
        resolveDir: yargsDir,
        importer: path.join(yargsDir, 'index.mjs'),
        pluginData: 'real',
      });
      return r.errors.length ? { errors: r.errors } : { path: r.path };
    });
  },
};

// --bundle-only: just step 2 (iterating on the bundle); --outdir DIR: write it elsewhere than dist/.
const argv = process.argv.slice(2);
const bundleOnly = argv.includes('--bundle-only');
const outIndex = argv.indexOf('--outdir');
const outdir = outIndex >= 0 ? path.resolve(argv[outIndex + 1] ?? '') : path.join(root, 'dist');

/** yargs' `assert` is scripts/bundle/assert.js: the same checks, node:assert loaded only if one fails. */
/** @type {esbuild.Plugin} */
const lazyAssert = {
  name: 'muster-lazy-assert',
  setup(build) {
    const shim = path.join(root, 'scripts', 'bundle', 'assert.js');
    build.onResolve({ filter: /^(node:)?assert$/ }, (args) =>
      args.importer.includes(`${path.sep}node_modules${path.sep}yargs${path.sep}`)
        ? { path: shim }
        : undefined,
    );
  },
};

/**
 * Edits of bundled package code, each found verbatim or the build fails (a new version is then
 * re-examined rather than silently bundled unedited).
 */
const PATCHES = [
  {
    // After a command's handler returns, yargs renders that command's full --help text and keeps it,
    // in case something shows help later in the same parse (~20% of a command's start-up). muster's
    // handlers only record the chosen command (cli.ts), validation has already passed by then, and
    // nothing after it asks yargs for help: the text was never read.
    file: /[\\/]node_modules[\\/]yargs[\\/]build[\\/]lib[\\/]command\.js$/,
    from: 'yargs.getInternalMethods().getUsageInstance().cacheHelpMessage();',
    to: '/* muster: help text not cached (scripts/build.mjs) */',
  },
  {
    // fastify requires node:http2 when it loads, for servers made with `http2: true`; muster's are
    // HTTP/1.1, and loading node's HTTP/2 code costs every registrar start a few ms.
    file: /[\\/]node_modules[\\/]fastify[\\/]lib[\\/]server\.js$/,
    from: "const http2 = require('node:http2')",
    to: "const http2 = new Proxy({}, { get: (_, k) => require('node:http2')[k] }) /* muster: loaded if used (scripts/build.mjs) */",
  },
];

/**
 * Bundled packages are mapped to their JavaScript as published (after PATCHES). esbuild would follow a
 * package's own source map instead, and get-caller-file's names an index.ts it does not ship, with no
 * content: every shipped map must carry its sources (test/integration/pack.test.ts).
 */
/** @type {esbuild.Plugin} */
const packageSources = {
  name: 'muster-package-sources',
  setup(build) {
    build.onLoad({ filter: /[\\/]node_modules[\\/].*\.[cm]?js$/ }, async (args) => {
      let source = (await readFile(args.path, 'utf8')).replace(/^\/\/# sourceMappingURL=.*$/gm, '');
      for (const p of PATCHES.filter((p) => p.file.test(args.path))) {
        if (!source.includes(p.from)) throw new Error(`${args.path}: "${p.from}" not found; see PATCHES`);
        source = source.replace(p.from, p.to);
      }
      return { contents: source, loader: 'js' };
    });
  },
};

/**
 * The code caches of the bundle (scripts/bundle/bin.js): each command below is run once, on loopback
 * with mDNS off, from a temporary state directory and an empty config file (never the builder's
 * /etc/muster), by a loader that writes what V8 compiled for the run when the process exits: `--help`
 * (the cache of every command without one of its own), a registrar's start up to `registrar ready`
 * (then SIGTERM: its cache holds the start, not the serving), `tokens create` over a second
 * registrar's admin socket, and `muster join` with that token. A step that fails leaves its command
 * without a cache (a warning; the CLI compiles as it did before) and the build goes on.
 * @param {string} bundlePath
 * @returns {Promise<string[]>} the commands that have a cache
 */
async function warmUp(bundlePath) {
  const loader = path.join(cliDir, `.warm-${process.pid}.js`);
  mkdirSync(cliDir, { recursive: true });
  writeFileSync(loader, binText([]));
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'muster-warm-'));
  const config = path.join(tmp, 'muster.json');
  writeFileSync(config, '{}\n');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUSTER_')));
  /** @type {string[]} */
  const warmed = [];
  /** @type {import('node:child_process').ChildProcess[]} */
  const running = [];
  const cacheOf = (/** @type {string} */ name) => bundlePath.replace(/\.cjs$/, `.${name}.v8cache`);
  /** Runs `muster ...args`; with `name`, keeps the run's code cache as that command's. */
  const start = (/** @type {string[]} */ args, /** @type {string | undefined} */ name) => {
    const child = spawn(process.execPath, [loader, ...args, '--config', config], {
      env: {
        ...env,
        MUSTER_LOG_FORMAT: 'json',
        ...(name ? { MUSTER_BUILD_CODE_CACHE: `${cacheOf(name)}.${process.pid}.tmp` } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.push(child);
    let out = '';
    let stdout = '';
    child.stdout.on('data', (c) => ((out += c), (stdout += c)));
    child.stderr.on('data', (c) => (out += c));
    // No step may hold the build up: a join that cannot finish would retry for ever (its default).
    const limit = setTimeout(() => {
      out += '\n(no exit within 60 s: killed)';
      child.kill('SIGKILL');
    }, 60_000);
    const exited = new Promise((resolve) =>
      child.on('close', (code, signal) => {
        clearTimeout(limit);
        resolve({ code, signal });
      }),
    );
    const keep = async () => {
      const { code: exit } = /** @type {{ code: number | null }} */ (await exited);
      if (exit !== 0) throw new Error(`muster ${args.join(' ')} exited ${exit}: ${out.trim().slice(-400)}`);
      if (name) {
        renameSync(`${cacheOf(name)}.${process.pid}.tmp`, cacheOf(name));
        written.add(cacheOf(name));
        warmed.push(name);
      }
      return stdout;
    };
    /** Resolves with the "registrar ready" line's fields once it is logged. */
    const ready = () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no "registrar ready" in 30 s: ${out.slice(-400)}`)),
          30_000,
        );
        const look = () => {
          const line = out.split('\n').find((l) => l.includes('"registrar ready"'));
          if (!line) return;
          clearTimeout(timer);
          child.stdout.off('data', look);
          resolve(JSON.parse(line));
        };
        child.stdout.on('data', look);
        void exited.then(() => reject(new Error(`the registrar exited: ${out.trim().slice(-400)}`)));
      });
    return { child, keep, ready };
  };
  try {
    await start(['--help'], 'help').keep();
    const registrar = (/** @type {string | undefined} */ name) =>
      start(
        [
          'registrar',
          '--state-dir',
          path.join(tmp, 'registrar'),
          '--listen',
          '127.0.0.1:0',
          '--mdns',
          'off',
          '--admin-socket',
          path.join(tmp, 'admin.sock'),
          '--cluster',
          'warm-up',
        ],
        name,
      );
    const first = registrar('registrar');
    await first.ready();
    first.child.kill('SIGTERM');
    await first.keep();
    const second = registrar(undefined);
    const { url } = /** @type {{ url: string }} */ (await second.ready());
    const sock = ['--admin-socket', path.join(tmp, 'admin.sock')];
    const token = (await start(['tokens', 'create', '--uses', '1', ...sock], 'tokens').keep()).trim();
    const tokenFile = path.join(tmp, 'token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const node = ['--name', 'warm-up', '--state-dir', path.join(tmp, 'node'), '--mdns', 'off'];
    await start(['join', '--registrar', url, '--token-file', tokenFile, ...node], 'join').keep();
    second.child.kill('SIGTERM');
    await second.keep();
  } catch (err) {
    process.stderr.write(
      `build: the code cache warm-up stopped (${/** @type {Error} */ (err).message}); ` +
        `commands without a cache compile as they start (slower, same behaviour)\n`,
    );
  } finally {
    for (const child of running)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
    rmSync(loader, { force: true });
    for (const name of ['help', 'registrar', 'tokens', 'join'])
      rmSync(`${cacheOf(name)}.${process.pid}.tmp`, { force: true });
  }
  return warmed;
}

/**
 * The bundle as the bin loads it: the entry's `#!` line, a syntax error inside the CommonJS wrapper,
 * becomes `//` (same length: the source map's lines and columns stay right); and the non-ASCII
 * characters esbuild leaves in comments (§ of the RFC citations) become \u escapes, so that the whole
 * script is one-byte text: V8 keeps a script with one such character as a two-byte string of twice
 * the size, and node decodes it through the slow path of UTF-8 (~20 ms of a start here). The bin reads
 * it as latin1, which for ASCII is the same text. esbuild already escapes them in code (charset ascii),
 * so what remains is only ever in comments, on a line of its own: no mapped column moves.
 * @param {string} text
 */
function asciiScript(text) {
  const out = text
    .replace(/^#!/, '//')
    .replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (/[\u0080-\uffff]/.test(out)) throw new Error('the bundle is not ASCII after escaping');
  return out;
}

let code = 0;
if (!bundleOnly) {
  const tsc = spawnSync(
    process.execPath,
    [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
  if (tsc.status !== 0) code = tsc.status ?? 1;
}

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: { muster: 'src/cli/main.ts' },
  outdir,
  entryNames: 'chunks/[name]-[hash]',
  outExtension: { '.js': '.cjs' },
  bundle: true,
  // One CommonJS script, loaded by the bin through node:vm with a V8 code cache (scripts/bundle/bin.js).
  // Node 20 has no code cache for ES modules; the command implementations the CLI imports lazily are
  // still evaluated only when their command runs (esbuild wraps each module in a function), and V8
  // compiles a function only when it is first called.
  format: 'cjs',
  // import() of an external (node-forge, node:https) becomes require() in a promise, as esbuild already
  // does for bundled modules: node 20 loses a script's dynamic-import callback when the script comes
  // from a code cache ("A dynamic import callback was not specified").
  supported: { 'dynamic-import': false },
  platform: 'node',
  target: 'node20',
  // Every shipped map carries its sources: the .ts files it names do not ship (test/integration/pack).
  sourcemap: true,
  sourcesContent: true,
  plugins: [asciiStringWidth, lazyAssert, externals, packageSources],
  // `import.meta.url` (version.ts, install-units.ts, admin-web.ts: files found from the module's own
  // place; createRequire) is the bundle's URL, which a CommonJS script computes from __filename.
  define: { 'import.meta.url': '__musterMetaUrl' },
  // The script is the function node's CommonJS loader would wrap it in (Module.wrap), written out: the
  // bin compiles the file's text as it is, with no 2 MB string made by joining the wrapper to it. Strict,
  // as the ES modules it is made of were (esbuild's own "use strict" comes after this line).
  banner: {
    js: "(function (exports, require, module, __filename, __dirname) { 'use strict'; const __musterMetaUrl = require('node:url').pathToFileURL(__filename).href;",
  },
  footer: { js: '})' },
  logLevel: 'warning',
  write: false,
});
const bundleFile = result.outputFiles.find((f) => f.path.endsWith('.cjs'));
if (!bundleFile) throw new Error('esbuild wrote no bundle');
// Tests and engineers run the CLI while it is rebuilt: every file is replaced whole (written aside,
// then renamed over), the bundle, its map and its code caches (named by the bundle's content hash)
// before the bin that names them, and a file in chunks/ the new bin no longer uses is removed only
// once it is 10 minutes old, since a CLI started from the previous bin may still read it. `npm pack`
// starts from an empty dist/ (prepack).
const written = new Set();
const writeWhole = (/** @type {string} */ file, /** @type {string | Uint8Array} */ contents) => {
  mkdirSync(path.dirname(file), { recursive: true });
  const aside = `${file}.${process.pid}.tmp`;
  writeFileSync(aside, contents);
  renameSync(aside, file);
  written.add(file);
};
for (const f of result.outputFiles) writeWhole(f.path, f === bundleFile ? asciiScript(f.text) : f.contents);
const cliDir = path.join(outdir, 'cli');
const bin = path.join(cliDir, 'main.js');
const template = await readFile(path.join(root, 'scripts', 'bundle', 'bin.js'), 'utf8');
const binText = (/** @type {string[]} */ caches) =>
  template
    .replace('__MUSTER_BUNDLE__', path.relative(cliDir, bundleFile.path).split(path.sep).join('/'))
    .replace('/* __MUSTER_CACHES__ */', caches.map((c) => JSON.stringify(c)).join(', '));
const warmed = await warmUp(bundleFile.path);
writeWhole(bin, binText(warmed.filter((c) => c !== 'help')));
chmodSync(bin, 0o755);
rmSync(`${bin}.map`, { force: true }); // the bin of earlier builds was the bundle itself, with a map
const chunks = path.join(outdir, 'chunks');
for (const name of readdirSync(chunks)) {
  const p = path.join(chunks, name);
  if (!written.has(p) && Date.now() - statSync(p).mtimeMs > 10 * 60_000) rmSync(p, { force: true });
}

process.exit(code);
