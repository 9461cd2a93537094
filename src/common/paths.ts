/** Default locations (DESIGN "Files and units"): system paths as root, XDG paths for a user. */
import os from 'node:os';
import path from 'node:path';

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

function userState(): string {
  return process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
}

export function defaultRegistrarStateDir(): string {
  return isRoot() ? '/var/lib/muster-registrar' : path.join(userState(), 'muster-registrar');
}

export function defaultNodeStateDir(): string {
  return isRoot() ? '/var/lib/muster' : path.join(userState(), 'muster');
}

export function defaultAdminSocket(): string {
  if (isRoot()) return '/run/muster/admin.sock';
  const runtime = process.env.XDG_RUNTIME_DIR;
  return runtime ? path.join(runtime, 'muster', 'admin.sock') : path.join(defaultRegistrarStateDir(), 'admin.sock');
}
