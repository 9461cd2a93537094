/** Operator commands over the admin socket: install-mode, tokens, nodes, events (DESIGN "CLI"). */
import os from 'node:os';
import type { Argv } from 'yargs';
import { MusterError } from '../common/errors.js';
import { parseDuration } from '../common/names.js';
import { defaultAdminSocket } from '../common/paths.js';
import type { InstallModeState, TokenView } from '../registrar/policy.js';
import type { NodeRecord } from '../registrar/registry.js';
import { AdminClient } from './admin-client.js';
import { withSettings } from './settings.js';
import { ago, table } from './format.js';

interface Common {
  'admin-socket'?: string;
  json?: boolean;
}

const client = (argv: Common): AdminClient => new AdminClient(argv['admin-socket'] ?? defaultAdminSocket());
const out = (s: string): void => void process.stdout.write(s);
const json = (v: unknown): void => out(JSON.stringify(v, null, 2) + '\n');
const operator = (): string => {
  try {
    return os.userInfo().username;
  } catch {
    return `uid ${process.getuid?.()}`;
  }
};

type InstallModeView = InstallModeState & { description: string };

type NodeView = Omit<NodeRecord, 'certificate' | 'spki'>;

export function operatorCommands(y: Argv): Argv {
  const common = (a: Argv) =>
    withSettings(a, 'admin')
      .option('admin-socket', { type: 'string', describe: "registrar's admin socket", defaultDescription: defaultAdminSocket() })
      .option('json', { type: 'boolean', default: false, describe: 'machine-readable output' });

  return y
    .command('install-mode', 'open or close install mode (accept nodes on the local link without a token)', (a) =>
      common(a)
        .command(
          'on',
          'turn install mode on for a while',
          (b) =>
            b
              .option('for', { type: 'string', demandOption: true, describe: 'how long, e.g. 15m' })
              .option('max', { type: 'number', describe: 'switch off after this many nodes' })
              .option('role', { type: 'string', describe: 'admit this role only' })
              .option('cluster', { type: 'string', describe: 'admit this cluster only' })
              .option('remote', { type: 'boolean', default: false, describe: 'also admit nodes off the local link' }),
          async (argv) => {
            const forMs = parseDuration(argv.for);
            if (argv.max !== undefined && (!Number.isInteger(argv.max) || argv.max < 1)) {
              throw new MusterError('MUSTER_ERR_USAGE', '--max must be a whole number of at least 1');
            }
            const s = await client(argv).request<InstallModeView>('POST', '/v1/admin/install-mode', {
              on: true,
              forMs,
              remote: argv.remote,
              ...(argv.max !== undefined ? { max: argv.max } : {}),
              ...(argv.role ? { role: argv.role } : {}),
              ...(argv.cluster ? { cluster: argv.cluster } : {}),
            });
            if (argv.json) json(s);
            else out(`install mode ${s.description}\n`);
          },
        )
        .command('off', 'turn install mode off', {}, async (argv) => {
          const s = await client(argv as Common).request<InstallModeView>('POST', '/v1/admin/install-mode', { on: false });
          if ((argv as Common).json) json(s);
          else out(`install mode ${s.description}\n`);
        })
        .command('status', 'show install mode', {}, async (argv) => {
          const s = await client(argv as Common).request<InstallModeView>('GET', '/v1/admin/install-mode');
          if ((argv as Common).json) json(s);
          else out(`install mode ${s.description}${s.on || s.accepted ? `; ${s.accepted} accepted` : ''}\n`);
        })
        .demandCommand(1, 'say on, off or status'),
    )
    .command('tokens', 'manage join tokens', (a) =>
      common(a)
        .command(
          'create',
          'create a join token and print it (alone, on stdout)',
          (b) =>
            b
              .option('ttl', { type: 'string', default: '24h', describe: "lifetime, e.g. 24h, 30d, or 'never'" })
              .option('uses', { type: 'number', describe: 'how many nodes may use it (default: unlimited)' })
              .option('role', { type: 'string', array: true, describe: 'roles it admits (repeat; default: any)' })
              .option('cluster', { type: 'string', array: true, describe: 'clusters it admits (repeat; default: any)' })
              .option('description', { type: 'string', describe: 'a note for the operator' }),
          async (argv) => {
            const ttlMs = argv.ttl === 'never' ? null : parseDuration(argv.ttl);
            if (ttlMs !== null && ttlMs < 1000) throw new MusterError('MUSTER_ERR_USAGE', "--ttl must be at least 1s (or 'never')");
            if (argv.uses !== undefined && (!Number.isInteger(argv.uses) || argv.uses < 1)) {
              throw new MusterError('MUSTER_ERR_USAGE', '--uses must be a whole number of at least 1');
            }
            const t = await client(argv).request<TokenView & { token: string }>('POST', '/v1/admin/tokens', {
              ttlMs,
              ...(argv.uses !== undefined ? { uses: argv.uses } : {}),
              roles: (argv.role ?? []).map(String),
              clusters: (argv.cluster ?? []).map(String),
              ...(argv.description ? { description: argv.description } : {}),
            });
            if (argv.json) json(t);
            else out(t.token + '\n');
          },
        )
        .command('list', 'list join tokens (never their secrets)', {}, async (argv) => {
          const { tokens } = await client(argv as Common).request<{ tokens: TokenView[] }>('GET', '/v1/admin/tokens');
          if ((argv as Common).json) return json(tokens);
          out(
            table(
              ['ID', 'STATE', 'USED', 'EXPIRES', 'ROLES', 'CLUSTERS'],
              tokens.map((t) => [
                t.id,
                t.state,
                `${t.used}/${t.maxUses ?? '∞'}`,
                t.expiresAt === null ? 'never' : new Date(t.expiresAt).toISOString(),
                t.roles.join(',') || 'any',
                t.clusters.join(',') || 'any',
              ]),
            ),
          );
        })
        .command(
          'revoke <id>',
          'revoke a join token',
          (b) => b.positional('id', { type: 'string', demandOption: true }),
          async (argv) => {
            const t = await client(argv).request<TokenView>('DELETE', `/v1/admin/tokens/${encodeURIComponent(argv.id)}`);
            if (argv.json) json(t);
            else out(`token ${t.id} revoked\n`);
          },
        )
        .demandCommand(1, 'say create, list or revoke'),
    )
    .command('nodes', 'list, inspect, approve, reject and remove nodes', (a) =>
      common(a)
        .command(
          'list',
          'list nodes',
          (b) =>
            b
              .option('state', { choices: ['heard', 'pending', 'accepted', 'issued', 'active', 'rejected', 'removed'] })
              .option('limit', { type: 'number', default: 100, describe: 'nodes per page' })
              .option('after', { type: 'string', describe: 'start after this name (paging)' }),
          async (argv) => {
            const q = new URLSearchParams({ limit: String(argv.limit) });
            if (argv.state) q.set('state', argv.state);
            if (argv.after) q.set('after', argv.after);
            const r = await client(argv).request<{ nodes: NodeView[]; next?: string; counts: Record<string, number> }>(
              'GET',
              `/v1/admin/nodes?${q}`,
            );
            if (argv.json) return json(r);
            out(
              table(
                ['NAME', 'STATE', 'ROLE', 'CHANNEL', 'ADDRESS', 'KEY', 'SINCE', 'WHY'],
                r.nodes.map((n) => [
                  n.name,
                  n.state,
                  n.role,
                  n.channel,
                  n.addresses[0],
                  n.key,
                  ago(n.times[n.state]),
                  n.state === 'pending' ? n.pendingReason : n.decision?.detail,
                ]),
              ),
            );
            if (r.next) out(`more: --after ${r.next}\n`);
          },
        )
        .command(
          'show <name>',
          'show one node, with why it was let in (or not)',
          (b) => b.positional('name', { type: 'string', demandOption: true }),
          async (argv) => {
            const r = await client(argv).request<{ node: NodeView; history: NodeView[] }>(
              'GET',
              `/v1/admin/nodes/${encodeURIComponent(argv.name)}`,
            );
            if (argv.json) return json(r);
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
            if (r.history.length) out(`earlier records:  ${r.history.map((h) => `${h.state} key ${h.key}`).join('; ')}\n`);
          },
        )
        .command(
          'approve <name>',
          'accept a pending node (compare its key fingerprint first)',
          (b) => b.positional('name', { type: 'string', demandOption: true }),
          async (argv) => {
            const n = await client(argv).request<NodeView>('POST', `/v1/admin/nodes/${encodeURIComponent(argv.name)}/approve`, {
              operator: operator(),
            });
            if (argv.json) json(n);
            else out(`approved ${n.name} (key ${n.key}): certificate ${n.serial} issued\n`);
          },
        )
        .command(
          'reject <name>',
          'reject a pending node',
          (b) => b.positional('name', { type: 'string', demandOption: true }),
          async (argv) => {
            const n = await client(argv).request<NodeView>('POST', `/v1/admin/nodes/${encodeURIComponent(argv.name)}/reject`, {
              operator: operator(),
            });
            if (argv.json) json(n);
            else out(`rejected ${n.name} (key ${n.key})\n`);
          },
        )
        .command(
          'remove <name>',
          'remove a node and revoke its certificate (frees the name)',
          (b) => b.positional('name', { type: 'string', demandOption: true }),
          async (argv) => {
            const n = await client(argv).request<NodeView>('POST', `/v1/admin/nodes/${encodeURIComponent(argv.name)}/remove`, {
              operator: operator(),
            });
            if (argv.json) json(n);
            else out(`removed ${n.name}${n.serial ? `; certificate ${n.serial} revoked` : ''}\n`);
          },
        )
        .demandCommand(1, 'say list, show, approve, reject or remove'),
    )
    .command(
      'events',
      'show the event log',
      (a) =>
        common(a)
          .option('follow', { alias: 'f', type: 'boolean', default: false, describe: 'keep streaming new events' })
          .option('after', { type: 'number', default: 0, describe: 'events after this sequence number' }),
      async (argv) => {
        const c = client(argv);
        const print = (e: unknown): void => {
          const ev = e as { seq: number; at: string; type: string; name?: string; detail?: Record<string, unknown> };
          if (argv.json) return out(JSON.stringify(ev) + '\n');
          const d = ev.detail ? Object.entries(ev.detail).filter(([, v]) => v !== undefined && v !== null).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ') : '';
          out(`${String(ev.seq).padStart(6)}  ${ev.at}  ${ev.type.padEnd(12)} ${ev.name ?? ''} ${d}\n`);
        };
        if (argv.follow) return c.stream(`/v1/admin/events?follow=true&after=${argv.after}`, print);
        const { events } = await c.request<{ events: unknown[] }>('GET', `/v1/admin/events?after=${argv.after}&limit=10000`);
        for (const e of events) print(e);
      },
    );
}
