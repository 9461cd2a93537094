// Day 90 without bricking (issue 9): a node whose certificate expired runs `muster join` again (its
// boot job), re-enters admission with its key, and gets a new certificate; before, the registrar
// handed back the expired one, the bundle check refused it, and the node exited 5 for good.
// Real registrar on 127.0.0.1 with 3-second certificates, the real node agent, openssl.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  joinNode,
  opensslVerify,
  startTestRegistrar,
  tempDir,
  type TestRegistrar,
} from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let reg: TestRegistrar;

beforeAll(async () => {
  t = tempDir();
  reg = await startTestRegistrar(t.dir, { certLifetimeMs: 3000 });
});
afterAll(async () => {
  await reg?.close();
  t?.cleanup();
});

describe('an expired certificate', () => {
  it('is replaced by running the join again with the same key (token), not refused with exit 5', async () => {
    const { token } = await reg.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {
      ttlMs: 600_000,
    });
    const dir = path.join(t.dir, 'node');
    const first = await joinNode(reg, dir, { token, name: 'n1' });
    expect(first.status).toBe('registered');
    const key = readFileSync(path.join(dir, 'node.key'), 'utf8');
    const oldSerial = first.serial;
    // Let it expire (the registrar back-dates notBefore by 5 minutes; notAfter is issue + 3 s).
    const notAfter = Date.parse(new X509Certificate(readFileSync(path.join(dir, 'node.crt'))).validTo);
    await new Promise((r) => setTimeout(r, Math.max(0, notAfter - Date.now()) + 1200));
    const again = await joinNode(reg, dir, { token, name: 'n1' });
    expect(again.status).toBe('registered');
    expect(again.serial).not.toBe(oldSerial);
    expect(readFileSync(path.join(dir, 'node.key'), 'utf8')).toBe(key); // the same key
    expect(opensslVerify(again.caFile, again.certFile).ok).toBe(true);
    const { node } = await reg.admin.request<{ node: { state: string; serial: string } }>(
      'GET',
      '/v1/admin/nodes/n1',
    );
    expect(node).toMatchObject({ state: 'active', serial: again.serial });
  });
});
