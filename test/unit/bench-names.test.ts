/**
 * The `cpu` benchmark reports the inclusive time of named functions of the join path
 * (src/bench/cpu.ts JOIN_PATH_FUNCTIONS, and ESSENTIAL_FUNCTIONS for the essential server;
 * `name@part-of-its-url`). A name that no longer exists
 * matches no profile frame and silently reports 0 %: after the store moved to src/store/, the list
 * still named registrar/registry.js and service methods that had moved. Each name of muster's own
 * code or of a dependency must be defined in the file it names (node: internals are not checked).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ESSENTIAL_FUNCTIONS, JOIN_PATH_FUNCTIONS } from '../../src/bench/cpu.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Where `name@url-part` is defined: src/<part>.ts for muster, node_modules/<part> for a dependency. */
function sourceOf(urlPart: string): string {
  const own = path.join(ROOT, 'src', urlPart.replace(/\.js$/, '.ts'));
  return existsSync(own) ? own : path.join(ROOT, 'node_modules', urlPart);
}

/** A function declaration, a method (with modifiers), or a function assigned to the name. */
function defines(text: string, name: string): boolean {
  const n = esc(name);
  return [
    new RegExp(`\\bfunction\\s*\\*?\\s*${n}\\s*[(<]`),
    new RegExp(
      `^\\s*(?:(?:public|private|protected|static|async|override|readonly)\\s+)*\\*?${n}\\s*[(<]`,
      'm',
    ),
    new RegExp(`\\b${n}\\s*=\\s*(?:async\\s+)?(?:function\\b|\\([^)]*\\)\\s*(?::[^=]+)?=>)`),
  ].some((re) => re.test(text));
}

describe('the cpu benchmark names functions that exist', () => {
  const checked = JOIN_PATH_FUNCTIONS.filter((s) => !s.split('@')[1]!.startsWith('node:'));

  it('names muster modules that exist (none under the old registrar/registry.js)', () => {
    expect(checked.length).toBeGreaterThan(10);
    for (const spec of checked) {
      const [, url] = spec.split('@') as [string, string];
      expect(existsSync(sourceOf(url)), `${spec}: ${sourceOf(url)}`).toBe(true);
    }
  });

  it.each(JOIN_PATH_FUNCTIONS.filter((s) => !s.split('@')[1]!.startsWith('node:')))(
    '%s is defined there',
    (spec) => {
      const [name, url] = spec.split('@') as [string, string];
      const file = sourceOf(url);
      expect(existsSync(file), file).toBe(true);
      expect(defines(readFileSync(file, 'utf8'), name), `${name} in ${file}`).toBe(true);
    },
  );

  // The essential server's profile names its own steps (bench/child.ts) and muster's proof codec.
  it.each(ESSENTIAL_FUNCTIONS.filter((s) => !s.split('@')[1]!.startsWith('node:')))(
    'essential server: %s is defined there',
    (spec) => {
      const [name, url] = spec.split('@') as [string, string];
      const file = sourceOf(url);
      expect(existsSync(file), file).toBe(true);
      expect(defines(readFileSync(file, 'utf8'), name), `${name} in ${file}`).toBe(true);
    },
  );

  it('the check is not vacuous: it would catch a moved or renamed function', () => {
    const level = readFileSync(sourceOf('store/level.js'), 'utf8');
    expect(defines(level, 'apply')).toBe(true);
    expect(defines(level, 'commit')).toBe(false);
    expect(existsSync(sourceOf('registrar/registry.js'))).toBe(false);
  });
});
