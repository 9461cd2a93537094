/** Finding a program on PATH, for tests that need one (setpriv, systemd-analyze) and skip without it. */
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** The path of the executable cmd on PATH, or undefined when there is none. */
export function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    try {
      accessSync(path.join(dir || '.', cmd), constants.X_OK);
      return path.join(dir || '.', cmd);
    } catch {
      // not here
    }
  }
  return undefined;
}
