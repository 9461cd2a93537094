/** Tests that spawn the real CLI need dist/: build it when it is missing or older than src/. */
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';

function newest(dir: string): number {
  let m = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    m = Math.max(m, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return m;
}

export default function setup(): void {
  const root = path.resolve(import.meta.dirname, '..');
  const bin = path.join(root, 'dist/cli/main.js');
  if (!existsSync(bin) || statSync(bin).mtimeMs < newest(path.join(root, 'src'))) {
    // `npm run build`'s script: tsc, then the bundled bin (dist/cli/main.js) that ships. tsc emits even
    // when it finds type errors and the bundle is still made; `npm test` type-checks on its own (npm run
    // typecheck), so a type error elsewhere must not stop the tests that run the CLI from being run.
    try {
      execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' });
    } catch {
      if (!existsSync(bin)) throw new Error('the build produced no dist/cli/main.js');
      process.stderr.write(
        'global-setup: tsc reported type errors (see above); running the tests on what it emitted\n',
      );
    }
  }
}
