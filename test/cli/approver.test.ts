/**
 * The approver's identity (issue 10, item 3): who approved, rejected or banned is who the kernel says
 * is at the other end of the admin socket (SO_PEERCRED, src/registrar/peer-cred.ts), never what the
 * request body claims. A real registrar and its real admin socket; the other-uid case spawns the real
 * CLI as nobody (root only: it needs setuid).
 */
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { chmodSync } from 'node:fs';
import http from 'node:http';
import type { Socket } from 'node:net';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryLogger } from '../../src/common/log.js';
import { describePeer, parsePeerLine, PeerIdentity } from '../../src/registrar/peer-cred.js';
import { BIN } from '../helpers/cli.js';
import { csrFor, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

const me = os.userInfo();
const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar;
let sock: string;

beforeAll(async () => {
  t = tempDir('muster-approver-');
  reg = await startTestRegistrar(t.dir, { mdns: false });
  sock = reg.opts.adminSocket;
}, 60_000);
afterAll(async () => {
  await reg?.close();
  t?.cleanup();
});

/** A node that waits for approval (off the link, install mode off). */
async function pending(name: string): Promise<void> {
  const out = await reg.service.join(
    { name, role: 'worker', cluster: '', csr: csrFor(name).csr },
    '203.0.113.9',
  );
  expect(out.status).toBe(202);
}

/** The real CLI, asynchronously: the registrar it talks to runs in this very process. */
function muster(
  args: string[],
  opts: SpawnOptions = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, ...args, '--admin-socket', sock], { ...opts, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    c.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    c.once('error', reject);
    c.once('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const events = async (name: string) =>
  (await reg.service.registry.listEvents(0, 10_000)).filter((e) => e.name === name);

describe('the approver is the admin socket peer', () => {
  it('an approval whose body claims another operator names the user of this process', async () => {
    await pending('ap-1');
    const node = await reg.admin.request<{ decision: { detail: string } }>(
      'POST',
      '/v1/admin/nodes/ap-1/approve',
      { operator: 'mallory' },
    );
    const who = `${me.username} (uid ${me.uid})`;
    expect(node.decision.detail).toBe(`approved by ${who}`);
    expect((await reg.service.registry.getNode('ap-1'))!.decision).toMatchObject({
      rule: 'approval',
      detail: `approved by ${who}`,
    });
    const accepted = (await events('ap-1')).find((e) => e.type === 'accepted')!;
    expect(accepted.detail).toMatchObject({ rule: 'approval', reason: `approved by ${who}` });
    expect(JSON.stringify(await events('ap-1'))).not.toContain('mallory');
    // The connection reading its peer credentials still serves its next requests (a Socket handed to
    // child_process as stdio stops reading: the descriptor is passed as a number instead).
    const state = async () =>
      (await reg.admin.request<{ node: { state: string } }>('GET', '/v1/admin/nodes/ap-1')).node.state;
    expect(await state()).toBe('issued');
    await reg.admin.request('POST', '/v1/admin/nodes/ap-1/remove', {});
    expect(await state()).toBe('removed');
  });

  it('the CLI: reject, ban and token unlock are recorded with the same identity', () => {
    const who = `${me.username} (uid ${me.uid})`;
    return (async () => {
      await pending('ap-2');
      const run = muster;
      const r = await run(['nodes', 'reject', 'ap-2']);
      expect(r.status, r.stderr).toBe(0);
      expect((await reg.service.registry.getNode('ap-2'))!.decision!.detail).toBe(`rejected by ${who}`);
      const b = await run(['nodes', 'ban', 'ap-3', '--reason', 'test']);
      expect(b.status, b.stderr).toBe(0);
      expect(await reg.service.registry.getBan('name', 'ap-3')).toMatchObject({ by: who });
      const tok = (await run(['tokens', 'create'])).stdout.trim();
      const id = tok.split('.')[0]!;
      const u = await run(['tokens', 'unlock', id, '--json']);
      expect(u.status, u.stderr).toBe(0);
      expect(JSON.parse(u.stdout)).toMatchObject({ id, state: 'valid' });
    })();
  });

  it.skipIf(!isRoot)(
    'another uid (nobody, through the real CLI) is recorded as that user',
    async () => {
      await pending('ap-4');
      // Let nobody reach the socket (the registrar makes it 0600, under a private directory).
      chmodSync(t.dir, 0o755);
      chmodSync(sock, 0o666);
      const name = spawnSync('id', ['-nu', String(NOBODY)], { encoding: 'utf8' }).stdout.trim();
      const r = await muster(['nodes', 'approve', 'ap-4'], {
        uid: NOBODY,
        gid: NOBODY,
        cwd: '/',
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' },
      });
      expect(r.status, r.stderr).toBe(0);
      const detail = (await reg.service.registry.getNode('ap-4'))!.decision!.detail;
      expect(detail).toBe(`approved by ${name ? `${name} (uid ${NOBODY})` : `uid ${NOBODY}`}`);
      expect(detail).not.toContain(`(uid ${me.uid})`);
    },
    30_000,
  );
});

describe('muster events --type (the real CLI)', () => {
  it('lists only refusals, with --type repeated or a comma list; a misspelt type exits 2', async () => {
    const { csr } = csrFor('ev-1');
    const refused = await reg.service
      .join({ name: 'ev-1', role: 'worker', cluster: 'elsewhere', csr }, '203.0.113.9')
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'wrong_cluster' });
    const r = await muster(['events', '--type', 'refused', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const items = (
      JSON.parse(r.stdout) as { items: { type: string; name: string; detail: { reason: string } }[] }
    ).items;
    expect(items.length).toBeGreaterThan(0);
    expect(items.every((e) => e.type === 'refused')).toBe(true);
    expect(
      items.find((e) => e.name === 'ev-1'),
      JSON.stringify(items),
    ).toMatchObject({
      detail: { reason: 'wrong_cluster', address: '203.0.113.9' }, // refused before the CSR was read: no key
    });
    const both = await muster(['events', '--type', 'refused', '--type', 'accepted,rejected', '--json']);
    expect(both.status, both.stderr).toBe(0);
    const types = new Set(
      (JSON.parse(both.stdout) as { items: { type: string }[] }).items.map((e) => e.type),
    );
    expect([...types].sort()).toEqual(['accepted', 'refused', 'rejected']);
    const before = await reg.service.registry.lastEventSeq();
    const bad = await muster(['events', '--type', 'refusd']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/did you mean refused\?/);
    expect(bad.stdout).toBe('');
    expect(await reg.service.registry.lastEventSeq()).toBe(before);
  });
});

describe('events --follow --type (the admin socket stream)', () => {
  it('streams only the types asked for, stored ones first, then live ones', async () => {
    const lines: { type: string; name?: string }[] = [];
    const after = await reg.service.registry.lastEventSeq();
    await reg.service
      .join({ name: 'fo-1', role: 'worker', cluster: 'elsewhere', csr: csrFor('fo-1').csr }, '203.0.113.9')
      .catch(() => undefined);
    const req = http.request({
      socketPath: sock,
      path: `/v1/admin/events?follow=true&after=${after}&type=refused`,
    });
    const gotTwo = new Promise<void>((resolve) => {
      req.on('response', (res) => {
        let buf = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          buf += d;
          for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1))
            lines.push(JSON.parse(buf.slice(0, i)) as { type: string; name?: string });
          if (lines.length >= 2) resolve();
        });
      });
    });
    req.end();
    try {
      await pending('fo-2'); // a `pending` event: not streamed
      await reg.service
        .join({ name: 'fo-3', role: 'worker', cluster: 'elsewhere', csr: csrFor('fo-3').csr }, '203.0.113.9')
        .catch(() => undefined);
      await gotTwo;
    } finally {
      req.destroy();
    }
    expect(lines.map((e) => [e.type, e.name])).toEqual([
      ['refused', 'fo-1'],
      ['refused', 'fo-3'],
    ]);
  });
});

describe('peer-cred', () => {
  it('parses the helper line, with and without a user name', () => {
    expect(parsePeerLine('4242 1000 1000 alice\n')).toEqual({
      pid: 4242,
      uid: 1000,
      gid: 1000,
      user: 'alice',
    });
    expect(parsePeerLine('1 1001 1001 \n')).toEqual({ pid: 1, uid: 1001, gid: 1001, user: '' });
    expect(parsePeerLine('garbage')).toBeUndefined();
    expect(describePeer({ pid: 1, uid: 1000, gid: 1000, user: 'alice' })).toBe('alice (uid 1000)');
    expect(describePeer({ pid: 1, uid: 1001, gid: 1001, user: '' })).toBe('uid 1001');
  });

  it('says "uid unknown" when the credentials cannot be read, and warns once; a TCP peer is named by address', async () => {
    const logs = memoryLogger('admin');
    let reads = 0;
    const ids = new PeerIdentity(logs.log, async () => {
      reads++;
      throw new Error('no perl');
    });
    const a = {} as Socket;
    const b = {} as Socket;
    expect(await ids.of(a)).toBe('uid unknown');
    expect(await ids.of(a)).toBe('uid unknown');
    expect(await ids.of(b)).toBe('uid unknown');
    expect(reads).toBe(2); // once per connection
    expect(logs.text().match(/cannot read the admin connection peer credentials/g)).toHaveLength(1);
    expect(await ids.of({ remoteAddress: '127.0.0.1' } as Socket)).toBe('admin-listen 127.0.0.1');
  });
});
