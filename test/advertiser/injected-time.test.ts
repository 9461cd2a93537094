// The mDNS state machines take time and randomness from the Clock and random() they are given
// (CONVENTIONS 2, issue 7 item 4): only the socket composition (mdns.ts) may touch the real ones.
// Lint (eslint.config.js) guards the imports; this guards the globals, which no import rule sees.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const dir = path.resolve(import.meta.dirname, '../../src/advertiser');
const MACHINES = [
  'prober.ts',
  'announcer.ts',
  'publication.ts',
  'requery.ts',
  'browser.ts',
  'browse-cache.ts',
  'link.ts',
  'legacy.ts',
  'receiver.ts',
  'sink.ts',
  'records.ts',
  'txt.ts',
];

/** Real time, timers or randomness used directly, and imports other than project modules or types. */
function violations(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const m of code.matchAll(
    /(?<![.\w])(setTimeout|setInterval|setImmediate|Date\.now|new Date|Math\.random|performance\.now)\s*\(/g,
  ))
    out.push(m[1]!);
  for (const m of code.matchAll(/^import\s+(type\s+)?[^'"]*from\s+'([^']+)'/gm)) {
    const [, isType, from] = m;
    if (!from!.startsWith('.')) out.push(`import ${from}`);
    else if (/\/clock\.js$/.test(from!) && !isType) out.push(`value import ${from}`);
  }
  return out;
}

describe('the advertiser state machines use only the injected Clock and random()', () => {
  it('finds a planted violation (the check can fail)', () => {
    expect(
      violations(
        "import { systemClock } from '../common/clock.js';\nimport os from 'node:os';\nconst t = setTimeout(f, Date.now() * Math.random());",
      ),
    ).toEqual(['setTimeout', 'Date.now', 'Math.random', 'value import ../common/clock.js', 'import node:os']);
    expect(
      violations(
        "import type { Clock } from '../common/clock.js';\n// setTimeout(x)\nclock.setTimeout(f, 1);",
      ),
    ).toEqual([]);
  });

  it.each(MACHINES)('%s', (file) => {
    expect(violations(readFileSync(path.join(dir, file), 'utf8'))).toEqual([]);
  });
});
