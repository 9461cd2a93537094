/**
 * One TLS connection per node and registrar (src/fallback/client.ts RegistrarAgent; issue 12,
 * target 3): the first contact's connection, whose certificate the node checked against the CA the
 * registrar serves, carries the join and the ack too. Real registrars on 127.0.0.1:0 count the TLS
 * connections they accept and the requests on each.
 *
 * What must not change: a connection opened after the first contact is checked by TLS against the
 * registrar's CA. A TCP relay in front of the registrar drops the kept connection and sends the next
 * one to another registrar (another CA) at the same address: the node refuses it and sends it nothing.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { isMusterError } from '../../src/common/errors.js';
import { httpsJson, RegistrarClient } from '../../src/fallback/client.js';
import { joinNode, startTestRegistrar, tempDir, type TestRegistrar } from '../helpers/registrar.js';

/** The TLS connections a registrar accepted, and the requests (method and path) on each. */
function countConnections(reg: TestRegistrar): Map<TLSSocket, string[]> {
  const seen = new Map<TLSSocket, string[]>();
  reg.api.server.on('secureConnection', (s: TLSSocket) => seen.set(s, []));
  reg.api.server.on('request', (req: { method?: string; url?: string; socket: TLSSocket }) => {
    const path = (req.url ?? '').split('?')[0]!;
    seen.get(req.socket)?.push(`${req.method} ${path}`);
  });
  return seen;
}

/** A TCP relay: connection i goes to targets[min(i, last)]; `drop()` cuts every open connection. */
async function relay(targets: number[]): Promise<{ port: number; drop(): void; close(): Promise<void> }> {
  const open = new Set<net.Socket>();
  let n = 0;
  const server = net.createServer((inbound) => {
    const port = targets[Math.min(n++, targets.length - 1)]!;
    const outbound = net.connect(port, '127.0.0.1');
    for (const s of [inbound, outbound]) {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => undefined);
    }
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    drop: () => {
      for (const s of open) s.destroy();
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** Until `cond` holds (socket events on the registrar side come a tick after the client's). */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

/** Until the client has seen its kept connection close (else the next request races the close). */
async function closed(client: RegistrarClient): Promise<void> {
  // The agent is private to the client.
  const agent = client['agent'] as { freeSockets: Record<string, unknown[] | undefined> };
  await until(() => Object.values(agent.freeSockets).every((l) => !l?.length));
}

let t: ReturnType<typeof tempDir>;
let a: TestRegistrar;
let b: TestRegistrar | undefined;

beforeEach(async () => {
  t = tempDir('muster-conn-reuse-');
  a = await startTestRegistrar(path.join(t.dir, 'a'), { mdns: false });
});
afterEach(async () => {
  await a?.close();
  await b?.close();
  b = undefined;
  t.cleanup();
});

describe('the node keeps one TLS connection to its registrar', () => {
  it('a join (first contact, join, ack) is one TLS connection at the registrar', async () => {
    const { token } = await a.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {});
    const conns = countConnections(a);
    const r = await joinNode(a, path.join(t.dir, 'node'), { mdns: false, token });
    expect(r).toMatchObject({ status: 'registered', name: 'node-1' });
    await until(() => [...conns.values()].flat().some((q) => q.endsWith('/ack')));
    const requests = [...conns.values()];
    expect(requests).toHaveLength(1);
    expect(requests[0]).toEqual(['GET /v1/ca', 'GET /v1/info', 'POST /v1/join', 'POST /v1/join/node-1/ack']);
  });

  it('a connection opened after the first contact is checked against the CA: another CA at the same address gets nothing', async () => {
    b = await startTestRegistrar(path.join(t.dir, 'b'), { mdns: false });
    const localCa = (await httpsJson(new URL('/v1/ca', a.url), { insecure: true })).body as string;
    const atA = countConnections(a);
    const atB = countConnections(b);
    // Connections 1 and 2 go to registrar a, the third to b (another CA) behind the same address.
    const r = await relay([a.port, a.port, b.port]);
    const client = await RegistrarClient.connect(`https://127.0.0.1:${r.port}`, { localCa, timeoutMs: 5000 });
    try {
      expect(client.info.id).toBe(a.id);
      expect((await client.call('GET', '/v1/info')).status).toBe(200);
      await until(() => [...atA.values()].flat().length === 3);
      expect([...atA.values()]).toEqual([['GET /v1/ca', 'GET /v1/info', 'GET /v1/info']]);

      // The kept connection is gone: the next request opens a new one, checked by TLS (registrar a).
      r.drop();
      await closed(client);
      expect((await client.call('GET', '/v1/info')).status).toBe(200);
      await until(() => atA.size === 2 && [...atA.values()].flat().length === 4);
      expect([...atA.values()][1]).toEqual(['GET /v1/info']);

      // Gone again, and now registrar b answers at that address: refused at the TLS check, nothing sent.
      r.drop();
      await closed(client);
      const err = await client.call('POST', '/v1/join', { name: 'x' }).then(
        () => new Error('the request went through'),
        (e: unknown) => e as Error,
      );
      expect(isMusterError(err, 'MUSTER_ERR_TLS'), String(err)).toBe(true);
      expect([...atB.values()].flat()).toEqual([]);
      expect(await b.metrics.requestCount('POST', '/v1/join')).toBe(0);
    } finally {
      client.close();
      await r.close();
    }
  });

  it('two registrars never share a connection', async () => {
    b = await startTestRegistrar(path.join(t.dir, 'b'), { mdns: false });
    const atA = countConnections(a);
    const atB = countConnections(b);
    const ca = await RegistrarClient.connect(a.url, { timeoutMs: 5000 });
    const cb = await RegistrarClient.connect(b.url, { timeoutMs: 5000 });
    try {
      expect((await ca.call('GET', '/v1/info')).body).toMatchObject({ id: a.id });
      expect((await cb.call('GET', '/v1/info')).body).toMatchObject({ id: b.id });
      await until(() => [...atA.values(), ...atB.values()].flat().length === 6);
      expect([...atA.values()]).toEqual([['GET /v1/ca', 'GET /v1/info', 'GET /v1/info']]);
      expect([...atB.values()]).toEqual([['GET /v1/ca', 'GET /v1/info', 'GET /v1/info']]);
    } finally {
      ca.close();
      cb.close();
    }
  });
});
