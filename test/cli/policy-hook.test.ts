// The policy hook through the real CLI (issue 10, item 1): `muster registrar --policy-exec` on
// 127.0.0.1 (--mdns off) with a real `#!/bin/sh` hook, real `muster join`s, and `muster nodes show`
// printing the hook's reason as the deciding rule (or as the reason a node waits).
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localRegistrarArgs, spawnRegistrar, type SpawnedRegistrar } from '../helpers/cli.js';
import { tempDir } from '../helpers/registrar.js';
import { cli, filesUnder } from './helpers.js';

let t: ReturnType<typeof tempDir>;
let sock: string;
let reg: SpawnedRegistrar;

beforeAll(async () => {
  t = tempDir('muster-policy-cli-');
  sock = path.join(t.dir, 'admin.sock');
  const hook = path.join(t.dir, 'hook.sh');
  // ok-* accepted, everything else left waiting; the request is JSON on stdin.
  writeFileSync(
    hook,
    [
      '#!/bin/sh',
      `name=$(sed -n 's/.*"name":"\\([a-z0-9-]*\\)".*/\\1/p')`,
      'case "$name" in',
      '  ok-*) echo "$name is in the inventory (rack 7)"; exit 0 ;;',
      '  evil-*) echo "$name is on the retired list"; exit 20 ;;',
      '  *) echo "$name is not in the inventory"; exit 10 ;;',
      'esac',
      '',
    ].join('\n'),
  );
  chmodSync(hook, 0o755);
  reg = await spawnRegistrar([...localRegistrarArgs(t.dir, sock), '--policy-exec', hook]);
});
afterAll(async () => {
  await reg?.stop('SIGKILL');
  t?.cleanup();
});

const op = (args: string[]) => cli([...args, '--admin-socket', sock]);
const join = (name: string, extra: string[] = []) =>
  cli([
    'join',
    '--registrar',
    reg.url,
    '--name',
    name,
    '--state-dir',
    path.join(t.dir, 'nodes', name),
    '--mdns',
    'off',
    ...extra,
  ]);

describe('muster registrar --policy-exec', () => {
  it('a node the hook accepts joins with no token; nodes show prints the policy rule and reason', () => {
    const r = join('ok-1');
    expect(r.code, r.stderr).toBe(0);
    expect(filesUnder(path.join(t.dir, 'nodes', 'ok-1'))).toContain('node.crt');
    const shown = op(['nodes', 'show', 'ok-1']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^decision:\s+policy: ok-1 is in the inventory \(rack 7\) \(/m);
    const json = JSON.parse(op(['nodes', 'show', 'ok-1', '--json']).stdout) as Record<string, unknown>;
    expect(json).toMatchObject({
      state: expect.stringMatching(/issued|active/),
      decision: { rule: 'policy', detail: 'ok-1 is in the inventory (rack 7)' },
    });
  });

  it('a node the hook leaves pending waits; nodes show prints why', () => {
    const r = join('new-1', ['--timeout', '2s']);
    expect(r.code).not.toBe(0);
    expect(filesUnder(path.join(t.dir, 'nodes', 'new-1')) ?? []).not.toContain('node.crt');
    const shown = op(['nodes', 'show', 'new-1']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^state:\s+pending$/m);
    expect(shown.stdout).toMatch(
      /^waiting because:\s+policy hook: new-1 is not in the inventory: waiting for approval$/m,
    );
  });

  it('a node the hook rejects is refused for good: exit 3 at once (no retry), nothing on disk but its key', () => {
    const before = JSON.parse(op(['events', '--json']).stdout) as { items: { type: string }[] };
    const r = join('evil-1', ['--timeout', '30s']);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/policy/);
    expect(filesUnder(path.join(t.dir, 'nodes', 'evil-1')) ?? []).not.toContain('node.crt');
    expect(op(['nodes', 'show', 'evil-1']).code).toBe(1);
    const after = JSON.parse(op(['events', '--json']).stdout) as { items: { type: string }[] };
    expect(after.items.slice(before.items.length).map((e) => e.type)).toEqual(['refused']);
  });

  it.each([
    [
      'a program that cannot be executed',
      [path.join('/nonexistent', 'hook.sh')],
      /cannot be executed \(ENOENT\)/,
    ],
    ['a command line with an unclosed quote', ["/bin/true 'open"], /--policy-exec is not a command line/],
  ])('refuses to start with %s (exit 2), creating nothing', (_what, value, message) => {
    const dir = path.join(t.dir, 'bad');
    const r = cli([
      'registrar',
      '--mdns',
      'off',
      ...localRegistrarArgs(dir, path.join(dir, 'admin.sock')),
      '--policy-exec',
      ...value,
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    // Refused before anything is opened: no state directory, no store, no CA, no socket.
    expect(filesUnder(dir)).toBeNull();
  });
});
