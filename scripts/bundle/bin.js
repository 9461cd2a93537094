#!/usr/bin/env node
// muster's command line. scripts/build.mjs writes this file as dist/cli/main.js from
// scripts/bundle/bin.js, naming the bundle and its code caches below; the commands themselves are in
// the bundle, one CommonJS script with everything the CLI runs except node_modules' externals.
//
// Why a loader (issue 12, targets 2 and 4: a registrar serving within 0.3 s of its spawn, a node's
// mDNS query soon after its start): most of a start that is not node's own is V8 compiling the
// bundle's functions as they are first called. The build runs each command in `CACHES` once
// (scripts/build.mjs, warm-up) and keeps what V8 compiled for it, a code cache; here the bundle is
// compiled with the cache of the command being run, so those functions are deserialized instead of
// parsed and compiled again. V8 refuses a cache made by another V8 or with other flags
// (`cachedDataRejected`) and then compiles as if there were none: the cache changes how fast a
// command starts, never what it does. A cache is made with, and named after, exactly one bundle.
import { readFileSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, URL } from 'node:url';
import { Script } from 'node:vm';

const BUNDLE = fileURLToPath(new URL('__MUSTER_BUNDLE__', import.meta.url));
/** The commands the build made a code cache for; any other command uses the one of `--help`. */
const CACHES = new Set([/* __MUSTER_CACHES__ */]);
/** Set by the build's warm-up only: write the code cache of this run there when the process exits. */
const cacheOut = process.env.MUSTER_BUILD_CODE_CACHE;

const command = process.argv.slice(2).find((a) => !a.startsWith('-'));
const cacheFile = BUNDLE.replace(/\.cjs$/, `.${CACHES.has(command) ? command : 'help'}.v8cache`);
let cachedData;
if (!cacheOut) {
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    // No cache for this bundle (a build whose warm-up failed, or one cleaned by hand): compile it all.
  }
}
// ASCII only (the build escapes the rest): latin1 is the same text, read without UTF-8 decoding.
const script = new Script(readFileSync(BUNDLE, 'latin1'), {
  filename: BUNDLE,
  cachedData,
});
if (cacheOut) process.once('exit', () => writeFileSync(cacheOut, script.createCachedData()));

const dir = path.dirname(BUNDLE);
const bundle = new Module(BUNDLE);
bundle.filename = BUNDLE;
bundle.loaded = true;
// The bundle's text is a function expression: (function (exports, require, module, __filename, __dirname) {...}).
script.runInThisContext()(bundle.exports, createRequire(BUNDLE), bundle, BUNDLE, dir);
