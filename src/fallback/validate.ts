/**
 * fastify's validator compiler for muster's two APIs: the validators generated at build time from
 * the wire schemas (validators.gen.ts, src/build/gen-validators.ts) instead of Ajv compiling every
 * route's schemas when the server starts (~300 ms of a registrar's cold start, issue 12 target 2).
 * A schema without a generated validator (one added since the file was last generated) is compiled
 * by fastify's own Ajv compiler, loaded then: the answer is the same, only the start is slower.
 */
import { createRequire } from 'node:module';
import type { FastifySchemaCompiler, FastifyServerOptions } from 'fastify';
import { validators } from './validators.gen.js';

type Validator = ReturnType<FastifySchemaCompiler<unknown>>;

let fallback: ((schema: object) => Validator) | undefined;

/** What fastify would have compiled: its Ajv compiler with buildApi's options (no coercion, no removal). */
function compileWithAjv(schema: object): Validator {
  if (!fallback) {
    const factory = createRequire(import.meta.url)('@fastify/ajv-compiler') as () => (
      external: object,
      options: object,
    ) => (route: { schema: object }) => Validator;
    const compile = factory()({}, { customOptions: { removeAdditional: false, coerceTypes: false } });
    fallback = (s) => compile({ schema: s });
  }
  return fallback(schema);
}

/** Schemas compiled at start because no generated validator matched (tests: should stay empty). */
export const compiledAtStart: object[] = [];

export const precompiledValidator: FastifySchemaCompiler<unknown> = ({ schema }) => {
  const v = validators.get(JSON.stringify(schema)) as Validator | undefined;
  if (v) return v;
  compiledAtStart.push(schema as object);
  return compileWithAjv(schema as object);
};

/**
 * fastify's `schemaController` option for muster's apps: the generated validators, and JSON.stringify
 * for replies (no route has a response schema, so no reply is ever serialised by a compiled schema).
 * Given both builders, fastify never loads @fastify/ajv-compiler (Ajv, ajv-formats) or
 * @fastify/fast-json-stringify-compiler, which it otherwise requires when the app is made: the
 * largest part of fastify's load at a registrar's start (issue 12, target 2). The bundle leaves them
 * out (scripts/build.mjs); a schema without a generated validator still loads Ajv, as above.
 */
export const schemaController = {
  compilersFactory: {
    buildValidator: () => precompiledValidator,
    buildSerializer: () => () => (data: unknown) => JSON.stringify(data),
  },
} as unknown as NonNullable<FastifyServerOptions['schemaController']>;
