/**
 * A registrar core for unit tests: the real admission, registration, issuer, delivery and operator
 * over the in-memory registry, on a ManualClock (CONVENTIONS 2), with a real CA and real CSRs. No
 * sockets: tests call the service, or its HTTPS routes through fastify's inject().
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { expect } from 'vitest';
import os from 'node:os';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { ManualClock } from '../../src/common/clock.js';
import { isMusterError } from '../../src/common/errors.js';
import { memoryLogger } from '../../src/common/log.js';
import { joinProofMac, nodeSignedPayload, signNode } from '../../src/common/proof.js';
import { loadOrCreateCa, type CertificateAuthority } from '../../src/registrar/ca.js';
import type { Autoregister } from '../../src/registrar/policy.js';
import { RegistrarService, type RegistrarServiceOptions } from '../../src/registrar/service.js';
import { MemoryRegistry } from '../../src/store/memory.js';
import type { Registry } from '../../src/store/registry.js';
import { generateKeyPairSync } from 'node:crypto';
import { buildCsr, keyFingerprint } from '../../src/common/x509.js';

let caPromise: Promise<CertificateAuthority> | undefined;

/** One CA for the whole test file (RSA key generation is the slow part). */
export function testCa(): Promise<CertificateAuthority> {
  caPromise ??= (async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-ca-'));
    try {
      return (await loadOrCreateCa(dir, 'muster CA test', new Date())).ca;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  })();
  return caPromise;
}

export const ON_LINK = '198.18.0.20';
export const FAR = '203.0.113.9';

export interface Core {
  svc: RegistrarService;
  registry: Registry;
  clock: ManualClock;
  logs: ReturnType<typeof memoryLogger>;
  /** A token's full text and its parts. */
  token(opts?: { uses?: number; roles?: string[] }): Promise<{ id: string; secret: string }>;
  close(): Promise<void>;
}

export async function core(
  opts: {
    autoregister?: Autoregister;
    registry?: Registry;
    clock?: ManualClock;
    maxPending?: number;
    certLifetimeMs?: number;
    roleLifetimesMs?: Record<string, number>;
    maxFailures?: number;
    /** Any other service option (e.g. policyExec, singletonRoles), passed through as is. */
    service?: Partial<RegistrarServiceOptions>;
  } = {},
): Promise<Core> {
  const clock = opts.clock ?? new ManualClock(Date.UTC(2026, 10, 30));
  const registry = opts.registry ?? (await MemoryRegistry.create({ now: () => clock.now() }));
  const logs = memoryLogger('registrar');
  const svc = await RegistrarService.create({
    registry,
    ca: await testCa(),
    clock,
    log: logs.log,
    registrarId: 'r-test',
    cluster: 'edge',
    role: 'main',
    url: () => 'https://198.18.0.1:8443',
    autoregister: opts.autoregister ?? 'local',
    isOnLink: (a) => a.startsWith('198.18.0.'),
    ...(opts.maxPending !== undefined ? { maxPending: opts.maxPending } : {}),
    ...(opts.certLifetimeMs ? { certLifetimeMs: opts.certLifetimeMs } : {}),
    ...(opts.roleLifetimesMs ? { roleLifetimesMs: opts.roleLifetimesMs } : {}),
    ...(opts.maxFailures !== undefined ? { maxFailures: opts.maxFailures } : {}),
    ...opts.service,
  });
  return {
    svc,
    registry,
    clock,
    logs,
    async token(t = {}) {
      const { token } = await svc.operator.createToken({
        ttlMs: 3_600_000,
        maxUses: t.uses ?? null,
        roles: t.roles ?? [],
        clusters: [],
      });
      const [id, secret] = token.split('.') as [string, string];
      return { id, secret };
    },
    async close() {
      svc.close();
      await registry.close();
    },
  };
}

/** A node: its key, CSR, and the requests it would send. */
export function node(
  name: string,
  key: KeyObject = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey,
) {
  const c = { csr: buildCsr(name, key), key, fp: keyFingerprint(key) };
  return {
    ...c,
    name,
    request(
      over: {
        role?: string;
        cluster?: string;
        token?: { id: string; secret: string };
        clock?: ManualClock;
      } = {},
    ) {
      const role = over.role ?? 'worker';
      const cluster = over.cluster ?? '';
      const ts = Math.floor((over.clock?.now() ?? Date.now()) / 1000);
      return {
        name,
        role,
        cluster,
        csr: c.csr,
        ...(over.token
          ? {
              proof: {
                id: over.token.id,
                ts,
                hmac: joinProofMac(over.token.secret, { name, role, cluster, key: c.fp, ts }),
              },
            }
          : {}),
      };
    },
    /** The long poll's proof of key possession. */
    pollProof(clock: ManualClock) {
      const ts = Math.floor(clock.now() / 1000);
      return { ts, sig: signNode(c.key, nodeSignedPayload('poll', name, c.fp, ts)) };
    },
    /** The long poll's query string. */
    pollQuery(clock: ManualClock, wait?: number) {
      const p = this.pollProof(clock);
      return `key=${c.fp}&ts=${p.ts}&sig=${p.sig}${wait !== undefined ? `&wait=${wait}` : ''}`;
    },
    signed(kind: 'ack' | 'leave' | 'renew', serial: string, clock: ManualClock) {
      const ts = Math.floor(clock.now() / 1000);
      return { key: c.fp, serial, ts, sig: signNode(c.key, nodeSignedPayload(kind, name, serial, ts)) };
    },
  };
}

/** Lets promise callbacks run (the in-memory store answers on the microtask queue). */
export const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

/** Everything the registry holds, through its interface: for "a refusal changes nothing". */
export function storeState(r: Registry): Promise<unknown> {
  return readStore(r);
}

async function readStore(r: Registry) {
  const records = await r.listNodes({ limit: 100_000 });
  return {
    records,
    history: await Promise.all(records.map((n) => r.history(n.name))),
    counts: await r.counts(),
    tokens: await r.listTokens(),
    installMode: await r.getInstallMode(),
    serials: await r.listSerials(),
    revocations: await r.listRevocations(),
    events: await r.listEvents(0, 100_000),
  };
}

export type StoreState = Awaited<ReturnType<typeof readStore>>;

/**
 * "A refusal changes nothing" now that refusals are on record (issue 10): reads the registry and
 * checks that the events it gained since `before` are `refused` events with exactly these `reasons`,
 * in order (repeats within a minute from one source are folded into one: registrar/refusals.ts), and
 * that a token's bad-proof count moved by exactly `badProofs[id]` (0 for tokens not named). Returns
 * the state with those two differences taken out, to compare with `before`: nothing else may differ.
 */
export async function refusedOnly(
  r: Registry,
  beforeState: unknown,
  reasons: string[],
  opts: { badProofs?: Record<string, number> } = {},
): Promise<unknown> {
  const before = beforeState as StoreState;
  const after = await readStore(r);
  const gained = after.events.slice(before.events.length);
  expect(gained.map((e) => e.type)).toEqual(reasons.map(() => 'refused'));
  expect(gained.map((e) => e.detail?.reason)).toEqual(reasons);
  for (const e of gained) expect(JSON.stringify(e)).not.toMatch(/"(hmac|secret|proof|csr)"/);
  const tokens = after.tokens.map((t) => {
    const was = before.tokens.find((b) => b.id === t.id);
    expect(t.badProofs ?? 0, `bad proofs of token ${t.id}`).toBe(
      (was?.badProofs ?? 0) + (opts.badProofs?.[t.id] ?? 0),
    );
    const { badProofs: _b, ...rest } = t;
    return was?.badProofs !== undefined ? { ...rest, badProofs: was.badProofs } : rest;
  });
  return { ...after, tokens, events: after.events.slice(0, before.events.length) };
}

/** The outcome of a call: 'ok', or the stable code of the MusterError it threw. */
export const code = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (isMusterError(err)) return err.code;
    throw err;
  }
};
