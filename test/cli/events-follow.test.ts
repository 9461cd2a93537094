/**
 * `muster events --follow` outlives its registrar (issue 13, item 2): the real CLI streams while the
 * registrar stops, events land in its store while it is down, it starts again and more events come.
 * The CLI reconnects with `after=<last seq>` and prints every event of the log exactly once, in order.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openRegistry } from '../../src/store/index.js';
import { followEvents } from '../../src/cli/operator-cmd.js';
import { MusterError } from '../../src/common/errors.js';
import type { WireEvent } from '../../src/admin/client.js';
import { BIN } from '../helpers/cli.js';
import { startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar | undefined;
let follower: ChildProcess | undefined;

beforeAll(() => {
  t = tempDir('muster-follow-');
});
afterAll(async () => {
  follower?.kill('SIGKILL');
  await reg?.close();
  t?.cleanup();
});

const start = (): Promise<TestRegistrar> => startTestRegistrar(t.dir, { mdns: false });

/** Waits until `cond` holds, checking every 50 ms (a deadline, not a timing assertion). */
async function until(cond: () => boolean, what: () => string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('events --follow across a registrar restart', () => {
  it('prints every event once, in order: before, during the outage and after', async () => {
    reg = await start();
    const sock = reg.opts.adminSocket;
    /** Creates a token (an event) and returns its id, which the event names. */
    const token = async (): Promise<string> =>
      (await reg!.admin.request<{ id: string }>('POST', '/v1/admin/tokens', { ttlMs: 60_000 })).id;
    const ids: string[] = [];
    ids.push(await token());

    follower = spawn(process.execPath, [BIN, 'events', '--follow', '--json', '--admin-socket', sock], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    follower.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    follower.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const printed = (): WireEvent[] =>
      stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as WireEvent);
    const described = (id: string): boolean => printed().some((e) => e.detail?.id === id);
    const lastSeq = async (): Promise<number> => {
      const { events } = await reg!.admin.request<{ events: WireEvent[] }>(
        'GET',
        '/v1/admin/events?limit=10000',
      );
      return events[events.length - 1]!.seq;
    };

    ids.push(await token());
    const beforeStop = await lastSeq();
    await until(
      () => printed().some((e) => e.seq === beforeStop),
      () => `event ${beforeStop} printed; got ${stdout} ${stderr}`,
    );

    // The outage: the registrar stops (its stream ends), and events land in its store meanwhile.
    await reg.close();
    reg = undefined;
    await until(
      () => stderr.includes('reconnecting'),
      () => `the CLI noticed the outage; stderr: ${stderr}`,
    );
    const store = await openRegistry({ kind: 'level', dir: path.join(t.dir, 'registrar', 'registry') });

    try {
      for (const id of ['during1', 'during2', 'during3']) {
        ids.push(id);
        await store.apply({ events: [{ type: 'token', detail: { action: 'created', id } }] });
      }
    } finally {
      await store.close();
    }
    expect(follower.exitCode).toBeNull();

    reg = await start();
    ids.push(await token());
    ids.push(await token());
    const end = await lastSeq();
    await until(
      () => printed().some((e) => e.seq === end),
      () => `event ${end} printed; got ${stdout} ${stderr}`,
    );

    const { events: log } = await reg.admin.request<{ events: WireEvent[] }>(
      'GET',
      '/v1/admin/events?limit=10000',
    );
    // The whole log, once each, in order: nothing lost in the outage, nothing printed twice.
    expect(printed().map((e) => e.seq)).toEqual(log.map((e) => e.seq));
    expect(printed()).toEqual(log);
    for (const id of ids) expect(described(id), id).toBe(true);
    expect(follower.exitCode).toBeNull();
  }, 90_000);
});

describe('followEvents', () => {
  const ev = (seq: number): WireEvent => ({ seq, at: '2026-11-30T00:00:00.000Z', type: 'token' });
  const gone = (): MusterError => new MusterError('MUSTER_ERR_ADMIN_SOCKET', 'cannot reach the registrar');

  it('a registrar that is not there at the start is an error, as before (no waiting forever)', async () => {
    const stream = vi.fn(async () => Promise.reject(gone()));
    const sleep = vi.fn(async () => undefined);
    await expect(followEvents({ stream }, 0, '', () => undefined, sleep)).rejects.toThrow(
      'cannot reach the registrar',
    );
    expect(sleep).not.toHaveBeenCalled();
  });

  it('reconnects after the last printed event with back-off, and stops on an error that is not the socket', async () => {
    const paths: string[] = [];
    const printed: number[] = [];
    const answers: ((onLine: (v: unknown) => void) => Promise<void>)[] = [
      async (onLine) => [ev(1), ev(2)].forEach(onLine), // ended: the registrar stopped
      async () => Promise.reject(gone()),
      async () => Promise.reject(gone()),
      // The registrar again: it replays from `after`, and a repeated event is printed once only.
      async (onLine) => [ev(2), ev(3), ev(5)].forEach(onLine),
      async () => Promise.reject(new MusterError('bad_request', 'no')),
    ];
    const stream = async (p: string, onLine: (v: unknown) => void): Promise<void> => {
      paths.push(p);
      return answers.shift()!(onLine);
    };
    const delays: number[] = [];
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await expect(
        followEvents(
          { stream },
          0,
          '&type=token',
          (e) => printed.push(e.seq),
          async (ms) => void delays.push(ms),
        ),
      ).rejects.toThrow('no');
    } finally {
      stderr.mockRestore();
    }
    expect(printed).toEqual([1, 2, 3, 5]);
    expect(paths).toEqual([
      '/v1/admin/events?follow=true&after=0&type=token',
      '/v1/admin/events?follow=true&after=2&type=token',
      '/v1/admin/events?follow=true&after=2&type=token',
      '/v1/admin/events?follow=true&after=2&type=token',
      '/v1/admin/events?follow=true&after=5&type=token',
    ]);
    // Doubling while the registrar is away; from the first delay again once it answered.
    expect(delays).toEqual([250, 500, 1000, 250]);
  });
});
