/**
 * Operator commands over the admin socket: install-mode, tokens, nodes, events (DESIGN "CLI"). Every
 * value was checked against the same limits as the admin API (common/limits.ts) before a request is
 * sent; what the registrar still refuses is printed with its own message.
 */
import os from 'node:os';
import type {
  AdminClient,
  WireEvent,
  WireInstallMode,
  WireNode,
  WireStatus,
  WireToken,
} from '../admin/client.js';
import { isMusterError, MusterError } from '../common/errors.js';
import { formatToken, parseToken } from '../common/proof.js';
import { command } from './command.js';
import { ago, installModeJson, out, printJson, printList, table, tokenJson } from './output.js';

/**
 * The admin client, loaded when a command sends its request: --help, `join` and the other commands
 * do not load node:http (issue 12, CLI start-up).
 */
const client = (o: { 'admin-socket': string }): Pick<AdminClient, 'request' | 'stream'> => {
  const load = async (): Promise<AdminClient> =>
    new (await import('../admin/client.js')).AdminClient(o['admin-socket']);
  return {
    request: async <T>(method: string, path: string, body?: unknown): Promise<T> =>
      (await load()).request<T>(method, path, body),
    stream: async (path: string, onLine: (v: unknown) => void): Promise<void> =>
      (await load()).stream(path, onLine),
  };
};

/** Who acts, for the event log. */
const operator = (): string => {
  try {
    return os.userInfo().username;
  } catch {
    return `uid ${process.getuid?.()}`;
  }
};

const nodePath = (name: string, action?: string): string =>
  `/v1/admin/nodes/${encodeURIComponent(name)}${action ? `/${action}` : ''}`;

function printInstallMode(s: WireInstallMode, json: boolean, withCount = false): void {
  if (json) return printJson(installModeJson(s));
  out(
    `install mode ${s.description}${withCount && (s.on || s.accepted) ? `; ${s.accepted} accepted` : ''}\n`,
  );
}

const installModeOn = command({
  name: 'install-mode on',
  describe: 'turn install mode on for a while',
  scopes: ['install-mode on', 'admin', 'output'],
  examples: [
    ['$0 install-mode on --for 15m --max 20', 'accept up to 20 nodes of the local link for 15 minutes'],
  ],
  async run(o) {
    const s = await client(o).request<WireInstallMode>('POST', '/v1/admin/install-mode', {
      on: true,
      forMs: o.for,
      remote: o.remote,
      ...(o.max !== undefined ? { max: o.max } : {}),
      ...(o.role ? { role: o.role } : {}),
      ...(o.cluster ? { cluster: o.cluster } : {}),
    });
    printInstallMode(s, o.json);
  },
});

const installModeOff = command({
  name: 'install-mode off',
  describe: 'turn install mode off',
  scopes: ['admin', 'output'],
  async run(o) {
    printInstallMode(
      await client(o).request<WireInstallMode>('POST', '/v1/admin/install-mode', { on: false }),
      o.json,
    );
  },
});

const installModeStatus = command({
  name: 'install-mode status',
  describe: 'show install mode',
  scopes: ['admin', 'output'],
  async run(o) {
    printInstallMode(await client(o).request<WireInstallMode>('GET', '/v1/admin/install-mode'), o.json, true);
  },
});

/**
 * What `tokens create` tells the person (on stderr: stdout holds the token alone, for `$(...)`): how a
 * node joins with it, and which CA the token pins. Never the token: it is shown once, on stdout.
 */
export function joinLine(ca: string | undefined): string {
  const pin = ca ? `it pins this registrar's CA ${ca}` : 'it pins no CA';
  return `join with: ${JOIN_COMMAND}   (FILE: the token above, mode 0600; ${pin})`;
}

const JOIN_COMMAND = 'muster join --token-file FILE';

/**
 * The risk of a token that pins no CA (issue 8, hole 6): whoever holds a copy (anyone who can read
 * the image it is baked into) can run a registrar of their own that accepts it, and a node that pins
 * no CA by other means trusts that registrar. A single-use token is spent by its first node.
 */
export function unpinnedWarning(t: { id: string; maxUses: number | null }): string | undefined {
  if (t.maxUses === 1) return undefined;
  const admits = t.maxUses === null ? 'any number of nodes (no --uses)' : `up to ${t.maxUses} nodes`;
  return (
    `token ${t.id} pins no CA and admits ${admits}: anyone who holds a copy (anyone who can read an image ` +
    `it is baked into) can stand up a registrar that nodes without a CA pin of their own will trust. ` +
    `Unless the image must outlive this registrar's CA, create the token without --no-pin; otherwise ` +
    `keep the image private, keep --ttl short and revoke the token once its nodes have joined ` +
    `(muster tokens revoke ${t.id})`
  );
}

const tokensCreate = command({
  name: 'tokens create',
  describe:
    "create a join token and print it (alone, on stdout); it carries the registrar's CA pin unless --no-pin",
  scopes: ['tokens create', 'admin', 'output'],
  examples: [
    ['$0 tokens create --ttl 30d --uses 100 --role worker', 'a token for an image of 100 workers'],
    ['(umask 077; $0 tokens create --uses 1 > token)', 'straight into a token file (mode 0600) for one node'],
  ],
  async run(o) {
    const c = client(o);
    const t = await c.request<WireToken & { token: string }>('POST', '/v1/admin/tokens', {
      ttlMs: o.ttl,
      ...(o.uses !== undefined ? { uses: o.uses } : {}),
      roles: o.role,
      clusters: o.cluster,
      ...(o.description ? { description: o.description } : {}),
    });
    const parsed = parseToken(t.token);
    if (!parsed) {
      throw new MusterError(
        'MUSTER_ERR_ADMIN_REPLY',
        `the registrar answered a malformed token (id ${t.id}): revoke it with muster tokens revoke ${t.id}`,
      );
    }
    // The registrar puts its CA pin in the token; one that does not (an older one) gets it added here.
    const ca = parsed.ca ?? (await c.request<WireStatus>('GET', '/v1/admin/status')).ca;
    const token = formatToken({ id: parsed.id, secret: parsed.secret, ...(o.pin ? { ca } : {}) });
    const warning = o.pin ? undefined : unpinnedWarning(t);
    if (o.json) {
      printJson({
        ...tokenJson(t),
        token,
        ca: o.pin ? ca : null,
        join: JOIN_COMMAND,
        warnings: warning ? [warning] : [],
      });
    } else out(token + '\n');
    // For the person, also with --json and when stderr is not a terminal (a script's log keeps it).
    process.stderr.write(`${joinLine(o.pin ? ca : undefined)}\n`);
    if (warning) process.stderr.write(`muster: warning: ${warning}\n`);
  },
});

const tokensList = command({
  name: 'tokens list',
  describe: 'list join tokens (never their secrets)',
  scopes: ['admin', 'output'],
  async run(o) {
    const { tokens } = await client(o).request<{ tokens: WireToken[] }>('GET', '/v1/admin/tokens');
    if (o.json) return printList(tokens.map(tokenJson));
    out(
      table(
        ['ID', 'STATE', 'USED', 'EXPIRES', 'ROLES', 'CLUSTERS', 'DESCRIPTION'],
        tokens.map((t) => [
          t.id,
          t.state,
          `${t.used}/${t.maxUses ?? '∞'}`,
          t.expiresAt === null ? 'never' : new Date(t.expiresAt).toISOString(),
          t.roles.join(',') || 'any',
          t.clusters.join(',') || 'any',
          t.description,
        ]),
      ),
    );
  },
});

const tokensRevoke = command({
  name: 'tokens revoke',
  describe: 'revoke a join token',
  scopes: ['tokens revoke', 'admin', 'output'],
  async run(o) {
    const t = await client(o).request<WireToken>('DELETE', `/v1/admin/tokens/${encodeURIComponent(o.id)}`);
    if (o.json) printJson(tokenJson(t));
    else out(`token ${t.id} revoked\n`);
  },
});

const tokensUnlock = command({
  name: 'tokens unlock',
  describe: 'unlock a join token locked by too many bad proofs (its count starts again from 0)',
  scopes: ['tokens unlock', 'admin', 'output'],
  async run(o) {
    const t = await client(o).request<WireToken>(
      'POST',
      `/v1/admin/tokens/${encodeURIComponent(o.id)}/unlock`,
      {},
    );
    if (o.json) printJson(tokenJson(t));
    else out(`token ${t.id} unlocked (${t.state})\n`);
  },
});

const nodesList = command({
  name: 'nodes list',
  describe: 'list nodes',
  scopes: ['nodes list', 'admin', 'output'],
  async run(o) {
    const q = new URLSearchParams({ limit: String(o.limit) });
    if (o.state) q.set('state', o.state);
    if (o.after) q.set('after', o.after);
    if (o.stale !== undefined) q.set('stale', String(Math.max(1, Math.floor(o.stale / 1000))));
    if (o.group) q.set('group', o.group);
    const r = await client(o).request<{ nodes: WireNode[]; next?: string }>('GET', `/v1/admin/nodes?${q}`);
    if (o.json) return printList(r.nodes, r.next);
    out(
      table(
        ['NAME', 'STATE', 'ROLE', 'CHANNEL', 'ADDRESS', 'KEY', 'SINCE', 'LAST SEEN', 'EXPIRES', 'WHY'],
        r.nodes.map((n) => [
          n.name,
          n.state,
          n.role,
          n.channel,
          n.addresses[0],
          n.key,
          ago(n.times[n.state]),
          ago(n.lastSeen),
          n.notAfter ?? '-',
          n.state === 'pending' ? n.pendingReason : n.decision?.detail,
        ]),
      ),
    );
    if (r.next) out(`more: --after ${r.next}\n`);
  },
});

const nodesShow = command({
  name: 'nodes show',
  describe: 'show one node, with why it was let in (or not)',
  scopes: ['node', 'admin', 'output'],
  async run(o) {
    const r = await client(o).request<{ node: WireNode; history: WireNode[] }>('GET', nodePath(o.name));
    if (o.json) return printJson({ ...r.node, history: r.history });
    const n = r.node;
    const lines: [string, string | undefined][] = [
      ['name', n.name],
      ['state', n.state],
      ['role', n.role],
      ['cluster', n.cluster || '(any)'],
      ['key', n.key],
      ['channel', n.channel],
      ['addresses', n.addresses.join(', ')],
      ['decision', n.decision ? `${n.decision.rule}: ${n.decision.detail} (${n.decision.at})` : undefined],
      ['waiting because', n.pendingReason],
      ['serial', n.serial],
      ['expires', n.notAfter],
      ['group', n.group],
      ['last seen', n.lastSeen],
      ...Object.entries(n.times).map(([k, v]) => [k, v] as [string, string]),
    ];
    for (const [k, v] of lines) if (v) out(`${(k + ':').padEnd(17)}${v}\n`);
    if (r.history.length)
      out(`earlier records:  ${r.history.map((h) => `${h.state} key ${h.key}`).join('; ')}\n`);
  },
});

const nodeAction = (
  action: 'approve' | 'reject' | 'remove',
  describe: string,
  said: (n: WireNode) => string,
) =>
  command({
    name: `nodes ${action}`,
    describe,
    scopes: ['node', 'admin', 'output'],
    async run(o) {
      const n = await client(o).request<WireNode>('POST', nodePath(o.name, action), { operator: operator() });
      if (o.json) printJson(n);
      else out(said(n) + '\n');
    },
  });

interface WirePreapproval {
  name: string;
  key?: string;
  role?: string;
  expiresAt: number | null;
  by: string;
}

const preapprovalBody = (o: { key?: string; role?: string; ttl: number | null }) => ({
  operator: operator(),
  ttlMs: o.ttl,
  ...(o.key ? { key: o.key } : {}),
  ...(o.role ? { role: o.role } : {}),
});

/** The --json shape (docs/cli-json.md): times as ISO 8601, null for never. */
const preapprovalJson = (p: WirePreapproval) => ({
  ...p,
  expiresAt: p.expiresAt === null ? null : new Date(p.expiresAt).toISOString(),
});

const withPreapprovalJson = <T extends { preapproval: WirePreapproval }>(r: T) => ({
  ...r,
  preapproval: preapprovalJson(r.preapproval),
});

const describePreapproval = (p: WirePreapproval): string =>
  `${p.name} may join once with ${p.key ? `key ${p.key}` : 'any key'}${p.role ? ` as ${p.role}` : ''}, ` +
  `no token needed${p.expiresAt === null ? '' : `, until ${new Date(p.expiresAt).toISOString()}`}`;

const nodesApprove = command({
  name: 'nodes approve',
  describe:
    'accept a pending node (compare its key fingerprint first: nodes show); --force --key FP: re-admit a name held by another key',
  scopes: ['node', 'nodes approve', 'admin', 'output'],
  async run(o) {
    if (o.force !== (o.key !== undefined)) {
      throw new MusterError('MUSTER_ERR_USAGE', 'muster nodes approve takes --force and --key FP together');
    }
    const c = client(o);
    if (o.key !== undefined) {
      const r = await c.request<{ removed?: WireNode; preapproval: WirePreapproval }>(
        'POST',
        nodePath(o.name, 'force-approve'),
        { operator: operator(), key: o.key },
      );
      if (o.json) return printJson(withPreapprovalJson(r));
      if (r.removed)
        out(
          `removed ${r.removed.name} (key ${r.removed.key})${r.removed.serial ? `; certificate ${r.removed.serial} revoked` : ''}\n`,
        );
      return out(`approved: ${describePreapproval(r.preapproval)}\n`);
    }
    const n = await c.request<WireNode>('POST', nodePath(o.name, 'approve'), { operator: operator() });
    if (o.json) printJson(n);
    else out(`approved ${n.name} (key ${n.key}): certificate ${n.serial} issued\n`);
  },
});
const nodesReject = nodeAction('reject', 'reject a pending node', (n) => `rejected ${n.name} (key ${n.key})`);
const nodesRemove = nodeAction(
  'remove',
  'remove a node and revoke its certificate (frees the name)',
  (n) => `removed ${n.name}${n.serial ? `; certificate ${n.serial} revoked` : ''}`,
);

// ---- pre-approval, rebuild, ban (issue 9, item 3) ----

const nodesPreapprove = command({
  name: 'nodes preapprove',
  describe: 'let a name (and key, and role) join once with no token and no install mode',
  scopes: ['node', 'preapprove', 'admin', 'output'],
  examples: [['$0 nodes preapprove web-7 --ttl 24h', 'the next machine named web-7 joins without a token']],
  async run(o) {
    const p = await client(o).request<WirePreapproval>(
      'POST',
      nodePath(o.name, 'preapprove'),
      preapprovalBody(o),
    );
    if (o.json) printJson(preapprovalJson(p));
    else out(`pre-approved: ${describePreapproval(p)}\n`);
  },
});

const nodesRebuild = command({
  name: 'nodes rebuild',
  describe: 'a machine was rebuilt: revoke the old certificate and pre-approve the next key for the name',
  scopes: ['node', 'preapprove', 'admin', 'output'],
  async run(o) {
    const r = await client(o).request<{ removed?: WireNode; preapproval: WirePreapproval }>(
      'POST',
      nodePath(o.name, 'rebuild'),
      preapprovalBody(o),
    );
    if (o.json) return printJson(withPreapprovalJson(r));
    if (r.removed)
      out(
        `removed ${r.removed.name} (key ${r.removed.key})${r.removed.serial ? `; certificate ${r.removed.serial} revoked` : ''}\n`,
      );
    out(`pre-approved: ${describePreapproval(r.preapproval)}\n`);
  },
});

/** NAME or --key FP, exactly one. */
const banTarget = (o: { name?: string; key?: string }, verb: string): { name: string } | { key: string } => {
  if ((o.name === undefined) === (o.key === undefined)) {
    throw new MusterError('MUSTER_ERR_USAGE', `muster nodes ${verb} takes a NAME or --key FP (one of them)`);
  }
  return o.name !== undefined ? { name: o.name } : { key: o.key! };
};

const nodesBan = command({
  name: 'nodes ban',
  describe: 'refuse a name or a key (--key) for good, until unban; a node that holds it is removed',
  scopes: ['ban', 'nodes ban', 'admin', 'output'],
  async run(o) {
    const target = banTarget(o, 'ban');
    const r = await client(o).request<{ ban: { kind: string; value: string }; removed: string[] }>(
      'POST',
      '/v1/admin/bans',
      { operator: operator(), ...target, ...(o.reason ? { reason: o.reason } : {}) },
    );
    if (o.json) return printJson(r);
    out(
      `banned ${r.ban.kind} ${r.ban.value}${r.removed.length ? `; removed ${r.removed.join(', ')}` : ''}\n`,
    );
  },
});

const nodesUnban = command({
  name: 'nodes unban',
  describe: 'lift a ban on a name or a key (--key)',
  scopes: ['ban', 'admin', 'output'],
  async run(o) {
    const target = banTarget(o, 'unban');
    const b = await client(o).request<{ kind: string; value: string }>('POST', '/v1/admin/bans/lift', {
      operator: operator(),
      ...target,
    });
    if (o.json) return printJson(b);
    out(`ban lifted: ${b.kind} ${b.value}\n`);
  },
});

// ---- groups (DESIGN "Groups") ----

/** What `nodes group` and `nodes ungroup` answer: the node after it, its group before and after. */
interface WireGroupChange {
  node: WireNode;
  from: string | null;
  to: string | null;
  changed: boolean;
}

const groupSaid = (r: WireGroupChange): string => {
  const name = r.node.name;
  if (!r.changed) return r.to === null ? `${name} is in no group` : `${name} is already in group ${r.to}`;
  const what =
    r.to === null
      ? `${name} taken out of group ${r.from}`
      : r.from === null
        ? `${name} put into group ${r.to}`
        : `${name} moved from group ${r.from} to group ${r.to}`;
  return `${what}; the node learns it at its next contact (boot check-in or renewal)`;
};

const nodesGroup = command({
  name: 'nodes group',
  describe: 'put a node into a group (--force: move it from the group it is in); nothing is restarted',
  scopes: ['node', 'nodes group', 'admin', 'output'],
  examples: [
    ['$0 nodes group web-7 frontend', 'web-7 gets group frontend in its config at its next contact'],
    ['$0 nodes group web-7 canary --force', 'move web-7 from its group to canary'],
  ],
  async run(o) {
    const r = await client(o).request<WireGroupChange>('POST', nodePath(o.name, 'group'), {
      operator: operator(),
      group: o.group,
      force: o.force,
    });
    if (o.json) printJson(r);
    else out(groupSaid(r) + '\n');
  },
});

const nodesUngroup = command({
  name: 'nodes ungroup',
  describe: 'take a node out of its group',
  scopes: ['node', 'admin', 'output'],
  async run(o) {
    const r = await client(o).request<WireGroupChange>('DELETE', nodePath(o.name, 'group'), {
      operator: operator(),
    });
    if (o.json) printJson(r);
    else out(groupSaid(r) + '\n');
  },
});

const groupsList = command({
  name: 'groups list',
  describe: 'list the groups nodes are in, with how many nodes each (nodes list --group G: its nodes)',
  scopes: ['admin', 'output'],
  async run(o) {
    const { groups } = await client(o).request<{ groups: { group: string; count: number }[] }>(
      'GET',
      '/v1/admin/groups',
    );
    if (o.json) return printList(groups);
    out(
      table(
        ['GROUP', 'NODES'],
        groups.map((g) => [g.group, String(g.count)]),
      ),
    );
  },
});

/** Back-off of `events --follow` between reconnects: from the first delay, doubling, up to the last. */
export const FOLLOW_BACKOFF_MS = { first: 250, max: 5_000 } as const;

/**
 * `events --follow` (issue 13, item 2): streams from `after`, and when the stream ends (the registrar
 * stopped or restarted) or the socket is gone, connects again with back-off asking for the events
 * after the last one printed. The event log's sequence numbers are the cursor, so each event is
 * printed once, in order, and none is lost across an outage (within --event-retention). The first
 * connection failing is an error as before: a typo'd --admin-socket must not wait forever.
 */
export async function followEvents(
  c: Pick<AdminClient, 'stream'>,
  after: number,
  filter: string,
  print: (ev: WireEvent) => void,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
): Promise<never> {
  let last = after;
  let connected = false;
  let delay: number = FOLLOW_BACKOFF_MS.first;
  for (;;) {
    try {
      await c.stream(`/v1/admin/events?follow=true&after=${last}${filter}`, (e) => {
        const ev = e as WireEvent;
        connected = true;
        delay = FOLLOW_BACKOFF_MS.first;
        // The registrar never repeats an event within one stream; across streams `after` holds.
        if (ev.seq <= last) return;
        last = ev.seq;
        print(ev);
      });
      // Ended by the registrar (it stops, or restarts): it was there, so wait for it to come back.
      connected = true;
      delay = FOLLOW_BACKOFF_MS.first;
    } catch (err) {
      // Only an unreachable socket is waited out, and only once the registrar was there.
      if (!connected || !isMusterError(err, 'MUSTER_ERR_ADMIN_SOCKET')) throw err;
    }
    // Said once an outage (stderr: stdout holds the events alone), not at every attempt.
    if (delay === FOLLOW_BACKOFF_MS.first) {
      process.stderr.write(
        `muster: the event stream ended (is the registrar restarting?); reconnecting, after event ${last}\n`,
      );
    }
    await sleep(delay);
    delay = Math.min(delay * 2, FOLLOW_BACKOFF_MS.max);
  }
}

const events = command({
  name: 'events',
  describe: 'show the event log (--follow: and stream new events, going on after a registrar restart)',
  scopes: ['events', 'admin', 'output'],
  async run(o) {
    const c = client(o);
    const text = (ev: WireEvent): void => {
      const d = ev.detail
        ? Object.entries(ev.detail)
            .filter(([, v]) => v !== undefined && v !== null)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ')
        : '';
      out(`${String(ev.seq).padStart(6)}  ${ev.at}  ${ev.type.padEnd(12)} ${ev.name ?? ''} ${d}\n`);
    };
    // --type refused --type token, or --type refused,token: one filter, applied by the registrar.
    const types = [...new Set(o.type.flatMap((t) => t.split(',')))];
    const filter = types.length ? `&type=${encodeURIComponent(types.join(','))}` : '';
    if (o.follow) {
      // A stream: one event a line (NDJSON) with --json, as it happens; it outlives the registrar.
      return followEvents(c, o.after, filter, (e) => (o.json ? out(JSON.stringify(e) + '\n') : text(e)));
    }
    const { events: page, next: after } = await c.request<{ events: WireEvent[]; next?: number }>(
      'GET',
      `/v1/admin/events?after=${o.after}&limit=${o.limit}${filter}`,
    );
    // Filtered, the registrar says where the next page starts (it may have read past the last match).
    const next = filter ? after : page.length === o.limit ? page[page.length - 1]!.seq : undefined;
    if (o.json) return printList(page, next);
    page.forEach(text);
    if (next !== undefined) out(`more: --after ${next}\n`);
  },
});

export const operatorCommands = [
  installModeOn,
  installModeOff,
  installModeStatus,
  tokensCreate,
  tokensList,
  tokensRevoke,
  tokensUnlock,
  nodesList,
  nodesShow,
  nodesApprove,
  nodesReject,
  nodesRemove,
  nodesPreapprove,
  nodesRebuild,
  nodesBan,
  nodesUnban,
  nodesGroup,
  nodesUngroup,
  groupsList,
  events,
];
