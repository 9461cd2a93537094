/**
 * The admin web page in headless Chromium (issue 13, item 1): a real registrar (`muster registrar
 * --mdns off --admin-listen 127.0.0.1:PORT`, temp state dir) and a real `muster join` that waits for
 * approval; the browser logs in through the link `muster admin url` prints, approves the node by
 * clicking (the node gets its certificate), turns install mode on and off, creates a token (its
 * secret shown once, gone after a reload) and sees an event arrive live. Screenshots go to
 * test-output/screenshots/ (their paths are printed). Nothing leaves 127.0.0.1: every request the
 * page makes is checked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { AdminClient, type WireInstallMode, type WireToken } from '../../src/admin/client.js';
import {
  BIN,
  freePort,
  localRegistrarArgs,
  muster,
  spawnRegistrar,
  type SpawnedRegistrar,
} from '../helpers/cli.js';
import { CHROMIUM, CHROMIUM_ARGS, chromiumSuite } from './chromium.js';

const { skip } = chromiumSuite('admin web page');
const SHOTS = path.resolve(import.meta.dirname, '../../test-output/screenshots');

let dir: string;
let reg: SpawnedRegistrar;
let admin: AdminClient;
let sock: string;
let base: string;
let browser: Browser;
let page: Page;
let node: ChildProcess | undefined;
const offHost: string[] = [];
const shots: string[] = [];

async function shot(name: string): Promise<void> {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
  console.log(`screenshot: ${file}`);
}

describe.skipIf(skip)('the admin web page in Chromium', () => {
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    dir = mkdtempSync(path.join(os.tmpdir(), 'muster-web-browser-'));
    sock = path.join(dir, 'admin.sock');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    reg = await spawnRegistrar([...localRegistrarArgs(dir, sock), '--admin-listen', `127.0.0.1:${port}`]);
    admin = new AdminClient(sock);
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('request', (r) => {
      if (!r.url().startsWith(`${base}/`)) offHost.push(r.url());
    });
  }, 90_000);

  afterAll(async () => {
    node?.kill('SIGKILL');
    await browser?.close();
    await reg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('logs in with the one-time link, approves a waiting node by clicking, and the node gets its certificate', async () => {
    // A node that asks without a token, with install mode off: it waits for approval.
    const nodeDir = path.join(dir, 'node');
    node = spawn(
      process.execPath,
      [
        BIN,
        'join',
        '--registrar',
        reg.url,
        '--ca-fingerprint',
        reg.ca,
        '--name',
        'web-node-1',
        '--state-dir',
        nodeDir,
        '--mdns',
        'off',
      ],
      { env: { ...process.env, MUSTER_LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let nodeOut = '';
    node.stdout!.on('data', (c: Buffer) => (nodeOut += c.toString()));
    node.stderr!.on('data', (c: Buffer) => (nodeOut += c.toString()));
    const joined = new Promise<number | null>((resolve) => node!.on('exit', (code) => resolve(code)));
    await expect
      .poll(
        async () =>
          (
            await admin
              .request<{ node: { state: string } }>('GET', '/v1/admin/nodes/web-node-1')
              .catch(() => undefined)
          )?.node.state,
        {
          timeout: 30_000,
        },
      )
      .toBe('pending');

    const url = muster(['admin', 'url', '--admin-socket', sock]);
    expect(url.code, url.stderr).toBe(0);
    const link = url.stdout.trim();
    expect(link).toMatch(new RegExp(`^${base}/login#[A-Za-z0-9_-]{43}$`));

    await page.goto(link);
    await page.waitForURL(`${base}/`);
    const cookie = (await page.context().cookies()).find((c) => c.name === 'muster_session')!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    await expect.poll(() => page.locator('#who').textContent()).toMatch(/^acting as .+ \(uid \d+\)$/);
    // The link was spent: the address bar no longer holds it, and a second visit is refused.
    expect(page.url()).toBe(`${base}/`);

    const row = page.locator('#pending-rows tr[data-node="web-node-1"]');
    await row.waitFor();
    const fp = (await admin.request<{ node: { key: string } }>('GET', '/v1/admin/nodes/web-node-1')).node.key;
    expect(await row.locator('td.fp').textContent()).toBe(fp);
    await expect.poll(() => page.locator('#events-state').textContent()).toBe('live');
    await shot('01-pending-node');

    await row.locator('button.approve').click();
    await row.waitFor({ state: 'detached' });
    expect(await joined, nodeOut).toBe(0);
    const rec = (
      await admin.request<{ node: { state: string; decision: { detail: string } } }>(
        'GET',
        '/v1/admin/nodes/web-node-1',
      )
    ).node;
    expect(['issued', 'active']).toContain(rec.state);
    expect(rec.decision.detail).toMatch(/^approved by .+ via the web page$/);
    for (const f of ['node.crt', 'node.key', 'ca.crt'])
      expect(existsSync(path.join(nodeDir, f)), f).toBe(true);
    // The acceptance arrived on the live event stream.
    await page.locator('#event-list li[data-type="accepted"]', { hasText: 'web-node-1' }).waitFor();
    await shot('02-approved');

    // Another browser (no session) with the same link: refused.
    const other = await browser.newContext();
    const again = await other.newPage();
    await again.goto(link);
    await expect
      .poll(() => again.locator('#login-status').textContent())
      .toMatch(/^Not logged in: .*used already or has expired/);
    await other.close();
  });

  it('turns install mode on with a countdown, and off', async () => {
    await page.fill('#im-for', '10m');
    await page.click('#im-on-button');
    await expect.poll(() => page.locator('#im-state').textContent()).toBe('on');
    await expect.poll(() => page.locator('#im-countdown').textContent()).toMatch(/^(9m|10m) \d\ds left$/);
    const on = await admin.request<WireInstallMode>('GET', '/v1/admin/install-mode');
    expect(on.on).toBe(true);
    expect(on.until! - on.since!).toBe(600_000);
    await shot('03-install-mode-on');

    await page.click('#im-off-button');
    await expect.poll(() => page.locator('#im-state').textContent()).toBe('off');
    expect((await admin.request<WireInstallMode>('GET', '/v1/admin/install-mode')).on).toBe(false);
    expect(await page.locator('#im-countdown').textContent()).toBe('');
  });

  it('creates a token whose secret is shown once and is gone after a reload', async () => {
    await page.fill('#token-description', 'rack 7 image');
    await page.fill('#token-uses', '3');
    await page.click('#token-create-button');
    await page.locator('#token-secret').waitFor({ state: 'visible' });
    const secret = (await page.locator('#token-secret-value').textContent())!;
    expect(secret).toMatch(/^[a-z0-9]{6,16}\.[A-Za-z0-9_-]{32,128}\.[A-Za-z0-9_-]{43}$/);
    const id = secret.split('.')[0]!;
    const { tokens } = await admin.request<{ tokens: WireToken[] }>('GET', '/v1/admin/tokens');
    expect(tokens.find((x) => x.id === id)).toMatchObject({ description: 'rack 7 image', maxUses: 3 });
    await page.locator(`#token-rows tr[data-token="${id}"]`).waitFor();
    await shot('04-token-created');

    await page.reload();
    await page.locator(`#token-rows tr[data-token="${id}"]`).waitFor();
    expect(await page.locator('#token-secret').isHidden()).toBe(true);
    expect(await page.content()).not.toContain(secret.split('.')[1]!);
    await shot('05-after-reload');
  });

  it('shows an event live as it happens, and the node table with a node detail', async () => {
    await expect.poll(() => page.locator('#events-state').textContent()).toBe('live');
    const before = await page.locator('#event-list li').count();
    // An event from elsewhere (the CLI) while the page is open.
    const created = muster(['tokens', 'create', '--ttl', '1h', '--uses', '1', '--admin-socket', sock]);
    expect(created.code, created.stderr).toBe(0);
    const id = created.stdout.trim().split('.')[0]!;
    const li = page.locator('#event-list li[data-type="token"]', { hasText: id });
    await li.waitFor();
    expect(await page.locator('#event-list li').count()).toBe(before + 1);
    const { events } = await admin.request<{ events: { seq: number; detail?: { id?: string } }[] }>(
      'GET',
      '/v1/admin/events',
    );
    expect(await li.getAttribute('data-seq')).toBe(String(events.find((e) => e.detail?.id === id)!.seq));
    await shot('06-event-live');

    await page.fill('#node-search', 'web-');
    await page.click('#node-filter button[type="submit"]');
    await page.locator('#node-rows tr[data-node="web-node-1"]').click();
    await page.locator('#node-detail').waitFor({ state: 'visible' });
    const detail = (await page.locator('#node-detail-fields').textContent())!;
    expect(detail).toContain('Deciding rule');
    expect(detail).toMatch(/approval: approved by .+ via the web page/);
    expect(detail).toContain('Certificate expires');
    expect(detail).not.toContain('(no certificate)');
    await shot('07-node-detail');

    expect(offHost, 'requests that left the registrar').toEqual([]);
    console.log(`screenshots (${shots.length}):\n${shots.join('\n')}`);
  });
});
