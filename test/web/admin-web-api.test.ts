/**
 * The admin web page's server side (issue 13, item 1; src/registrar/admin-web.ts) against a real
 * registrar on 127.0.0.1: the one-time login link, the session cookie, and the attacks the page must
 * refuse (a reused or expired link, no cookie, a missing or wrong CSRF token, a foreign Origin, a
 * foreign Host), each asserting that nothing was changed. Time is a ManualClock (link TTL, idle
 * expiry). The browser test (admin-web-browser.test.ts) clicks through the page itself.
 */
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { loopbackHostPort } from '../../src/common/config.js';
import { MusterError } from '../../src/common/errors.js';
import {
  beforePrefix,
  CSRF_HEADER,
  LOGIN_LINK_TTL_MS,
  loopbackListen,
  SESSION_COOKIE,
  SESSION_IDLE_MS,
  webAssetsDir,
} from '../../src/registrar/admin-web.js';
import { parseCommandLine } from '../../src/cli/cli.js';
import { musterAsync } from '../helpers/cli.js';
import { csrFor, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar;
let clock: ManualClock;
let base: URL;

beforeAll(async () => {
  t = tempDir('muster-web-api-');
  clock = new ManualClock(Date.now());
  reg = await startTestRegistrar(t.dir, { mdns: false, clock, adminListen: '127.0.0.1:0' });
  base = new URL(reg.web!.url);
}, 60_000);
afterAll(async () => {
  await reg?.close();
  t?.cleanup();
});

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any;
  text: string;
}

/** A raw HTTP request with exactly these headers (Host, Origin and Cookie included). */
function request(
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: unknown } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const req = http.request(
      {
        host: base.hostname,
        port: base.port,
        method,
        path,
        headers: {
          host: base.host,
          ...(payload ? { 'content-type': 'application/json' } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined;
          }
          resolve({ status: res.statusCode!, headers: res.headers, body, text });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** `muster admin url`'s request over the admin socket. */
const mintLink = (): Promise<{ url: string; expiresAt: string }> =>
  reg.admin.request('POST', '/v1/admin/web/login-link');

const tokenOf = (url: string): string => new URL(url).hash.slice(1);
const origin = (): string => `http://${base.host}`;

async function login(): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const link = await mintLink();
  const r = await request('POST', '/api/login', {
    headers: { origin: origin() },
    body: { token: tokenOf(link.url) },
  });
  expect(r.status, r.text).toBe(200);
  const setCookie = (r.headers['set-cookie'] ?? [])[0]!;
  const cookie = /^muster_session=([^;]+)/.exec(setCookie)![1]!;
  const s = await request('GET', '/api/session', { headers: { cookie: `${SESSION_COOKIE}=${cookie}` } });
  expect(s.status).toBe(200);
  return { cookie, csrf: s.body.csrf as string, setCookie };
}

const tokenCount = async (): Promise<number> => (await reg.service.operator.listTokens()).length;

async function pending(name: string, role = 'worker'): Promise<void> {
  const r = await reg.service.join({ name, role, cluster: '', csr: csrFor(name).csr }, '203.0.113.9');
  expect(r.status).toBe(202);
}

describe('the login link (muster admin url)', () => {
  it('is a one-time link to the page, its token in the fragment; minting and using it log no secret', async () => {
    const link = await mintLink();
    expect(link.url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${base.port}/login#[A-Za-z0-9_-]{43}$`));
    expect(Date.parse(link.expiresAt)).toBe(clock.now() + LOGIN_LINK_TTL_MS);
    const r = await request('POST', '/api/login', {
      headers: { origin: origin() },
      body: { token: tokenOf(link.url) },
    });
    expect(r.status).toBe(200);
    const logs = reg.logs.text();
    expect(logs).not.toContain(tokenOf(link.url));
    expect(logs).not.toContain(/^muster_session=([^;]+)/.exec(r.headers['set-cookie']![0]!)![1]);
  });

  it('sets an HttpOnly, SameSite=Strict session cookie of 256 random bits on Path=/', async () => {
    const { setCookie, cookie } = await login();
    expect(setCookie).toMatch(/; HttpOnly/);
    expect(setCookie).toMatch(/; SameSite=Strict/);
    expect(setCookie).toMatch(/; Path=\//);
    expect(Buffer.from(cookie, 'base64url')).toHaveLength(32);
  });

  it('is refused when used a second time (no cookie set)', async () => {
    const link = await mintLink();
    const body = { token: tokenOf(link.url) };
    expect((await request('POST', '/api/login', { headers: { origin: origin() }, body })).status).toBe(200);
    const again = await request('POST', '/api/login', { headers: { origin: origin() }, body });
    expect(again.status).toBe(401);
    expect(again.body.error).toBe('session_required');
    expect(again.headers['set-cookie']).toBeUndefined();
  });

  it('is refused once expired', async () => {
    const link = await mintLink();
    clock.advance(LOGIN_LINK_TTL_MS);
    const r = await request('POST', '/api/login', {
      headers: { origin: origin() },
      body: { token: tokenOf(link.url) },
    });
    expect(r.status).toBe(401);
    expect(r.headers['set-cookie']).toBeUndefined();
  });

  it('is refused from another site (Origin)', async () => {
    const link = await mintLink();
    const r = await request('POST', '/api/login', {
      headers: { origin: 'http://evil.example' },
      body: { token: tokenOf(link.url) },
    });
    expect(r.status).toBe(403);
    expect(r.headers['set-cookie']).toBeUndefined();
  });

  it('web_page_off when the registrar runs without --admin-listen', async () => {
    const t2 = tempDir('muster-web-off-');
    const other = await startTestRegistrar(t2.dir, { mdns: false });
    try {
      await expect(other.admin.request('POST', '/v1/admin/web/login-link')).rejects.toMatchObject({
        code: 'web_page_off',
      });
    } finally {
      await other.close();
      t2.cleanup();
    }
  });
});

describe('sessions', () => {
  it('without a cookie: 401, and nothing changed', async () => {
    const before = await tokenCount();
    const r = await request('POST', '/api/tokens', {
      headers: { origin: origin() },
      body: { ttlMs: 60_000 },
    });
    expect(r.status).toBe(401);
    expect(r.body.error).toBe('session_required');
    expect(await tokenCount()).toBe(before);
    expect((await request('GET', '/api/status')).status).toBe(401);
    expect((await request('GET', '/api/events')).status).toBe(401);
  });

  it('expire when idle; use keeps them alive', async () => {
    const { cookie } = await login();
    const headers = { cookie: `${SESSION_COOKIE}=${cookie}` };
    clock.advance(SESSION_IDLE_MS - 1000);
    expect((await request('GET', '/api/status', { headers })).status).toBe(200);
    clock.advance(SESSION_IDLE_MS - 1000);
    expect((await request('GET', '/api/status', { headers })).status).toBe(200);
    clock.advance(SESSION_IDLE_MS);
    expect((await request('GET', '/api/status', { headers })).status).toBe(401);
  });

  it('end at logout', async () => {
    const { cookie, csrf } = await login();
    const headers = { cookie: `${SESSION_COOKIE}=${cookie}`, origin: origin(), [CSRF_HEADER]: csrf };
    expect((await request('POST', '/api/logout', { headers, body: {} })).status).toBe(200);
    expect((await request('GET', '/api/status', { headers })).status).toBe(401);
  });
});

describe('CSRF and DNS rebinding', () => {
  it('a change without the CSRF token, with a wrong one, or from a foreign Origin: 403, store unchanged', async () => {
    const { cookie, csrf } = await login();
    const before = await tokenCount();
    const cookieH = { cookie: `${SESSION_COOKIE}=${cookie}` };
    const attempts: Record<string, string>[] = [
      { ...cookieH, origin: origin() },
      { ...cookieH, origin: origin(), [CSRF_HEADER]: 'x'.repeat(43) },
      { ...cookieH, origin: 'http://evil.example', [CSRF_HEADER]: csrf },
      { ...cookieH, 'sec-fetch-site': 'cross-site', [CSRF_HEADER]: csrf },
    ];
    for (const headers of attempts) {
      const r = await request('POST', '/api/tokens', { headers, body: { ttlMs: 60_000 } });
      expect(r.status, JSON.stringify(headers)).toBe(403);
      expect(r.body.error).toBe('csrf_refused');
      const im = await request('POST', '/api/install-mode', { headers, body: { on: true, forMs: 60_000 } });
      expect(im.status).toBe(403);
    }
    expect(await tokenCount()).toBe(before);
    expect((await reg.service.operator.installModeStatus()).on).toBe(false);
    // The same request with the token and the page's own origin goes through.
    const ok = await request('POST', '/api/tokens', {
      headers: { ...cookieH, origin: origin(), [CSRF_HEADER]: csrf },
      body: { ttlMs: 60_000, description: 'from the page' },
    });
    expect(ok.status).toBe(201);
    expect(await tokenCount()).toBe(before + 1);
  });

  it('refuses a Host that is not the listen address (DNS rebinding), before anything else', async () => {
    const { cookie, csrf } = await login();
    const before = await tokenCount();
    for (const path of ['/', '/login', '/api/status']) {
      const r = await request('GET', path, {
        headers: { host: `evil.example:${base.port}`, cookie: `${SESSION_COOKIE}=${cookie}` },
      });
      expect(r.status).toBe(421);
      expect(r.body.error).toBe('host_refused');
    }
    const r = await request('POST', '/api/tokens', {
      headers: {
        host: `evil.example:${base.port}`,
        origin: `http://evil.example:${base.port}`,
        cookie: `${SESSION_COOKIE}=${cookie}`,
        [CSRF_HEADER]: csrf,
      },
      body: { ttlMs: 60_000 },
    });
    expect(r.status).toBe(421);
    expect(await tokenCount()).toBe(before);
    // localhost names the same loopback address: allowed.
    expect((await request('GET', '/', { headers: { host: `localhost:${base.port}` } })).status).toBe(200);
  });

  it('serves the page with a CSP that allows only its own scripts and styles, and no framing', async () => {
    const r = await request('GET', '/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/html/);
    expect(r.headers['content-security-policy']).toContain("script-src 'self'");
    expect(r.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(r.headers['x-frame-options']).toBe('DENY');
    expect((await request('GET', '/assets/app.js')).headers['content-type']).toMatch(/^text\/javascript/);
    expect((await request('GET', '/assets/..%2fpackage.json')).status).toBe(404);
    expect((await request('GET', '/assets/missing.js')).status).toBe(404);
  });
});

describe('actions through the operator service', () => {
  it('an approval is recorded as the operator who minted the link, via the web page', async () => {
    await pending('web-approved');
    const { cookie, csrf } = await login();
    const r = await request('POST', '/api/nodes/web-approved/approve', {
      headers: { cookie: `${SESSION_COOKIE}=${cookie}`, origin: origin(), [CSRF_HEADER]: csrf },
      body: {},
    });
    expect(r.status, r.text).toBe(200);
    const rec = await reg.service.registry.getNode('web-approved');
    expect(rec!.state).toBe('issued');
    expect(rec!.decision!.detail).toMatch(/^approved by .+ \(uid \d+\) via the web page$/);
    const events = await reg.service.operator.listEvents(0, 10_000);
    const accepted = events.find((e) => e.type === 'accepted' && e.name === 'web-approved')!;
    expect(accepted.detail!.reason).toBe(rec!.decision!.detail);
  });
});

describe('reject and revoke', () => {
  it('reject a waiting node; revoke a token (not without the CSRF token)', async () => {
    await pending('web-rejected');
    const { cookie, csrf } = await login();
    const ok = { cookie: `${SESSION_COOKIE}=${cookie}`, origin: origin(), [CSRF_HEADER]: csrf };
    const r = await request('POST', '/api/nodes/web-rejected/reject', { headers: ok, body: {} });
    expect(r.status, r.text).toBe(200);
    const rec = await reg.service.registry.getNode('web-rejected');
    expect(rec!.state).toBe('rejected');
    expect(rec!.decision!.detail).toMatch(/^rejected by .+ via the web page$/);

    const { view } = await reg.service.operator.createToken({
      ttlMs: 60_000,
      maxUses: null,
      roles: [],
      clusters: [],
    });
    const state = async (): Promise<string> =>
      (await reg.service.operator.listTokens()).find((x) => x.id === view.id)!.state;
    const refused = await request('DELETE', `/api/tokens/${view.id}`, {
      headers: { cookie: ok.cookie, origin: origin() },
    });
    expect(refused.status).toBe(403);
    expect(await state()).toBe('valid');
    const revoked = await request('DELETE', `/api/tokens/${view.id}`, { headers: ok });
    expect(revoked.status, revoked.text).toBe(200);
    expect(await state()).toBe('revoked');
  });
});

describe('the node table', () => {
  it('searches by name prefix, filters by role and state, and pages with after=', async () => {
    for (const n of ['pfx-a1', 'pfx-a2', 'pfx-b1', 'pfx-a3', 'pfy-a1', 'pfw-a1']) {
      await pending(n, n.includes('b') ? 'db' : 'app');
    }
    const { cookie } = await login();
    const headers = { cookie: `${SESSION_COOKIE}=${cookie}` };
    const names = (r: Answer): string[] => r.body.nodes.map((n: { name: string }) => n.name);
    const all = await request('GET', '/api/nodes?prefix=pfx-&state=pending', { headers });
    expect(names(all)).toEqual(['pfx-a1', 'pfx-a2', 'pfx-a3', 'pfx-b1']);
    expect(all.body.next).toBeUndefined();
    const role = await request('GET', '/api/nodes?prefix=pfx-&role=app', { headers });
    expect(names(role)).toEqual(['pfx-a1', 'pfx-a2', 'pfx-a3']);
    const p1 = await request('GET', '/api/nodes?prefix=pfx-&limit=2', { headers });
    expect(names(p1)).toEqual(['pfx-a1', 'pfx-a2']);
    const p2 = await request('GET', `/api/nodes?prefix=pfx-&limit=2&after=${p1.body.next}`, { headers });
    expect(names(p2)).toEqual(['pfx-a3', 'pfx-b1']);
    const none = await request('GET', '/api/nodes?prefix=pfx-&state=active', { headers });
    expect(names(none)).toEqual([]);
    expect((await request('GET', '/api/nodes?prefix=PFX', { headers })).status).toBe(400);
    const detail = await request('GET', '/api/nodes/pfx-a1', { headers });
    expect(detail.body.node).toMatchObject({ name: 'pfx-a1', state: 'pending', role: 'app' });
    expect(detail.body.node.spki).toBeUndefined();
  });

  it('reads one page of records per page among thousands of nodes (never a scan of them all)', async () => {
    // 3,000 records written straight into the registry: many nodes without 3,000 CSRs.
    const at = new Date(clock.now()).toISOString();
    for (let b = 0; b < 30; b++) {
      await reg.service.registry.apply({
        nodes: Array.from({ length: 100 }, (_, i) => {
          const n = b * 100 + i;
          return {
            expectRev: 0,
            next: {
              name: `fleet-${String(n).padStart(4, '0')}`,
              rev: 0,
              state: 'active' as const,
              key: `k${n}`.padEnd(43, 'x'),
              spki: '',
              role: n % 1000 === 999 ? 'gpu' : 'worker',
              cluster: '',
              channel: 'https' as const,
              addresses: [],
              times: { active: at },
              lastSeen: at,
            },
          };
        }),
      });
    }
    const { cookie } = await login();
    const headers = { cookie: `${SESSION_COOKIE}=${cookie}` };
    const read = vi.spyOn(reg.service.operator, 'listNodes');
    const recordsRead = async (query: string): Promise<{ answer: Answer; records: number }> => {
      read.mockClear();
      const answer = await request('GET', `/api/nodes?${query}`, { headers });
      expect(answer.status, answer.text).toBe(200);
      let records = 0;
      for (const r of read.mock.results) records += ((await r.value) as unknown[]).length;
      return { answer, records };
    };
    try {
      // A prefix deep in the fleet: the walk starts there and reads one page.
      const deep = await recordsRead('prefix=fleet-27&limit=50');
      expect(deep.answer.body.nodes[0].name).toBe('fleet-2700');
      expect(deep.answer.body.nodes).toHaveLength(50);
      expect(deep.records).toBe(50);
      // The page after it starts where it ended.
      const next = await recordsRead(`prefix=fleet-27&limit=50&after=${deep.answer.body.next}`);
      expect(next.answer.body.nodes[0].name).toBe('fleet-2750');
      expect(next.records).toBe(50);
      // By state: the state index, one page.
      expect((await recordsRead('state=active&limit=50')).records).toBe(50);
      // Role has no index: a bounded walk that says where it stopped.
      const gpu = await recordsRead('prefix=fleet-&role=gpu&limit=50');
      expect(gpu.answer.body.nodes.map((n: { name: string }) => n.name)).toEqual([
        'fleet-0999',
        'fleet-1999',
        'fleet-2999',
      ]);
      // The prefix's 3,000 records and at most one chunk (500) past them.
      expect(gpu.records).toBeLessThanOrEqual(3500);
      expect(gpu.answer.body.next).toBeUndefined();
    } finally {
      read.mockRestore();
    }
  });

  it('a prefix starts the index walk right before its first name', () => {
    const names = [
      'a',
      'web',
      'web-',
      'web-1',
      'web0',
      'weba',
      'webz',
      'wea',
      `wea${'z'.repeat(60)}`,
      'wec',
      'we',
    ];
    for (const p of ['web', 'web-', 'web0', 'weba', 'w', '0', 'a', 'z']) {
      const from = beforePrefix(p);
      const walked = names.filter((n) => n > from).sort();
      const expected = names.filter((n) => n.startsWith(p)).sort();
      expect(walked.slice(0, expected.length), p).toEqual(expected);
      expect(from < p).toBe(true);
    }
  });
});

describe('the event stream (SSE)', () => {
  /** Reads an SSE stream until `count` events came, then closes it. */
  function sse(
    headers: Record<string, string>,
    count: number,
  ): Promise<{ status: number; events: { id: string; data: any }[] }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: base.hostname,
          port: base.port,
          path: '/api/events',
          headers: { host: base.host, ...headers },
        },
        (res) => {
          let buf = '';
          const events: { id: string; data: any }[] = [];
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            buf += c;
            let i: number;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              const id = /^id: (.*)$/m.exec(block)?.[1];
              const data = /^data: (.*)$/m.exec(block)?.[1];
              if (id !== undefined && data !== undefined) events.push({ id, data: JSON.parse(data) });
              if (events.length === count) {
                req.destroy();
                resolve({ status: res.statusCode!, events });
              }
            }
          });
        },
      );
      req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
      req.end();
    });
  }

  it('resumes after Last-Event-ID: each event once, its id its sequence number, then live ones', async () => {
    const { cookie } = await login();
    const last = await reg.service.registry.lastEventSeq();
    const got = sse({ cookie: `${SESSION_COOKIE}=${cookie}`, 'last-event-id': String(last - 2) }, 3);
    // One more: live if the stream is open by now, else replayed with the two stored ones.
    await reg.service.operator.createToken({ ttlMs: 60_000, maxUses: 1, roles: [], clusters: [] });
    const { events } = await got;
    expect(events.map((e) => Number(e.id))).toEqual([last - 1, last, last + 1]);
    expect(events.map((e) => e.data.seq)).toEqual([last - 1, last, last + 1]);
    expect(events[2]!.data.type).toBe('token');
  });
});

describe('event streams end with their session', () => {
  /** Opens the page's event stream; resolves once it is open, with a promise of its end. */
  function open(cookie: string): Promise<{ ended: Promise<string> }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: base.hostname,
          port: base.port,
          path: '/api/events?after=999999999999999',
          headers: { host: base.host, cookie: `${SESSION_COOKIE}=${cookie}` },
        },
        (res) => {
          if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
          let text = '';
          res.setEncoding('utf8');
          const ended = new Promise<string>((done) => res.on('end', () => done(text)));
          res.on('data', (c: string) => {
            text += c;
            // Open once the first line (retry:) came.
            if (text.startsWith('retry:')) resolve({ ended });
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('at logout', async () => {
    const { cookie, csrf } = await login();
    const stream = await open(cookie);
    const out = await request('POST', '/api/logout', {
      headers: { cookie: `${SESSION_COOKIE}=${cookie}`, origin: origin(), [CSRF_HEADER]: csrf },
      body: {},
    });
    expect(out.status).toBe(200);
    expect(await stream.ended).toBe('retry: 1000\n\n');
  });

  it('once the session expired: the next event is not sent, the stream ends', async () => {
    const { cookie } = await login();
    const stream = await open(cookie);
    clock.advance(SESSION_IDLE_MS);
    await reg.service.operator.createToken({ ttlMs: 60_000, maxUses: 1, roles: [], clusters: [] });
    expect(await stream.ended).toBe('retry: 1000\n\n');
  });
});

describe('muster admin url', () => {
  it('prints the one-time link alone on stdout, and says it is single use on stderr', async () => {
    const r = await musterAsync(['admin', 'url', '--admin-socket', reg.opts.adminSocket]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${base.port}/login#[A-Za-z0-9_-]{43}\n$`));
    expect(r.stderr).toMatch(/single use, valid until/);
    // The printed link logs in (once).
    const login = await request('POST', '/api/login', {
      headers: { origin: origin() },
      body: { token: tokenOf(r.stdout.trim()) },
    });
    expect(login.status).toBe(200);
  });

  it('says how to turn the page on when it is off (exit 1)', async () => {
    const t2 = tempDir('muster-web-off-cli-');
    const other = await startTestRegistrar(t2.dir, { mdns: false });
    try {
      const r = await musterAsync(['admin', 'url', '--admin-socket', other.opts.adminSocket]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/admin web page is off: start the registrar with --admin-listen/);
    } finally {
      await other.close();
      t2.cleanup();
    }
  });
});

describe('--admin-listen', () => {
  it('a non-loopback address is a usage error before anything starts', async () => {
    await expect(parseCommandLine(['registrar', '--admin-listen', '0.0.0.0:8440'])).rejects.toThrow(
      /--admin-listen must be a loopback HOST:PORT/,
    );
    const ok = await parseCommandLine(['registrar', '--admin-listen', '127.0.0.1:8440']);
    expect(ok!.values['admin-listen']).toBe('127.0.0.1:8440');
  });

  it('is loopback only', () => {
    expect(loopbackHostPort('127.0.0.1:8440')).toBe('127.0.0.1:8440');
    expect(loopbackHostPort('[::1]:0')).toBe('[::1]:0');
    for (const bad of ['0.0.0.0:8440', '10.0.0.1:8440', 'localhost:8440', '[::]:8440', '8440']) {
      expect(() => loopbackHostPort(bad), bad).toThrow(/loopback|HOST:PORT/);
      expect(() => loopbackListen(bad), bad).toThrow(MusterError);
    }
  });

  it("finds the package's web/ folder from src/ and from dist/ layouts", () => {
    const root = webAssetsDir();
    expect(root).toMatch(/\/web$/);
    expect(webAssetsDir(path.resolve(root, '../dist/cli'))).toBe(root);
    expect(webAssetsDir(path.resolve(root, '../dist/registrar'))).toBe(root);
  });
});
