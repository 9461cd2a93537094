/**
 * The policy hook (DESIGN "Admission policy"; issue 10, item 1): `muster registrar --policy-exec CMD`
 * lets a site's own program judge every join that needs a decision.
 *
 * Protocol (version 1, also in README "Policy hook"):
 * - CMD is run as a program and its arguments, split on white space with '…' and "…" quoting, and NO
 *   shell: nothing in it is expanded, so a command can never be re-interpreted, and the registrar kills
 *   exactly the process group it started. Write `/bin/sh -c '…'` to have a shell.
 * - The request arrives as one JSON object on stdin (PolicyRequest, `"v": 1`), then stdin closes.
 * - Exit 0 accepts, 10 leaves the node pending, 20 rejects; the first line of stdout is the reason.
 * - Any other exit, a signal, a program that cannot be started, or no answer within the timeout: the
 *   node waits for the operator (default-deny), and the registrar logs a warning.
 * - Environment: PATH and LANG only (the registrar's environment may hold secrets), working directory
 *   `/`, its own process group (killed with SIGKILL on timeout, and once it exits: it must not leave
 *   processes behind).
 *
 * Combination with the built-in verdict (combine()): deny wins. A built-in refusal (a bad token proof,
 * a ban, the cluster) never reaches the hook; the hook may refuse anything, make anything wait, and may
 * accept what would otherwise wait for approval, except a hold (a singleton role: only the operator
 * lifts it) and a tier registrar (role `cluster`: it gets an intermediate CA).
 *
 * What the hook prints is untrusted text that ends in records and logs: at most 4 KiB of stdout and of
 * stderr are read, the reason is the first line with control and format characters removed, white
 * space collapsed, join tokens redacted, cut to 200 characters.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { splitCommand } from '../../common/command-line.js';
import { redactTokens } from '../../common/config.js';
import { MusterError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { TIER_ROLE } from '../issuer.js';
import type { AdmissionRequest, Verdict } from './authorizer.js';

export { splitCommand };

export const POLICY_PROTOCOL_VERSION = 1;
export const DEFAULT_POLICY_TIMEOUT_MS = 5_000;
export const DEFAULT_POLICY_CONCURRENCY = 4;
/** Bytes of stdout (and of stderr) read from one run; the rest is drained and dropped. */
export const POLICY_OUTPUT_MAX = 4096;
/** Characters of the reason kept. */
export const POLICY_REASON_MAX = 200;

export const EXIT_ACCEPT = 0;
export const EXIT_PENDING = 10;
export const EXIT_REJECT = 20;

/** What the hook reads on stdin. */
export interface PolicyRequest {
  v: typeof POLICY_PROTOCOL_VERSION;
  name: string;
  role: string;
  /** The cluster the node asked for ('' = any). */
  cluster: string;
  /** SHA-256 fingerprint of the node's public key (base64url), as `muster nodes show` prints it. */
  key: string;
  /** 'https' or 'mdns'. */
  channel: string;
  /** The TCP peer address of the request. */
  address: string;
  /** The address is on the local link (the subnet of an interface the registrar advertises on). */
  onLink: boolean;
  /** The registrar heard this node's mDNS advertisement with this key (a hint, never a credential). */
  heard: boolean;
  /** The id of the join token the node presented (its proof checked), or null. Never the secret. */
  tokenId: string | null;
  /** What the registrar would decide without the hook. */
  builtin: { verdict: 'accept'; rule: string; reason: string } | { verdict: 'pending'; reason: string };
}

export type HookAnswer =
  | { outcome: 'accept' | 'pending' | 'reject'; reason: string }
  /** The hook gave no valid answer; `why` says how ("exit 3", "timed out after 5s", ...). */
  | { outcome: 'failed'; why: string };

export interface PolicyHookOptions {
  /** The command line (--policy-exec). */
  command: string;
  log: Logger;
  timeoutMs?: number;
  /** Runs at once at most; beyond it requests queue. */
  concurrency?: number;
  /** Requests waiting for a free slot at most; beyond it the node waits for approval at once. */
  queueLimit?: number;
  /** The hook's environment: PATH and LANG of this one (default: the registrar's own PATH and LANG). */
  env?: NodeJS.ProcessEnv;
}

/** Counts of runs by outcome, for metrics and tests. */
export type PolicyStats = Record<'accept' | 'pending' | 'reject' | 'failed' | 'timeout' | 'busy', number>;

/**
 * The hook's output made fit for a record, a log line and a terminal: the first line, control and
 * format characters (escape sequences, bidi overrides) removed, white space collapsed, join tokens
 * redacted, at most POLICY_REASON_MAX characters.
 */
export function sanitizeReason(out: string): string {
  const first = out.split(/\r?\n/, 1)[0] ?? '';
  const clean = redactTokens(
    first
      .replace(/[\p{Cc}\p{Cf}\p{Co}\p{Cs}\uFFFD]/gu, ' ')
      .replace(/\s+/g, ' ')
      .trim(),
  );
  return [...clean].slice(0, POLICY_REASON_MAX).join('').trim();
}

/** The request the hook reads, from what the authorizer knows and its built-in verdict. */
export function policyRequest(
  req: AdmissionRequest,
  builtin: Exclude<Verdict, { kind: 'deny' }>,
): PolicyRequest {
  return {
    v: POLICY_PROTOCOL_VERSION,
    name: req.name,
    role: req.role,
    cluster: req.cluster,
    key: req.key,
    channel: req.channel,
    address: req.address,
    onLink: req.onLink,
    heard: req.heard !== undefined && req.heard.key === req.key,
    tokenId: req.proof?.id ?? null,
    builtin:
      builtin.kind === 'accept'
        ? { verdict: 'accept', rule: builtin.rule, reason: builtin.detail }
        : { verdict: 'pending', reason: builtin.reason },
  };
}

/**
 * The verdict: the built-in one and the hook's answer, deny winning (see the module comment). A
 * built-in deny never gets here.
 */
export function combine(
  builtin: Exclude<Verdict, { kind: 'deny' }>,
  answer: HookAnswer,
  /** The hook may admit what would wait (not so for a tier registrar: issue 11). */
  mayAdmit = true,
): Verdict {
  switch (answer.outcome) {
    case 'reject':
      return {
        kind: 'deny',
        code: 'policy_denied',
        // The reason is the operator's (it may name inventory or people): the node is told little.
        message: "the registrar's admission policy refuses this node",
        cause: `policy hook: ${answer.reason || 'rejected'}`,
      };
    case 'pending':
      return {
        // What else the built-in wait says (a hold, install mode's refused attempt) stays.
        ...(builtin.kind === 'pending' ? builtin : {}),
        kind: 'pending',
        reason: `policy hook: ${answer.reason || 'the admission policy says wait'}: waiting for approval`,
      };
    case 'failed':
      return {
        ...(builtin.kind === 'pending' ? builtin : {}),
        kind: 'pending',
        reason: `policy hook failed (${answer.why}): waiting for approval`,
      };
    case 'accept':
      if (builtin.kind === 'accept') {
        // The built-in rule admits (and its token use or install-mode slot is what is consumed); the
        // hook's word goes with it in the record.
        return answer.reason
          ? { ...builtin, detail: `${builtin.detail}; policy: ${answer.reason}` }
          : builtin;
      }
      // Only the operator lifts a hold (a singleton role); a tier registrar's intermediate CA is admitted
      // only by a token scoped to its role, install mode opened for it, or the operator.
      if (builtin.hold || !mayAdmit) return builtin;
      return { kind: 'accept', rule: 'policy', detail: answer.reason || 'accepted by the policy hook' };
  }
}

/**
 * At start, before anything is opened: a program named by a path must exist and be executable (else
 * every join would wait with "cannot start"); a bare name is looked up in PATH when it runs.
 */
export async function checkPolicyCommand(command: string): Promise<void> {
  const prog = splitCommand(command)[0]!;
  if (!prog.includes('/')) return;
  try {
    await access(prog, constants.X_OK);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new MusterError('MUSTER_ERR_CONFIG', `--policy-exec: ${prog} cannot be executed (${why})`);
  }
}

interface Waiter {
  /** Hands the slot of a run that ended to this request. */
  start: () => void;
  /** No slot after all (shutdown). */
  cancel: () => void;
}

/** Runs the hook, at most `concurrency` at once, each within the timeout. */
export class PolicyHook {
  readonly argv: string[];
  readonly timeoutMs: number;
  readonly concurrency: number;
  readonly queueLimit: number;
  readonly stats: PolicyStats = { accept: 0, pending: 0, reject: 0, failed: 0, timeout: 0, busy: 0 };
  private running = 0;
  private readonly queue: Waiter[] = [];
  private readonly env: NodeJS.ProcessEnv;
  private readonly live = new Set<number>();
  private closed = false;

  constructor(private readonly o: PolicyHookOptions) {
    this.argv = splitCommand(o.command);
    this.timeoutMs = o.timeoutMs ?? DEFAULT_POLICY_TIMEOUT_MS;
    this.concurrency = Math.max(1, o.concurrency ?? DEFAULT_POLICY_CONCURRENCY);
    this.queueLimit = o.queueLimit ?? Math.max(16, this.concurrency * 8);
    const from = o.env ?? process.env;
    // Never the registrar's environment: it may hold a token (MUSTER_TOKEN) or store credentials.
    this.env = {
      PATH: from.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      ...(from.LANG !== undefined ? { LANG: from.LANG } : {}),
    };
  }

  /** checkPolicyCommand for this hook's command. */
  async check(): Promise<void> {
    return checkPolicyCommand(this.o.command);
  }

  /** Hooks running now (for tests and metrics). */
  get active(): number {
    return this.running;
  }

  /** Asks the hook about a join and combines its answer with the built-in verdict. */
  async judge(req: AdmissionRequest, builtin: Exclude<Verdict, { kind: 'deny' }>): Promise<Verdict> {
    const answer = await this.ask(policyRequest(req, builtin));
    const verdict = combine(builtin, answer, req.role !== TIER_ROLE);
    this.o.log.info(
      {
        node: req.name,
        key: req.key,
        address: req.address,
        hook: answer.outcome,
        reason: answer.outcome === 'failed' ? answer.why : answer.reason,
        verdict: verdict.kind,
      },
      'policy hook answered',
    );
    return verdict;
  }

  /**
   * Runs the hook on one request. The whole answer, waiting for a free slot included, takes at most
   * the timeout (and a few milliseconds): a hanging hook delays no HTTP answer beyond it, and with
   * the queue full the answer is "pending" at once.
   */
  async ask(request: PolicyRequest): Promise<HookAnswer> {
    const deadline = Date.now() + this.timeoutMs;
    if (this.closed) return this.fail('busy', 'the registrar is stopping', request);
    if (this.running >= this.concurrency) {
      if (this.queue.length >= this.queueLimit)
        return this.fail('busy', `busy: ${this.running} running, ${this.queue.length} queued`, request);
      const got = await new Promise<boolean>((resolve) => {
        const w: Waiter = {
          start: () => {
            clearTimeout(timer);
            resolve(true);
          },
          cancel: () => {
            clearTimeout(timer);
            resolve(false);
          },
        };
        const timer = setTimeout(() => {
          const i = this.queue.indexOf(w);
          if (i >= 0) this.queue.splice(i, 1);
          resolve(false);
        }, this.timeoutMs);
        this.queue.push(w);
      });
      if (!got) {
        if (this.closed) return this.fail('busy', 'the registrar is stopping', request);
        return this.fail('busy', `no free slot within ${fmtMs(this.timeoutMs)}`, request, 'timeout');
      }
    } else {
      this.running++;
    }
    // The slot is ours (a waiter is handed the slot of the run that ended: running stays counted).
    try {
      return await this.run(request, Math.max(1, deadline - Date.now()));
    } finally {
      const next = this.queue.shift();
      if (next) next.start();
      else this.running--;
    }
  }

  /** Kills every hook still running (registrar shutdown); queued requests answer pending. */
  close(): void {
    this.closed = true;
    for (const pid of this.live) killGroup(pid);
    for (const w of this.queue.splice(0)) w.cancel();
  }

  private fail(
    kind: 'busy' | 'failed' | 'timeout',
    why: string,
    request: PolicyRequest,
    stat: keyof PolicyStats = kind,
    stderr?: string,
  ): HookAnswer {
    this.stats[stat]++;
    this.o.log.warn(
      { node: request.name, hook: this.argv[0], why, ...(stderr ? { stderr } : {}) },
      'policy hook gave no answer: the node waits for approval',
    );
    return { outcome: 'failed', why };
  }

  private run(request: PolicyRequest, timeoutMs: number): Promise<HookAnswer> {
    return new Promise<HookAnswer>((resolve) => {
      let done = false;
      const finish = (a: HookAnswer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(a);
      };
      let child: ChildProcessWithoutNullStreams;
      try {
        child = spawn(this.argv[0]!, this.argv.slice(1), {
          env: this.env,
          cwd: '/',
          // Its own process group, so that a timeout kills what it started too.
          detached: true,
          stdio: ['pipe', 'pipe', 'pipe'],
        });
      } catch (err) {
        finish(this.fail('failed', `cannot start: ${(err as Error).message}`, request));
        return;
      }
      const pid = child.pid;
      if (pid !== undefined) this.live.add(pid);
      const stdout = capped();
      const stderr = capped();
      child.stdout.on('data', stdout.push);
      child.stderr.on('data', stderr.push);
      const timer = setTimeout(() => {
        if (pid !== undefined) killGroup(pid);
        finish(this.fail('timeout', `timed out after ${fmtMs(timeoutMs)}`, request));
      }, timeoutMs);
      child.on('error', (err: NodeJS.ErrnoException) => {
        if (pid !== undefined) this.live.delete(pid);
        finish(this.fail('failed', `cannot start: ${err.code ?? err.message}`, request));
      });
      // Once it exits, nothing it started may outlive it (and hold its stdout open).
      child.on('exit', () => {
        if (pid !== undefined) killGroup(pid);
      });
      child.on('close', (code, signal) => {
        if (pid !== undefined) this.live.delete(pid);
        if (done) return; // timed out, or could not start
        const reason = sanitizeReason(stdout.text());
        if (signal) {
          finish(
            this.fail('failed', `killed by ${signal}`, request, 'failed', sanitizeReason(stderr.text())),
          );
        } else if (code === EXIT_ACCEPT || code === EXIT_PENDING || code === EXIT_REJECT) {
          const outcome = code === EXIT_ACCEPT ? 'accept' : code === EXIT_PENDING ? 'pending' : 'reject';
          this.stats[outcome]++;
          finish({ outcome, reason });
        } else {
          finish(this.fail('failed', `exit ${code}`, request, 'failed', sanitizeReason(stderr.text())));
        }
      });
      // A hook that does not read its stdin (and exits first) makes the write fail: not an error.
      child.stdin.on('error', () => undefined);
      child.stdin.end(JSON.stringify(request) + '\n');
    });
  }
}

/** At most POLICY_OUTPUT_MAX bytes of a stream; the rest is read and dropped (the writer never blocks). */
function capped(): { push: (b: Buffer) => void; text: () => string } {
  const parts: Buffer[] = [];
  let size = 0;
  return {
    push: (b: Buffer) => {
      if (size >= POLICY_OUTPUT_MAX) return;
      const part = b.subarray(0, POLICY_OUTPUT_MAX - size);
      parts.push(part);
      size += part.length;
    },
    text: () => Buffer.concat(parts).toString('utf8'),
  };
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // ESRCH: the group is gone already.
  }
}

const fmtMs = (ms: number): string => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);
