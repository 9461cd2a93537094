/** `#!/bin/sh` scripts in a temp dir, for tests that run a real hook (the policy hook). */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface ScriptDir {
  dir: string;
  /** Writes `#!/bin/sh\n<body>` as a new executable file in dir; returns its path. */
  script(body: string): string;
  cleanup(): void;
}

export function scriptDir(prefix: string): ScriptDir {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  let n = 0;
  return {
    dir,
    script(body) {
      const file = path.join(dir, `hook-${++n}.sh`);
      writeFileSync(file, `#!/bin/sh\n${body}\n`);
      chmodSync(file, 0o755);
      return file;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
