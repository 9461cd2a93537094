// @ts-check
/**
 * `npm run build`: the compiled tree, then the bundled command line (issue 12, target 2: the CLI starts
 * within 100 ms of `node -e 0`).
 *
 * 1. `tsc -p tsconfig.build.json` compiles src/ to dist/ file by file (bench, demo and the test network
 *    run from there; type errors fail the build, as before, but dist/ is still emitted).
 * 2. esbuild bundles src/cli/main.ts, everything it imports and yargs into dist/cli/main.js, the `muster`
 *    bin (tsconfig.build.json leaves main.ts out, so a bare tsc run never replaces it). Resolving, reading
 *    and compiling ~80 small modules cost more at start-up than any command's own work. The lazy
 *    `import()`s of command implementations (registrar, agent, admin client...) stay lazy: with
 *    `splitting` each becomes a chunk in dist/chunks/, loaded only by the command that needs it.
 *    dist/chunks/ is at the depth of dist/cli/ and dist/common/, so `new URL('../../package.json',
 *    import.meta.url)` (common/version.ts) and `../../systemd/` (cli/install-units.ts) find the same
 *    files from the bundle, from any chunk and from the compiled tree.
 *
 * Packages other than yargs stay external (imported from node_modules at run time, as the compiled tree
 * does): they are not on the start-up path, and several find files by path at run time (etcd3's .proto
 * files, level's native addon, pino-pretty through createRequire). yargs' y18n looks for its locale
 * files next to yargs and finds none beside the bundle: it then prints the English strings in yargs'
 * code, the same text as its en.json for every message muster shows or parses (cli.ts explainUsage).
 *
 * Runs offline (prepack runs it): esbuild is a devDependency whose binary `npm ci` installs.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
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
const ON_DEMAND = new Set(['@fastify/ajv-compiler', '@fastify/fast-json-stringify-compiler', 'light-my-request']);

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
  entryPoints: { 'cli/main': 'src/cli/main.ts' },
  outdir,
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Every shipped map carries its sources: the .ts files it names do not ship (test/integration/pack).
  sourcemap: true,
  sourcesContent: true,
  plugins: [asciiStringWidth, lazyAssert, externals, packageSources],
  // Bundled CommonJS packages require node's modules and the ON_DEMAND packages: esbuild turns those
  // into calls of a \`require\` it expects in scope, which an ES module must make for itself.
  banner: { js: "import { createRequire as __musterRequire } from 'node:module'; const require = __musterRequire(import.meta.url);" },
  logLevel: 'warning',
  write: false,
});
// A chunk that only re-exports other chunks maps no source: ship it without a map (an empty map
// resolves nothing and would only look like a map that lost its sources).
const unmapped = new Set(
  result.outputFiles
    .filter((f) => f.path.endsWith('.js.map') && JSON.parse(f.text).sources.length === 0)
    .map((f) => f.path.slice(0, -'.map'.length)),
);
// Tests and engineers run the CLI while it is rebuilt: every file is replaced whole (written aside,
// then renamed over), the chunks (named by content hash) before the bin that imports them, and a
// chunk the new bin no longer uses is removed only once it is 10 minutes old, since a CLI started
// from the previous bin may still import it. `npm pack` starts from an empty dist/ (prepack).
const entry = (/** @type {string} */ p) => p.startsWith(path.join(outdir, 'cli') + path.sep);
const written = new Set();
for (const f of [...result.outputFiles].sort((a, b) => Number(entry(a.path)) - Number(entry(b.path)))) {
  if (f.path.endsWith('.map') && unmapped.has(f.path.slice(0, -'.map'.length))) continue;
  mkdirSync(path.dirname(f.path), { recursive: true });
  const text = unmapped.has(f.path) ? f.text.replace(/\n\/\/# sourceMappingURL=\S+\n?$/, '\n') : f.contents;
  const aside = `${f.path}.${process.pid}.tmp`;
  writeFileSync(aside, text);
  renameSync(aside, f.path);
  written.add(f.path);
}
const chunks = path.join(outdir, 'chunks');
for (const name of readdirSync(chunks)) {
  const p = path.join(chunks, name);
  if (!written.has(p) && Date.now() - statSync(p).mtimeMs > 10 * 60_000) rmSync(p, { force: true });
}

process.exit(code);
