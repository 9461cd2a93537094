/** Ties every error code to its documentation (CONVENTIONS 3, after fastify's errors test). */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCodes } from '../../src/common/errors.js';
import { JOIN_EXIT } from '../../src/cli/exit-codes.js';

const doc = readFileSync(path.resolve(import.meta.dirname, '../../docs/errors.md'), 'utf8');

describe('docs/errors.md', () => {
  it.each(Object.entries(ErrorCodes))('documents %s with its status', (code, { status }) => {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
    expect(row, `no row for ${code}`).toBeDefined();
    if (status) expect(row).toContain(`| ${status} |`);
  });

  it('documents every muster join exit code', () => {
    for (const code of Object.values(JOIN_EXIT)) expect(doc).toMatch(new RegExp(`^\\| ${code} \\|`, 'm'));
  });

  it('has no row for a code that does not exist', () => {
    const documented = [...doc.matchAll(/^\| `([A-Za-z_]+)` \|/gm)].map((m) => m[1]);
    for (const c of documented) expect(Object.keys(ErrorCodes)).toContain(c);
  });
});
