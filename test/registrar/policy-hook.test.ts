// The policy hook runner (src/registrar/admission/policy-hook.ts; issue 10, item 1) with real
// `#!/bin/sh` scripts in a temp dir: exit codes, the reason, timeouts that kill, crashes, garbage,
// the stdin JSON, the concurrency bound and the environment. Timeouts here are real (a real process
// must be killed); no test asserts how long anything took.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryLogger } from '../../src/common/log.js';
import { Metrics } from '../../src/registrar/metrics.js';
import { ManualClock } from '../../src/common/clock.js';
import {
  Authorizer,
  type AdmissionRequest,
  type Provisioner,
  type Verdict,
} from '../../src/registrar/admission/authorizer.js';
import {
  combine,
  PolicyHook,
  POLICY_REASON_MAX,
  sanitizeReason,
  splitCommand,
  type PolicyRequest,
} from '../../src/registrar/admission/policy-hook.js';
import { scriptDir } from '../helpers/sh-script.js';

const scripts = scriptDir('muster-hook-');
const { dir, script } = scripts;
afterAll(scripts.cleanup);

const REQ: PolicyRequest = {
  v: 1,
  name: 'web-1',
  role: 'worker',
  cluster: 'edge',
  key: 'k'.repeat(43),
  channel: 'https',
  address: '198.18.0.20',
  onLink: true,
  heard: false,
  tokenId: 'abc123',
  builtin: { verdict: 'pending', reason: 'no token and install mode is off: waiting for approval' },
};

function hook(command: string, o: { timeoutMs?: number; concurrency?: number; queueLimit?: number } = {}) {
  const logs = memoryLogger('registrar');
  return { h: new PolicyHook({ command, log: logs.log, ...o }), logs };
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Waits (bounded) for a condition a real process brings about, e.g. a pid file written. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never: ${what}`);
}

describe('policy hook runner', () => {
  it('exit 0 accepts, 10 leaves pending, 20 rejects; the reason is the first line of stdout', async () => {
    const accept = hook(script('echo "in the inventory"; echo "second line"; exit 0')).h;
    expect(await accept.ask(REQ)).toEqual({ outcome: 'accept', reason: 'in the inventory' });
    const pending = hook(script('echo "unknown machine"; exit 10')).h;
    expect(await pending.ask(REQ)).toEqual({ outcome: 'pending', reason: 'unknown machine' });
    const reject = hook(script('echo "retired asset"; exit 20')).h;
    expect(await reject.ask(REQ)).toEqual({ outcome: 'reject', reason: 'retired asset' });
    expect(reject.stats.reject).toBe(1);
  });

  it('passes the request as one JSON object on stdin, with arguments and without a shell', async () => {
    const out = path.join(dir, 'stdin.json');
    const args = path.join(dir, 'args.txt');
    const h = hook(
      `${script(`cat > ${out}; printf '%s|' "$@" > ${args}; exit 0`)} one "two words" '$HOME'`,
    ).h;
    await h.ask(REQ);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(REQ);
    // No shell: $HOME is not expanded, quoting keeps "two words" one argument.
    expect(readFileSync(args, 'utf8')).toBe('one|two words|$HOME|');
  });

  it('a hook that hangs is killed at the timeout, with what it started, and the node waits', async () => {
    const pids = path.join(dir, 'hang.pids');
    const { h, logs } = hook(script(`sleep 300 & echo $! > ${pids}; echo $$ >> ${pids}; wait`), {
      timeoutMs: 300,
    });
    const answer = await h.ask(REQ);
    expect(answer).toEqual({ outcome: 'failed', why: 'timed out after 300ms' });
    const [child, shell] = readFileSync(pids, 'utf8').trim().split('\n').map(Number);
    // SIGKILL to the process group: the shell and its background sleep are both gone.
    await until(() => !alive(child!) && !alive(shell!), 'the hook and its child are killed');
    expect(h.stats.timeout).toBe(1);
    expect(h.active).toBe(0);
    expect(logs.text()).toContain('policy hook gave no answer');
    expect(combine({ kind: 'accept', rule: 'token', detail: 'token abc' }, answer)).toEqual({
      kind: 'pending',
      reason: 'policy hook failed (timed out after 300ms): waiting for approval',
    });
  });

  it('a crash (another exit code, a signal, a program that does not start) leaves the node pending', async () => {
    expect(await hook(script('echo oops >&2; exit 3')).h.ask(REQ)).toEqual({
      outcome: 'failed',
      why: 'exit 3',
    });
    expect(await hook(script('kill -9 $$')).h.ask(REQ)).toEqual({
      outcome: 'failed',
      why: 'killed by SIGKILL',
    });
    expect(await hook(path.join(dir, 'no-such-hook')).h.ask(REQ)).toEqual({
      outcome: 'failed',
      why: 'cannot start: ENOENT',
    });
    const notExec = path.join(dir, 'not-executable.sh');
    writeFileSync(notExec, '#!/bin/sh\nexit 0\n');
    const h = hook(notExec).h;
    expect(await h.ask(REQ)).toEqual({ outcome: 'failed', why: 'cannot start: EACCES' });
    await expect(h.check()).rejects.toThrow(/cannot be executed \(EACCES\)/);
  });

  it('garbage output: binary junk and endless text give a bounded, printable reason', async () => {
    const junk = hook(
      script("printf '\\033[31mred\\001\\002 \\342\\200\\256evil\\377\\376 ok\\n'; exit 20"),
    ).h;
    const a = await junk.ask(REQ);
    expect(a.outcome).toBe('reject');
    const reason = (a as { reason: string }).reason;
    // ESC, C0 controls, the bidi override U+202E and invalid UTF-8 are gone; the text stays.
    expect(reason).toBe('[31mred evil ok');
    // 1 MiB on one line (and more on stderr): the hook is drained, never blocked, the reason cut.
    const long = hook(
      script('head -c 1048576 /dev/zero | tr "\\0" x; head -c 1048576 /dev/zero >&2; exit 0'),
    ).h;
    const b = await long.ask(REQ);
    expect(b).toEqual({ outcome: 'accept', reason: 'x'.repeat(POLICY_REASON_MAX) });
    // A join token printed by the hook never reaches a record or a log.
    expect(sanitizeReason(`leaked abcdef.${'s'.repeat(40)} here`)).toBe(
      'leaked <join token, not shown> here',
    );
  });

  it('runs at most `concurrency` hooks at once; the rest queue, and a full queue answers pending at once', async () => {
    const runs = path.join(dir, 'runs');
    const gate = path.join(dir, 'gate');
    // Each run records its start, waits for the gate file, records its end.
    const body = `mkdir -p ${runs}; touch ${runs}/start.$$; while [ ! -e ${gate} ]; do sleep 0.02; done; touch ${runs}/end.$$; exit 0`;
    const { h } = hook(script(body), { concurrency: 2, queueLimit: 2, timeoutMs: 20_000 });
    const answers = [1, 2, 3, 4].map(() => h.ask(REQ));
    const starts = () =>
      existsSync(runs) ? readdirSync(runs).filter((f) => f.startsWith('start.')).length : 0;
    await until(() => starts() === 2, 'two hooks started');
    // Two more wait for a slot; a fifth finds the queue full and waits for approval at once.
    expect(await h.ask(REQ)).toEqual({ outcome: 'failed', why: 'busy: 2 running, 2 queued' });
    expect(starts()).toBe(2);
    expect(h.active).toBe(2);
    writeFileSync(gate, '');
    expect(await Promise.all(answers)).toEqual(Array(4).fill({ outcome: 'accept', reason: '' }));
    expect(starts()).toBe(4);
    expect(h.active).toBe(0);
  });

  it("never passes the registrar's environment: PATH and LANG only", async () => {
    const out = path.join(dir, 'env.txt');
    process.env.MUSTER_TEST_SECRET = 'do-not-leak';
    try {
      await hook(script(`env > ${out}; exit 0`)).h.ask(REQ);
    } finally {
      delete process.env.MUSTER_TEST_SECRET;
    }
    const env = readFileSync(out, 'utf8');
    expect(env).not.toContain('do-not-leak');
    const names = env
      .trim()
      .split('\n')
      .map((l) => l.split('=')[0]);
    expect(names.filter((x) => !['PATH', 'LANG', 'PWD', 'SHLVL', '_'].includes(x!))).toEqual([]);
  });

  it('the README shows examples/policy-hook.sh as it is', () => {
    const example = readFileSync(path.resolve('examples/policy-hook.sh'), 'utf8');
    expect(readFileSync(path.resolve('README.md'), 'utf8')).toContain('```sh\n' + example + '```\n');
  });

  it('tests the example script of the README (examples/policy-hook.sh)', async () => {
    const inventory = path.join(dir, 'inventory');
    writeFileSync(inventory, '# name  key fingerprint\nweb-1 ' + 'k'.repeat(43) + '\ndb-1 *\n');
    const denylist = path.join(dir, 'denylist');
    writeFileSync(denylist, 'old-1\n');
    const example = path.resolve('examples/policy-hook.sh');
    const h = hook(`${example} ${inventory} ${denylist}`).h;
    expect(await h.ask(REQ)).toEqual({ outcome: 'accept', reason: 'web-1 is in the inventory' });
    expect(await h.ask({ ...REQ, key: 'z'.repeat(43) })).toEqual({
      outcome: 'reject',
      reason: `web-1 is in the inventory with another key`,
    });
    expect(await h.ask({ ...REQ, name: 'db-1' })).toEqual({
      outcome: 'accept',
      reason: 'db-1 is in the inventory',
    });
    expect(await h.ask({ ...REQ, name: 'old-1' })).toEqual({ outcome: 'reject', reason: 'old-1 is retired' });
    expect(await h.ask({ ...REQ, name: 'new-1' })).toEqual({
      outcome: 'pending',
      reason: 'new-1 is not in the inventory',
    });
  });

  it('counts answers by outcome in the metrics (muster_policy_hook_runs_total)', async () => {
    const { h } = hook(script('echo no; exit 20'));
    const metrics = new Metrics({
      counts: async () => ({
        heard: 0,
        pending: 0,
        accepted: 0,
        issued: 0,
        active: 0,
        rejected: 0,
        removed: 0,
      }),
      installModeOn: async () => false,
      policyHook: () => h,
    });
    await h.ask(REQ);
    await h.ask(REQ);
    const text = await metrics.registry.metrics();
    expect(text).toContain('muster_policy_hook_runs_total{outcome="reject"} 2');
    expect(text).toContain('muster_policy_hook_runs_total{outcome="timeout"} 0');
    expect(text).toContain('muster_policy_hooks_running 0');
  });

  it('splits a command line like a shell would, without expanding anything', () => {
    expect(splitCommand(`/x/hook  -a 'b c' "d \\"e\\"" f\\ g $PATH`)).toEqual([
      '/x/hook',
      '-a',
      'b c',
      'd "e"',
      'f g',
      '$PATH',
    ]);
    expect(() => splitCommand(`/x/hook 'open`)).toThrow(/single quote/);
    expect(() => splitCommand('   ')).toThrow(/no program/);
  });
});

describe('combining the hook with the built-in verdict (deny wins)', () => {
  const pending = { kind: 'pending' as const, reason: 'no token: waiting for approval' };
  const token = { kind: 'accept' as const, rule: 'token' as const, detail: 'token abc', tokenId: 'abc' };

  it('reject refuses even a token; the node gets a short message, the log the reason', () => {
    expect(combine(token, { outcome: 'reject', reason: 'retired' })).toEqual({
      kind: 'deny',
      code: 'policy_denied',
      message: "the registrar's admission policy refuses this node",
      cause: 'policy hook: retired',
    });
  });

  it('pending makes even a token wait, with the reason', () => {
    expect(combine(token, { outcome: 'pending', reason: 'not racked yet' })).toEqual({
      kind: 'pending',
      reason: 'policy hook: not racked yet: waiting for approval',
    });
  });

  it("pending and failure keep what the built-in wait says besides its reason (install mode's refused attempt)", () => {
    const offLink = { ...pending, refusal: 'off_link' as const };
    expect(combine(offLink, { outcome: 'pending', reason: 'later' })).toEqual({
      kind: 'pending',
      refusal: 'off_link',
      reason: 'policy hook: later: waiting for approval',
    });
    expect(combine(offLink, { outcome: 'failed', why: 'exit 3' })).toEqual({
      kind: 'pending',
      refusal: 'off_link',
      reason: 'policy hook failed (exit 3): waiting for approval',
    });
  });

  it('accept admits what would wait (rule policy), keeps a built-in accept, never lifts a hold nor admits a tier', () => {
    expect(combine(pending, { outcome: 'accept', reason: 'in inventory' })).toEqual({
      kind: 'accept',
      rule: 'policy',
      detail: 'in inventory',
    });
    expect(combine(token, { outcome: 'accept', reason: 'in inventory' })).toEqual({
      ...token,
      detail: 'token abc; policy: in inventory',
    });
    const hold = { kind: 'pending' as const, reason: 'role walrus is a singleton', hold: true };
    expect(combine(hold, { outcome: 'accept', reason: 'ok' })).toBe(hold);
    // A tier registrar (role cluster) waits: its intermediate CA is not the hook's to give.
    expect(combine(pending, { outcome: 'accept', reason: 'ok' }, false)).toBe(pending);
    expect(combine(pending, { outcome: 'reject', reason: 'no' }, false)).toMatchObject({ kind: 'deny' });
  });
});

describe('the authorizer with a policy and a hold (fakes, no process)', () => {
  const req: AdmissionRequest = {
    name: 'n1',
    role: 'walrus',
    cluster: '',
    key: 'k'.repeat(43),
    channel: 'https',
    address: '203.0.113.9',
    onLink: false,
  };
  const rule = (v: Verdict | undefined): Provisioner => ({ name: 'fake', evaluate: () => v });
  const tokenAccept: Verdict = { kind: 'accept', rule: 'token', detail: 'token abc', tokenId: 'abc' };
  const hold: Verdict = { kind: 'pending', reason: 'role walrus is a singleton held by node w1', hold: true };
  const recorder = () => {
    const seen: Verdict[] = [];
    return {
      seen,
      policy: {
        judge: async (_r: AdmissionRequest, builtin: Exclude<Verdict, { kind: 'deny' }>) => {
          seen.push(builtin);
          return builtin;
        },
      },
    };
  };

  it("a hold beats a token or install-mode accept; the operator's pre-approval lifts it", async () => {
    const clock = new ManualClock();
    expect(await new Authorizer([rule(tokenAccept), rule(hold)], { clock }).decide(req)).toBe(hold);
    const pre: Verdict = { kind: 'accept', rule: 'approval', detail: 'pre-approved by alice' };
    expect(await new Authorizer([rule(hold), rule(pre)], { clock }).decide(req)).toBe(pre);
  });

  it('the policy sees every verdict but a deny, and the pending caps apply to what it leaves waiting', async () => {
    const clock = new ManualClock();
    const r = recorder();
    const deny: Verdict = { kind: 'deny', code: 'bad_proof', message: 'no' };
    expect(
      await new Authorizer([rule(tokenAccept), rule(deny)], { clock, policy: r.policy }).decide(req),
    ).toBe(deny);
    expect(r.seen).toEqual([]);
    await new Authorizer([rule(tokenAccept)], { clock, policy: r.policy }).decide(req);
    expect(r.seen).toEqual([tokenAccept]);
    // A policy that makes a token join wait: the full queue refuses it (closed), as any new wait.
    const waits = {
      judge: async () => ({ kind: 'pending' as const, reason: 'policy hook: later: waiting for approval' }),
    };
    const full = new Authorizer([rule(tokenAccept)], {
      clock,
      policy: waits,
      pendingCap: { max: 1, count: async () => 1 },
    });
    expect(await full.decide(req)).toMatchObject({ kind: 'deny', code: 'closed' });
  });
});
