/**
 * The few JSON Schema builders muster's wire schemas use, with TypeBox's names and static types but
 * without TypeBox at run time: importing @sinclair/typebox cost ~190 ms of a registrar's cold start
 * (issue 12, target 2; docs/benchmarks.md "A cold start"). Each builder returns the same JSON Schema
 * TypeBox builds (same keys, same `required` rule), so fastify validates exactly as before, and
 * `Static<typeof X>` (a type-only import, erased at build) still gives the TypeScript type.
 */
import type {
  SchemaOptions,
  StringOptions,
  NumberOptions,
  ArrayOptions,
  ObjectOptions,
  TArray,
  TBoolean,
  TInteger,
  TLiteral,
  TLiteralValue,
  TNull,
  TObject,
  TOptional,
  TProperties,
  TSchema,
  TString,
  TUnion,
} from '@sinclair/typebox';

/** TypeBox's marker of an optional property (Symbol.for: the same symbol TypeBox uses). */
const OPTIONAL = Symbol.for('TypeBox.Optional');

const isOptional = (s: unknown): boolean =>
  typeof s === 'object' && s !== null && (s as Record<symbol, unknown>)[OPTIONAL] === 'Optional';

/** Options first, then the type's own keys (TypeBox's CreateType order). */
const create = <T>(schema: Record<string, unknown>, options?: object): T =>
  (options !== undefined ? { ...options, ...schema } : schema) as T;

export const Type = {
  String: (options?: StringOptions): TString => create({ type: 'string' }, options),
  Integer: (options?: NumberOptions): TInteger => create({ type: 'integer' }, options),
  Boolean: (options?: SchemaOptions): TBoolean => create({ type: 'boolean' }, options),
  Null: (options?: SchemaOptions): TNull => create({ type: 'null' }, options),
  Literal: <V extends TLiteralValue>(value: V, options?: SchemaOptions): TLiteral<V> =>
    create({ const: value, type: typeof value }, options),
  Array: <I extends TSchema>(items: I, options?: ArrayOptions): TArray<I> =>
    create({ type: 'array', items }, options),
  Union: <Ts extends TSchema[]>(anyOf: [...Ts], options?: SchemaOptions): TUnion<Ts> =>
    create({ anyOf }, options),
  Optional: <S extends TSchema>(schema: S): TOptional<S> =>
    ({ ...schema, [OPTIONAL]: 'Optional' }) as unknown as TOptional<S>,
  Object: <P extends TProperties>(properties: P, options?: ObjectOptions): TObject<P> => {
    const required = Object.keys(properties).filter((k) => !isOptional(properties[k]));
    return create(
      required.length > 0 ? { type: 'object', required, properties } : { type: 'object', properties },
      options,
    );
  },
};
