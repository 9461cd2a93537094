/**
 * The dependency rules (CONVENTIONS "Dependency direction", issue 7 item 5) bite: for each rule, a
 * planted import that breaks it fails lint at a path inside the restricted folder, and an import the
 * rule allows passes there. Files are linted from text (`lintText` with a `filePath`), so the planted
 * files need not exist. Every rule is planted in each zone of eslint.config.js it spans: a later flat
 * config entry for `no-restricted-imports` replaces an earlier one, and this catches a zone that
 * forgot to restate a wider rule.
 */
import { ESLint, type Linter } from 'eslint';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const STATIC = 'no-restricted-imports';
const DYNAMIC = 'muster/no-restricted-dynamic-imports';

/** The import specifier of `src/<target>` as written in `src/<from>`. */
function rel(from: string, target: string): string {
  const r = path.posix.relative(path.posix.dirname(`src/${from}`), `src/${target}`);
  return r.startsWith('.') ? r : `./${r}`;
}

/** One planted line; `dynamic`: an `import()` form, which the core rule does not see. */
type Plant = { code: string; dynamic?: boolean };
let unique = 0;
const ns = (spec: string): Plant => ({ code: `import * as m${unique++} from '${spec}';` });
const named = (name: string, spec: string): Plant => ({ code: `import { ${name} } from '${spec}';` });
const typeOnly = (name: string, spec: string): Plant => ({ code: `import type { ${name} } from '${spec}';` });
const dynamicImport = (spec: string): Plant => ({ code: `void import('${spec}');`, dynamic: true });
const typeExpr = (spec: string): Plant => ({ code: `export type T = import('${spec}').X;`, dynamic: true });

interface Rule {
  name: string;
  /** Files (under src/) the rule restricts: one per zone of the config it spans. */
  files: string[];
  forbidden: (file: string) => Plant[];
  /** Imports this rule lets through, and the file (default: each of `files`) where they pass. */
  allowed: (file: string) => Plant[];
  allowedIn?: string[];
}

const IO = ['net', 'dgram', 'fs', 'fs/promises', 'http', 'https', 'tls', 'timers', 'child_process'];
const CODECS = [
  'advertiser/txt.ts',
  'advertiser/records.ts',
  'common/proof.ts',
  'common/der.ts',
  'common/x509.ts',
  'common/names.ts',
];
/** One file per zone of eslint.config.js under src/, and a file of a folder created later. */
const ALL_ZONES = [
  'registrar/service.ts',
  'node/agent.ts',
  'store/memory.ts',
  'advertiser/mdns.ts',
  'advertiser/txt.ts',
  'fallback/client.ts',
  'registrar/policy.ts',
  'registrar/admission/token.ts',
  'common/x509.ts',
  'admin/client.ts',
];

const RULES: Rule[] = [
  {
    name: 'codecs import no socket, file or timer (nor level, fastify, an mDNS stack, or a module doing I/O)',
    files: CODECS,
    forbidden: (f) => [
      ...IO.flatMap((m) => [`node:${m}`, m]).map((m) => ns(m)),
      named('Socket', 'node:net'),
      named('createConnection', 'net'),
      typeOnly('Server', 'node:http'),
      ...['fastify', '@fastify/rate-limit', 'bonjour-service', 'multicast-dns', 'level'].map((m) => ns(m)),
      ...[
        'common/files.js',
        'common/config.js',
        'common/log.js',
        'common/clock.js',
        'advertiser/mdns.js',
      ].map((t) => ns(rel(f, t))),
      ...['registrar/service.js', 'node/agent.js', 'fallback/client.js', 'store/registry.js'].map((t) =>
        ns(rel(f, t)),
      ),
      dynamicImport('node:fs'),
      dynamicImport('node:timers/promises'),
      typeExpr('node:net'),
    ],
    allowed: (f) => [
      named('createHash', 'node:crypto'),
      named('isIP', 'node:net'),
      ns('node:os'),
      named('MusterError', rel(f, 'common/errors.js')),
      named('readDer', rel(f, 'common/der.js')),
      named('encodeTxt', rel(f, 'advertiser/txt.js')),
    ],
  },
  {
    name: 'the policy code imports neither fastify nor bonjour-service',
    files: [
      'registrar/policy.ts',
      'registrar/admission/token.ts',
      'registrar/admission/provisioners/install-mode.ts',
    ],
    forbidden: (f) => [
      ...['fastify', 'bonjour-service', '@fastify/rate-limit', 'multicast-dns'].map((m) => ns(m)),
      typeOnly('FastifyRequest', 'fastify'),
      ns(rel(f, 'fallback/api.js')),
      ns(rel(f, 'advertiser/index.js')),
      dynamicImport('bonjour-service'),
      typeExpr('fastify'),
    ],
    allowed: (f) => [
      named('joinProofMac', rel(f, 'common/proof.js')),
      typeOnly('NodeRecord', rel(f, 'store/types.js')),
      named('randomBytes', 'node:crypto'),
    ],
  },
  {
    name: 'only the level backend imports level',
    files: [...ALL_ZONES, 'store/registry.ts', 'cli/main.ts', 'bench/store.ts'],
    forbidden: () => [
      ns('level'),
      ns('classic-level'),
      ns('abstract-level'),
      typeOnly('Level', 'level'),
      dynamicImport('level'),
    ],
    allowedIn: ['store/level.ts'],
    allowed: () => [
      named('Level', 'level'),
      ns('classic-level'),
      typeOnly('AbstractLevel', 'abstract-level'),
      dynamicImport('level'),
    ],
  },
  {
    name: 'only the etcd backend imports etcd3 (and the bench that starts etcd)',
    files: [...ALL_ZONES, 'store/registry.ts', 'store/level.ts', 'cli/main.ts', 'bench/scale.ts'],
    forbidden: () => [
      ns('etcd3'),
      named('Etcd3', 'etcd3'),
      typeOnly('IKeyValue', 'etcd3'),
      dynamicImport('etcd3'),
      typeExpr('etcd3'),
    ],
    allowedIn: ['store/etcd.ts', 'bench/etcd.ts'],
    allowed: () => [named('Etcd3', 'etcd3'), typeOnly('Watcher', 'etcd3'), dynamicImport('etcd3')],
  },
  {
    name: 'nothing in src imports src/cli',
    files: [...ALL_ZONES, 'store/level.ts', 'bench/run.ts'],
    forbidden: (f) => [
      named('AdminClient', rel(f, 'cli/admin-client.js')),
      typeOnly('Argv', rel(f, 'cli/settings.js')),
      dynamicImport(rel(f, 'cli/main.js')),
    ],
    allowedIn: ['cli/main.ts', 'cli/sub/x.ts'],
    allowed: (f) => [
      named('configCommand', rel(f, 'cli/config-cmd.js')),
      dynamicImport(rel(f, 'cli/main.js')),
    ],
  },
  {
    name: 'the advertiser imports nothing from the registrar (nor node, cli, fallback, store)',
    files: ['advertiser/mdns.ts', 'advertiser/txt.ts', 'advertiser/probe/prober.ts'],
    forbidden: (f) => [
      ...[
        'registrar/service.js',
        'registrar/policy.js',
        'registrar/admission/index.js',
        'node/agent.js',
        'cli/main.js',
        'fallback/client.js',
        'store/types.js',
      ].map((t) => ns(rel(f, t))),
      typeOnly('MusterEvent', rel(f, 'registrar/registry.js')),
      dynamicImport(rel(f, 'registrar/discovery.js')),
      typeExpr(rel(f, 'registrar/service.js')),
    ],
    allowed: (f) => [
      named('MusterError', rel(f, 'common/errors.js')),
      named('decodeTxt', rel(f, 'advertiser/txt.js')),
    ],
  },
  {
    name: 'src/fallback imports no registrar internals and no store internals but types',
    files: ['fallback/api.ts', 'fallback/client.ts', 'fallback/routes/join.ts'],
    forbidden: (f) => [
      ...[
        'registrar/service.js',
        'registrar/onlink.js',
        'registrar/admission/index.js',
        'store/level.js',
        'store/memory.js',
        'store/registry.js',
      ].map((t) => ns(rel(f, t))),
      typeOnly('Metrics', rel(f, 'registrar/metrics.js')),
      dynamicImport(rel(f, 'registrar/main.js')),
      dynamicImport(rel(f, 'store/level.js')),
      typeExpr(rel(f, 'registrar/service.js')),
    ],
    allowed: (f) => [
      typeOnly('Registry', rel(f, 'store/registry.js')),
      typeExpr(rel(f, 'store/memory.js')),
      named('NODE_STATES', rel(f, 'store/types.js')),
      named('MusterError', rel(f, 'common/errors.js')),
      ns('fastify'),
    ],
  },
];

let eslint: ESLint;
beforeAll(() => {
  eslint = new ESLint({ cwd: root });
});

async function lint(file: string, plants: Plant[]): Promise<Linter.LintMessage[]> {
  const [result] = await eslint.lintText(plants.map((p) => p.code).join('\n') + '\n', {
    filePath: path.join(root, 'src', file),
  });
  const messages = result!.messages;
  // A parse error or an ignored path would hide every rule: fail loudly instead.
  expect(messages.filter((m) => m.fatal || m.ruleId === null)).toEqual([]);
  return messages;
}

describe('dependency rules (eslint.config.js)', () => {
  for (const rule of RULES) {
    describe(rule.name, () => {
      it.each(rule.files)('a planted violation in src/%s fails lint, once per import', async (file) => {
        const plants = rule.forbidden(file);
        const messages = await lint(file, plants);
        plants.forEach((plant, i) => {
          const want = plant.dynamic ? DYNAMIC : STATIC;
          const hits = messages.filter((m) => m.line === i + 1 && m.ruleId === want && m.severity === 2);
          expect(hits.length, `${plant.code} in src/${file} should fail ${want}`).toBeGreaterThan(0);
        });
      });

      it.each(rule.allowedIn ?? rule.files)('an allowed import in src/%s passes', async (file) => {
        const messages = await lint(file, rule.allowed(file));
        expect(messages.filter((m) => m.ruleId === STATIC || m.ruleId === DYNAMIC)).toEqual([]);
      });
    });
  }
});
