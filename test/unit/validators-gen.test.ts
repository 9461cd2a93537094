/**
 * The registrar's APIs validate requests with validators generated at build time
 * (src/fallback/validators.gen.ts) instead of compiling the schemas at start. A schema changed
 * without regenerating would be validated by the stale code: the file must be exactly what the
 * generator makes from today's schemas, and every schema the two APIs route must be in it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateValidators, GENERATED_FILE } from '../../src/build/gen-validators.js';
import * as adminSchemas from '../../src/admin/schemas.js';
import * as fallbackSchemas from '../../src/fallback/schemas.js';
import { precompiledValidator } from '../../src/fallback/validate.js';
import { validators } from '../../src/fallback/validators.gen.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

describe('generated validators', () => {
  it('are what the generator makes from the current schemas (run: node dist/build/gen-validators.js)', async () => {
    expect(readFileSync(path.join(ROOT, GENERATED_FILE), 'utf8')).toBe(await generateValidators());
  });

  it('cover every route schema of the registration and admin APIs', () => {
    const routed = [
      fallbackSchemas.CrlQuery,
      fallbackSchemas.JoinBody,
      fallbackSchemas.NameParams,
      fallbackSchemas.WaitQuery,
      fallbackSchemas.SignedBody,
      fallbackSchemas.LeaveBody,
      fallbackSchemas.RenewBody,
      adminSchemas.InstallModeBody,
      adminSchemas.CreateTokenBody,
      adminSchemas.TokenIdParams,
      adminSchemas.ListNodesQuery,
      adminSchemas.OperatorBody,
      adminSchemas.PreapproveBody,
      adminSchemas.ForceApproveBody,
      adminSchemas.GroupBody,
      adminSchemas.BanBody,
      adminSchemas.EventsQuery,
    ];
    for (const s of routed) expect(validators.has(JSON.stringify(s))).toBe(true);
  });

  it("refuse as fastify's Ajv does, with its error objects", () => {
    const v = precompiledValidator({
      schema: fallbackSchemas.JoinBody,
      method: 'POST',
      url: '/v1/join',
      httpPart: 'body',
    }) as ((d: unknown) => boolean) & { errors?: { instancePath: string; message: string }[] };
    const csr = 'x'.repeat(200);
    expect(v({ name: 'node-1', role: 'worker', cluster: '', csr })).toBe(true);
    expect(v({ name: 'Bad_Name', role: 'worker', cluster: '', csr })).toBe(false);
    expect(v.errors?.[0]).toMatchObject({ instancePath: '/name', keyword: 'pattern' });
    expect(v({ name: 'node-1', role: 'worker', cluster: '', csr, extra: 1 })).toBe(false);
    expect(v.errors?.[0]).toMatchObject({ message: 'must NOT have additional properties' });
    // No coercion: a number is not a name.
    expect(v({ name: 7, role: 'worker', cluster: '', csr })).toBe(false);
    // Lengths in code points (Ajv's ucs2length), not UTF-16 units.
    const limits = precompiledValidator({
      schema: adminSchemas.CreateTokenBody,
      method: 'POST',
      url: '/v1/admin/tokens',
      httpPart: 'body',
    }) as (d: unknown) => boolean;
    expect(limits({ description: '\u{1F600}'.repeat(200) })).toBe(true);
    expect(limits({ description: '\u{1F600}'.repeat(201) })).toBe(false);
  });
});
