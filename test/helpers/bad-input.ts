/**
 * Helpers for the bad-input tests (developers' guide: "every rejected input changes nothing"): a raw
 * HTTPS request with any headers and body, a snapshot of everything the store shows, and one check of
 * the error shape.
 */
import { createHash } from 'node:crypto';
import https from 'node:https';
import { expect } from 'vitest';
import { ErrorCodes, type ErrorCode } from '../../src/common/errors.js';
import type { TestRegistrar } from './registrar.js';

export interface RawReply {
  status: number;
  text: string;
  body: any;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * One HTTPS request with exactly the given headers and body (the `api()` helper always sends JSON).
 * `chunked: true` sends the body without a content-length.
 */
export function rawRequest(
  reg: { url: string },
  method: string,
  urlPath: string,
  opts: { body?: string | Buffer; headers?: Record<string, string>; chunked?: boolean } = {},
): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : Buffer.from(opts.body);
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (payload && !opts.chunked && headers['content-length'] === undefined)
      headers['content-length'] = String(payload.length);
    const req = https.request(
      new URL(urlPath, reg.url),
      { method, rejectUnauthorized: false, agent: false, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = undefined;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            body = text;
          }
          resolve({ status: res.statusCode ?? 0, text, body, headers: res.headers });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (payload && opts.chunked) {
      // Several writes: node sends them with transfer-encoding: chunked.
      const step = 4096;
      for (let i = 0; i < payload.length; i += step) req.write(payload.subarray(i, i + step));
      req.end();
    } else {
      req.end(payload);
    }
  });
}

export interface Snapshot {
  counts: Record<string, number>;
  lastEventSeq: number;
  nodes: unknown;
  tokens: unknown;
  installMode: unknown;
  /** Every key-value of the level store (values only, in key order), hashed to keep diffs short. */
  store: { entries: number; sha256: string };
}

/** What the store shows, through the service and through the admin API. */
export async function snapshot(
  reg: TestRegistrar,
  /**
   * Refusals on record (issue 10): `eventsUpTo` leaves out the events after this sequence number,
   * `ignoreBadProofs` the tokens' bad-proof counts (refusedOnly in test/integration/bad-input.test.ts
   * checks both).
   */
  opts: { eventsUpTo?: number; ignoreBadProofs?: boolean } = {},
): Promise<Snapshot> {
  const noBad = <T>(ts: T[]): T[] =>
    opts.ignoreBadProofs ? ts.map((t) => ({ ...t, badProofs: undefined })) : ts;
  const nodes = await reg.admin.request<{ nodes: unknown[]; counts: unknown }>(
    'GET',
    '/v1/admin/nodes?limit=1000',
  );
  const tokenList = await reg.admin.request<{ tokens: unknown[] }>('GET', '/v1/admin/tokens');
  const tokens = { ...tokenList, tokens: noBad(tokenList.tokens) };
  // The description says "on for 14m 59s more": it changes with time, not with the store.
  const { description: _d, ...installMode } = await reg.admin.request<Record<string, unknown>>(
    'GET',
    '/v1/admin/install-mode',
  );
  // Everything the registry holds, through its interface: records (with history), tokens (secrets
  // included), install mode, serials, revocations and the event log.
  const store = reg.service.registry;
  const records = await store.listNodes({ limit: 100_000 });
  const all = {
    records,
    history: await Promise.all(records.map((r) => store.history(r.name))),
    tokens: noBad(await store.listTokens()),
    installMode: await store.getInstallMode(),
    serials: await store.listSerials(),
    revocations: await store.listRevocations(),
    events: (await store.listEvents(0, 100_000)).filter(
      (e) => opts.eventsUpTo === undefined || e.seq <= opts.eventsUpTo,
    ),
  };
  return {
    counts: await store.counts(),
    lastEventSeq: opts.eventsUpTo ?? (await store.lastEventSeq()),
    nodes,
    tokens,
    installMode,
    store: {
      entries: records.length + all.events.length + all.tokens.length + all.serials.length,
      sha256: createHash('sha256').update(JSON.stringify(all)).digest('hex'),
    },
  };
}

/** Everything that must never appear in an answer or a log line. */
export const secrets: string[] = [];

/**
 * The error contract: the status, `{error, message}` with the stable code, a message for a person,
 * and no secret in the answer.
 */
export function expectError(
  res: { status: number; body: any; text?: string },
  status: number,
  code: ErrorCode,
): void {
  const where = `${res.status} ${typeof res.body === 'string' ? res.body : JSON.stringify(res.body)}`;
  expect(res.status, where).toBe(status);
  expect(res.body, where).toBeTypeOf('object');
  expect(res.body, where).toMatchObject({ error: code, message: expect.any(String) });
  expect((res.body.message as string).trim().length, where).toBeGreaterThan(0);
  expect(Object.keys(ErrorCodes), where).toContain(res.body.error);
  const raw = res.text ?? JSON.stringify(res.body);
  for (const s of secrets) expect(raw, 'an answer carries a secret').not.toContain(s);
}
