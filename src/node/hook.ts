/**
 * The `--on-registered` command (DESIGN "Roles": the node runs an optional hook once registered).
 *
 * Its environment says where the credentials are, in variables of their own: every `MUSTER_<FLAG>` is
 * a muster setting (common/config.ts `envName`) and `MUSTER_CONFIG` names muster's config file, so a
 * hook that runs muster again must not find the node's values there (the old `MUSTER_CLUSTER` and
 * `MUSTER_CONFIG` were read back as settings). For the same reason, and so the join token never
 * reaches a script, no inherited `MUSTER_*` variable is passed on.
 */
import { spawn } from 'node:child_process';
import { MusterError } from '../common/errors.js';
import type { Bundle } from '../common/proof.js';
import type { NodeFiles } from './node-files.js';

/** The variables the hook gets (README "Running a command once registered"). */
export const HOOK_VARIABLES = [
  'MUSTER_NODE_NAME',
  'MUSTER_NODE_ROLE',
  'MUSTER_NODE_CLUSTER',
  'MUSTER_NODE_CERT',
  'MUSTER_NODE_KEY',
  'MUSTER_NODE_CA',
  'MUSTER_NODE_CHAIN',
  // Not MUSTER_NODE_CONFIG: that is the registrar's `node-config` setting.
  'MUSTER_NODE_CONFIG_FILE',
  'MUSTER_NODE_BUNDLE',
  // The node's group (DESIGN "Groups"; bundle config `group`), when it is in one.
  'MUSTER_NODE_GROUP',
] as const;

export type HookVariable = (typeof HOOK_VARIABLES)[number];

/** The hook's environment: the inherited one without any MUSTER_* variable, plus HOOK_VARIABLES. */
export function hookEnvironment(
  inherited: NodeJS.ProcessEnv,
  files: NodeFiles,
  bundle: Bundle,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(inherited)) {
    if (v !== undefined && !k.toUpperCase().startsWith('MUSTER_')) env[k] = v;
  }
  const own: Partial<Record<HookVariable, string>> = {
    MUSTER_NODE_NAME: bundle.node,
    MUSTER_NODE_ROLE: bundle.role,
    MUSTER_NODE_CLUSTER: bundle.cluster,
    MUSTER_NODE_CERT: files.path('cert'),
    MUSTER_NODE_KEY: files.path('key'),
    MUSTER_NODE_CA: files.path('ca'),
    // Only when the file exists (a bundle without intermediates writes no chain.pem).
    ...(bundle.chain.length > 0 ? { MUSTER_NODE_CHAIN: files.path('chain') } : {}),
    MUSTER_NODE_CONFIG_FILE: files.path('config'),
    MUSTER_NODE_BUNDLE: files.path('bundle'),
    // Only when the node is in a group: absent after `muster nodes ungroup` (like config.json's key).
    ...(bundle.config.group !== undefined ? { MUSTER_NODE_GROUP: bundle.config.group } : {}),
  };
  return Object.assign(env, own);
}

/** Runs the command with /bin/sh; its output goes where muster's goes. Non-zero: MUSTER_ERR_HOOK. */
export async function runHook(
  command: string,
  env: Record<string, string>,
  /** The setting that gave the command, for the error message. */
  setting = '--on-registered',
): Promise<void> {
  const code = await new Promise<number>((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'inherit', 'inherit'], env });
    child.on('error', () => resolve(127));
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
  });
  if (code !== 0) throw new MusterError('MUSTER_ERR_HOOK', `the ${setting} command exited with ${code}`);
}
