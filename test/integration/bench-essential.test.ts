/**
 * The cpu benchmark's "essential" server (src/bench/child.ts, mode 'essential') stands for the work no
 * registrar can skip for a token join (issue 12 target 1): its figures only mean something if it
 * really does that work. A valid join is answered 201 with a certificate and the CA, and its record is
 * in the database when the answer comes; a CSR whose signature does not verify, or a token proof made
 * with another secret, is refused and writes nothing. Real child process (dist/), loopback only.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpsRequest, joinBody, makeNodes, type NodeIdentity } from '../../src/bench/lib.js';
import { fromPem, toPem } from '../../src/common/x509.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const TOKEN = { id: 'benchtok1', secret: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I' };

let dir: string;
let child: ChildProcess;
let url: string;

function stopChild(): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.send({ cmd: 'stop' });
  });
}

/** The records in the essential server's database (read after it stopped: leveldb locks it). */
async function records(): Promise<Map<string, Record<string, unknown>>> {
  await stopChild();
  const db = new ClassicLevel<string, string>(path.join(dir, 'essential-db'), {
    keyEncoding: 'utf8',
    valueEncoding: 'utf8',
  });
  const out = new Map<string, Record<string, unknown>>();
  for await (const [k, v] of db.iterator()) out.set(k, JSON.parse(v) as Record<string, unknown>);
  await db.close();
  return out;
}

/** The same CSR with the last byte of its ECDSA signature changed: well-formed, does not verify. */
function badSignature(n: NodeIdentity): string {
  const der = Buffer.from(fromPem(n.csr, 'CERTIFICATE REQUEST'));
  der[der.length - 1] = der[der.length - 1]! ^ 0x01;
  return toPem(der, 'CERTIFICATE REQUEST');
}

const [good, forged, wrongSecret, sameName] = makeNodes('ess', 4);

const answers: Record<string, { status: number; body: unknown }> = {};

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'muster-essential-'));
  child = fork(
    path.join(ROOT, 'dist/bench/child.js'),
    [JSON.stringify({ mode: 'essential', dir, token: TOKEN })],
    { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] },
  );
  url = await new Promise<string>((resolve, reject) => {
    child.on('message', (m: { type: string; url: string }) => m.type === 'ready' && resolve(m.url));
    child.once('exit', (code) => reject(new Error(`the essential child exited (${code})`)));
  });
  const post = (b: Record<string, unknown>) => httpsRequest(url, 'POST', '/v1/join', b);
  answers.good = await post(joinBody(good!, TOKEN));
  answers.forged = await post({ ...joinBody(forged!, TOKEN), csr: badSignature(forged!) });
  answers.wrongSecret = await post(joinBody(wrongSecret!, { id: TOKEN.id, secret: 'x'.repeat(43) }));
  // The good node's name, asked for with another key (a valid proof for that key).
  answers.sameName = await post(joinBody({ ...sameName!, name: good!.name }, TOKEN));
  // Nothing below reads the database before every answer is in.
});

afterAll(async () => {
  await stopChild();
  rmSync(dir, { recursive: true, force: true });
});

describe('the cpu benchmark essential server', () => {
  it('answers a valid token join 201 with a certificate, the CA and a MAC over both', () => {
    expect(answers.good!.status).toBe(201);
    const b = answers.good!.body as { certificate: string; ca: string; mac: string };
    expect(b.certificate).toMatch(/^-----BEGIN CERTIFICATE-----\r?\n/);
    expect(b.ca).toMatch(/^-----BEGIN CERTIFICATE-----\r?\n/);
    const mac = createHmac('sha256', TOKEN.secret).update(b.certificate).update(b.ca).digest('hex');
    expect(b.mac).toBe(mac);
    // The size the bench means to answer (a muster bundle is about 3 kB).
    expect(JSON.stringify(b).length).toBeGreaterThan(2500);
  });

  it('refuses a CSR whose signature does not verify (400), a proof made with another secret (401), a held name (409)', () => {
    expect(answers.forged!.status).toBe(400);
    expect(answers.wrongSecret!.status).toBe(401);
    expect(answers.sameName!.status).toBe(409);
  });

  it('holds the accepted join durably, and nothing for the refused ones', async () => {
    const db = await records();
    expect([...db.keys()]).toEqual([`n!${good!.name}`]);
    const r = db.get(`n!${good!.name}`)!;
    expect(r).toMatchObject({ name: good!.name, state: 'accepted', key: good!.fp, csr: good!.csr });
    expect(r.certificate).toBe((answers.good!.body as { certificate: string }).certificate);
    expect(JSON.stringify(r).length).toBeGreaterThan(2000);
  });
});
