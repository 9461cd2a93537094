// @ts-check
import js from '@eslint/js';
import { builtinRules } from 'eslint/use-at-your-own-risk';
import tseslint from 'typescript-eslint';

// ---------------------------------------------------------------------------------------------------
// Dependency rules (CONVENTIONS "Dependency direction", issue 7 item 5). Arrows point down only:
// codecs import no socket, file or timer; the authorizer imports no fastify and no bonjour-service;
// only the level backend imports level, only the etcd backend etcd3; nothing imports the CLI; the advertiser knows nothing of the
// registrar; the HTTPS endpoint and its client (src/fallback) use no registrar or store internals.
// test/unit/dependency-rules.test.ts plants a violation of each rule and checks that lint fails.
//
// Relative imports are matched with a regex on the import source: `^(\.\./)+registrar/` is any
// `../registrar/…`, `../../registrar/…`, whatever the depth of the importing file.
// ---------------------------------------------------------------------------------------------------

/** A relative import of the top-level src folder `dir` (from any depth below src). */
const folder = (/** @type {string} */ dir) => `^(?:\\.\\./)+${dir}(?:/|$)`;

/** Node built-ins that open sockets or files, or schedule timers: `node:x` and the bare `x`. */
const IO_BUILTINS = [
  'net',
  'dgram',
  'dns',
  'dns/promises',
  'fs',
  'fs/promises',
  'http',
  'http2',
  'https',
  'tls',
  'timers',
  'timers/promises',
  'child_process',
  'worker_threads',
];
const builtin = (/** @type {string} */ name) => [`node:${name}`, name];

/**
 * @typedef {{ name: string, message: string, allowImportNames?: string[] }} RestrictedPath
 * @typedef {{ regex: string, message: string, allowTypeImports?: boolean }} RestrictedPattern
 * @typedef {{ paths?: RestrictedPath[], patterns?: RestrictedPattern[] }} Restriction
 */

/** @type {Record<string, Restriction>} */
const RESTRICT = {
  codec: {
    paths: [
      ...IO_BUILTINS.flatMap(builtin).map((name) =>
        name === 'net' || name === 'node:net'
          ? // isIP is a pure function (x509.ts uses it for SAN entries); sockets stay out.
            {
              name,
              allowImportNames: ['isIP', 'isIPv4', 'isIPv6'],
              message: 'A codec opens no socket: only isIP/isIPv4/isIPv6 from net (CONVENTIONS 1).',
            }
          : {
              name,
              message: 'A codec imports no socket, file or timer: the caller does the I/O (CONVENTIONS 1).',
            },
      ),
      ...['fastify', 'bonjour-service', 'multicast-dns'].map((name) => ({
        name,
        message: 'A codec is pure: no HTTP server or mDNS stack (CONVENTIONS 1).',
      })),
    ],
    patterns: [
      { regex: '^@fastify/', message: 'A codec is pure: no HTTP server (CONVENTIONS 1).' },
      {
        // Project modules that read files, log or hold sockets: importing them is I/O at one remove.
        regex:
          '^(?:\\.\\.?/)+(?:common/)?(?:files|config|version|log|clock)\\.js$|^(?:\\.\\.?/)+(?:advertiser/)?mdns\\.js$',
        message:
          'A codec imports no module that does I/O (files, config, version, log, clock, mdns): take the value as an argument (CONVENTIONS 1).',
      },
      ...['registrar', 'node', 'fallback', 'cli', 'store'].map((dir) => ({
        regex: folder(dir),
        message:
          'Codecs are at the bottom: they import only other codecs and common/errors (CONVENTIONS "Dependency direction").',
      })),
    ],
  },
  policy: {
    paths: ['fastify', 'bonjour-service', 'multicast-dns'].map((name) => ({
      name,
      message:
        'The authorizer imports no fastify and no mDNS stack: the route or the advertiser passes the facts in (CONVENTIONS "Dependency direction").',
    })),
    patterns: [
      {
        regex: '^@fastify/',
        message: 'The authorizer imports no fastify (CONVENTIONS "Dependency direction").',
      },
      {
        regex: folder('fallback'),
        message: 'The authorizer imports no HTTP layer (CONVENTIONS "Dependency direction").',
      },
      {
        regex: folder('advertiser'),
        message:
          'The authorizer imports no mDNS layer: heard facts are passed in (CONVENTIONS "Dependency direction").',
      },
    ],
  },
  level: {
    paths: ['level', 'classic-level', 'abstract-level'].map((name) => ({
      name,
      message:
        'Only the level backend (src/store/level.ts) imports level: use the Registry interface (CONVENTIONS 5).',
    })),
  },
  etcd: {
    paths: [
      {
        name: 'etcd3',
        message:
          'Only the etcd backend (src/store/etcd.ts) imports etcd3: use the Registry interface (CONVENTIONS 5).',
      },
    ],
  },
  cli: {
    patterns: [
      {
        regex: folder('cli'),
        message:
          'Nothing imports the CLI: move the shared code down (src/common, src/admin) (CONVENTIONS "Dependency direction").',
      },
    ],
  },
  advertiser: {
    patterns: ['registrar', 'node', 'cli', 'fallback', 'store'].map((dir) => ({
      regex: folder(dir),
      message: `The advertiser imports nothing from src/${dir}: callers pass what it needs (CONVENTIONS "Dependency direction").`,
    })),
  },
  fallback: {
    patterns: [
      {
        regex: folder('registrar'),
        message:
          'src/fallback imports no registrar internals: take an interface, move shared code to src/common (issue 7).',
      },
      {
        // The store's plain records (types.ts) are shared vocabulary; its backends and helpers are not.
        regex: '^(?:\\.\\./)+store/(?!types\\.js$)',
        allowTypeImports: true,
        message:
          'src/fallback imports no store internals: only types, and the records in store/types.js (issue 7).',
      },
    ],
  },
};

/**
 * The restrictions of several rules as one option object; a module or regex named twice (the
 * advertiser's codecs fall under both the advertiser and the codec rule) is kept once, first wins.
 * @param {Restriction[]} rs
 */
const combine = (...rs) => {
  /** @type {<T>(items: T[], key: (t: T) => string) => T[]} */
  const unique = (items, key) =>
    items.filter((item, i) => items.findIndex((o) => key(o) === key(item)) === i);
  return {
    paths: unique(
      rs.flatMap((r) => r.paths ?? []),
      (p) => p.name,
    ),
    patterns: unique(
      rs.flatMap((r) => r.patterns ?? []),
      (p) => p.regex,
    ),
  };
};

const CODECS_COMMON = [
  'src/common/proof.ts',
  'src/common/der.ts',
  'src/common/x509.ts',
  'src/common/names.ts',
];
const CODECS_ADVERTISER = ['src/advertiser/txt.ts', 'src/advertiser/records.ts'];
const POLICY = ['src/registrar/admission/**/*.ts', 'src/registrar/policy.ts'];
const LEVEL_BACKEND = 'src/store/level.ts';
/** The etcd backend, and the benchmark that starts an etcd cluster for it (and asks it for health). */
const ETCD_CLIENTS = ['src/store/etcd.ts', 'src/bench/etcd.ts'];

/**
 * Zones: each file gets its rules from the LAST zone that matches it, because in flat config a later
 * `no-restricted-imports` for the same file replaces an earlier one (options are not merged). So each
 * zone restates the rules of the wider zones it sits in. Order: widest first.
 * @type {{ files: string[], ignores?: string[], restrict: Restriction }[]}
 */
const ZONES = [
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**', LEVEL_BACKEND, ...ETCD_CLIENTS],
    restrict: combine(RESTRICT.level, RESTRICT.etcd, RESTRICT.cli),
  },
  { files: ['src/cli/**/*.ts'], restrict: combine(RESTRICT.level, RESTRICT.etcd) },
  { files: [LEVEL_BACKEND], restrict: combine(RESTRICT.etcd, RESTRICT.cli) },
  { files: ETCD_CLIENTS, restrict: combine(RESTRICT.level, RESTRICT.cli) },
  {
    files: ['src/advertiser/**/*.ts'],
    restrict: combine(RESTRICT.level, RESTRICT.etcd, RESTRICT.cli, RESTRICT.advertiser),
  },
  {
    files: ['src/fallback/**/*.ts'],
    restrict: combine(RESTRICT.level, RESTRICT.etcd, RESTRICT.cli, RESTRICT.fallback),
  },
  { files: POLICY, restrict: combine(RESTRICT.level, RESTRICT.etcd, RESTRICT.cli, RESTRICT.policy) },
  { files: CODECS_COMMON, restrict: combine(RESTRICT.level, RESTRICT.etcd, RESTRICT.cli, RESTRICT.codec) },
  {
    files: CODECS_ADVERTISER,
    restrict: combine(RESTRICT.level, RESTRICT.etcd, RESTRICT.cli, RESTRICT.advertiser, RESTRICT.codec),
  },
];

/**
 * no-restricted-imports sees import declarations, exports and `import x = require()`, but not
 * `import('x')` (expression or type). This rule hands those to the core rule as a namespace import,
 * with the same options. A computed specifier (`import(name)`) cannot be checked.
 */
const coreRestrictedImports = /** @type {import('eslint').Rule.RuleModule} */ (
  builtinRules.get('no-restricted-imports')
);
/** @type {import('eslint').Rule.RuleModule} */
const noRestrictedDynamicImports = {
  meta: {
    ...coreRestrictedImports.meta,
    docs: { description: 'no-restricted-imports for import() expressions and import("x") types' },
  },
  create(context) {
    const core = coreRestrictedImports.create(context);
    /** @param {any} node @param {any} source @param {'value' | 'type'} importKind */
    const check = (node, source, importKind) => {
      if (source?.type !== 'Literal' || typeof source.value !== 'string') return;
      const ns = { type: 'ImportNamespaceSpecifier', loc: node.loc, range: node.range };
      core.ImportDeclaration?.(
        /** @type {any} */ ({
          type: 'ImportDeclaration',
          source,
          importKind,
          specifiers: [ns],
          loc: node.loc,
          range: node.range,
          parent: node.parent,
        }),
      );
    };
    return {
      ImportExpression: (node) => check(node, node.source, 'value'),
      /** @param {any} node */
      TSImportType: (node) => check(node, node.source ?? node.argument?.literal, 'type'),
    };
  },
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { muster: { rules: { 'no-restricted-dynamic-imports': noRestrictedDynamicImports } } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    // Build scripts run under node; scripts/bundle/ holds modules esbuild puts in the CLI bundle, where
    // require() of a bundled module defers its evaluation to first use (scripts/build.mjs).
    files: ['scripts/**/*.{js,mjs}'],
    languageOptions: { globals: { process: 'readonly', require: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Tests read JSON answers loosely.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // Only the CLI prints or exits (CONVENTIONS "layout").
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**', 'src/demo/**', 'src/bench/**'],
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'exit', message: 'Only src/cli exits.' },
      ],
    },
  },
  ...ZONES.map(({ files, ignores, restrict }) => ({
    files,
    ...(ignores ? { ignores } : {}),
    rules: {
      'no-restricted-imports': ['error', restrict],
      'muster/no-restricted-dynamic-imports': ['error', restrict],
    },
  })),
);
