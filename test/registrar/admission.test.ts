// The authorizer and its provisioners (src/registrar/admission/, DESIGN "Admission policy",
// CONVENTIONS 4) on a ManualClock: every rule that can admit or refuse a join, decided in one place.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { joinProofMac } from '../../src/common/proof.js';
import {
  Authorizer,
  type AdmissionRequest,
  type Provisioner,
  type Verdict,
} from '../../src/registrar/admission/authorizer.js';
import { ClusterRule } from '../../src/registrar/admission/cluster.js';
import { InstallModeProvisioner } from '../../src/registrar/admission/install-mode.js';
import { INSTALL_MODE_KEY, Reservations, tokenKey } from '../../src/registrar/admission/reservations.js';
import { TokenProvisioner } from '../../src/registrar/admission/token.js';
import {
  INSTALL_MODE_OFF,
  newToken,
  type Autoregister,
  type InstallModeState,
  type Proof,
  type TokenRecord,
} from '../../src/registrar/policy.js';

const MIN = 60_000;
const KEY = 'k'.repeat(43);

function setup(
  opts: {
    auto?: Autoregister;
    install?: Partial<InstallModeState> | false;
    pendingMax?: number;
    pending?: number;
  } = {},
) {
  const clock = new ManualClock();
  let auto: Autoregister = opts.auto ?? 'local';
  let install: InstallModeState =
    opts.install === false || opts.install === undefined
      ? INSTALL_MODE_OFF
      : {
          on: true,
          since: clock.now(),
          until: clock.now() + 15 * MIN,
          max: null,
          accepted: 0,
          remote: false,
          ...opts.install,
        };
  const tokens = new Map<string, TokenRecord>();
  const reservations = new Reservations();
  let pending = opts.pending ?? 0;
  const authorizer = new Authorizer(
    [
      new ClusterRule('edge'),
      new TokenProvisioner({
        token: async (id) => tokens.get(id),
        inflight: (id) => reservations.count(tokenKey(id)),
        released: (id) => reservations.released(tokenKey(id)),
        autoregister: () => auto,
        cluster: 'edge',
      }),
      new InstallModeProvisioner({
        state: async () => install,
        inflight: () => reservations.count(INSTALL_MODE_KEY),
        released: () => reservations.released(INSTALL_MODE_KEY),
        autoregister: () => auto,
        cluster: 'edge',
      }),
    ],
    {
      clock,
      ...(opts.pendingMax !== undefined
        ? { pendingCap: { max: opts.pendingMax, count: async () => pending } }
        : {}),
    },
  );
  const token = (over: Partial<Parameters<typeof newToken>[1]> = {}): TokenRecord => {
    const t = newToken(clock.now(), { ttlMs: 60 * MIN, maxUses: null, roles: [], clusters: [], ...over });
    tokens.set(t.id, t);
    return t;
  };
  return {
    clock,
    authorizer,
    reservations,
    token,
    setAuto: (a: Autoregister) => (auto = a),
    setInstall: (s: InstallModeState) => (install = s),
    install: async () => install,
    setPending: (n: number) => (pending = n),
  };
}

/** A decision in progress: its verdict once it has one. */
function decided(p: Promise<Verdict>): { verdict: Verdict | undefined; done: Promise<Verdict> } {
  const w: { verdict: Verdict | undefined; done: Promise<Verdict> } = {
    verdict: undefined,
    done: p.then((v) => (w.verdict = v)),
  };
  return w;
}

/** Lets promise callbacks and immediates run (the provisioners' reads here are in memory). */
const ticks = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
};

const req = (over: Partial<AdmissionRequest> = {}): AdmissionRequest => ({
  name: 'node-1',
  role: 'worker',
  cluster: 'edge',
  key: KEY,
  channel: 'https',
  address: '198.18.0.10',
  onLink: true,
  ...over,
});

function proofFor(t: TokenRecord, clock: ManualClock, r: Partial<AdmissionRequest> = {}, offsetS = 0): Proof {
  const q = req(r);
  const ts = Math.floor(clock.now() / 1000) + offsetS;
  return {
    id: t.id,
    ts,
    hmac: joinProofMac(t.secret, { name: q.name, role: q.role, cluster: q.cluster, key: q.key, ts }),
  };
}

describe('authorizer: default deny', () => {
  it('waits for approval when nothing admits, with no provisioners at all too', async () => {
    const { authorizer } = setup();
    const v = await authorizer.decide(req());
    expect(v).toEqual({ kind: 'pending', reason: expect.stringMatching(/approval/) });
    expect((await new Authorizer([], { clock: new ManualClock() }).decide(req())).kind).toBe('pending');
  });

  it('a deny wins over an accept, whatever the order', async () => {
    const clock = new ManualClock();
    const accept: Provisioner = {
      name: 'yes',
      evaluate: () => ({ kind: 'accept', rule: 'token', detail: 'x' }),
    };
    const deny: Provisioner = {
      name: 'no',
      evaluate: () => ({ kind: 'deny', code: 'token_scope', message: 'no' }),
    };
    expect((await new Authorizer([accept, deny], { clock }).decide(req())).kind).toBe('deny');
    expect((await new Authorizer([deny, accept], { clock }).decide(req())).kind).toBe('deny');
  });

  it('an accept wins over a pending; a provisioner pending reason is kept', async () => {
    const clock = new ManualClock();
    const pending: Provisioner = { name: 'wait', evaluate: () => ({ kind: 'pending', reason: 'because' }) };
    const accept: Provisioner = {
      name: 'yes',
      evaluate: () => ({ kind: 'accept', rule: 'install-mode', detail: 'x' }),
    };
    expect((await new Authorizer([pending, accept], { clock }).decide(req())).kind).toBe('accept');
    expect(await new Authorizer([pending], { clock }).decide(req())).toEqual({
      kind: 'pending',
      reason: 'because',
    });
  });

  it('passes the clock time to provisioners', async () => {
    const clock = new ManualClock(12345);
    let seen = -1;
    const spy: Provisioner = { name: 'spy', evaluate: (_r, now) => void (seen = now) };
    await new Authorizer([spy], { clock }).decide(req());
    expect(seen).toBe(12345);
  });
});

describe('cluster rule (screen)', () => {
  it('refuses another cluster before anything else is looked at; empty means any', async () => {
    const { authorizer } = setup({ install: {} });
    expect(await authorizer.screen(req({ cluster: 'core' }))).toMatchObject({
      kind: 'deny',
      code: 'wrong_cluster',
    });
    expect(await authorizer.screen(req({ cluster: '' }))).toBeUndefined();
    expect(await authorizer.screen(req())).toBeUndefined();
    expect(await authorizer.decide(req({ cluster: 'core' }))).toMatchObject({
      kind: 'deny',
      code: 'wrong_cluster',
    });
  });
});

describe('token provisioner: checks its own credential', () => {
  it('accepts a fresh proof of a valid token, on or off the link, naming the token as the rule', async () => {
    const { authorizer, clock, token } = setup();
    const t = token();
    for (const onLink of [true, false]) {
      const v = await authorizer.decide(req({ onLink, proof: proofFor(t, clock) }));
      expect(v).toEqual({ kind: 'accept', rule: 'token', detail: `join token ${t.id}`, tokenId: t.id });
    }
  });

  it('a bad proof is a generic bad_proof for the client, the cause for the log, never the secret', async () => {
    const { authorizer, clock, token } = setup({ install: { remote: true } });
    const t = token();
    const cases: [Proof, RegExp][] = [
      [{ ...proofFor(t, clock), hmac: proofFor(t, clock, { name: 'other' }).hmac }, /HMAC does not match/],
      [proofFor(t, clock, {}, -301), /away from the registrar clock/],
      [{ ...proofFor(t, clock), id: 'abcdef0123' }, /unknown token id/],
    ];
    for (const [proof, cause] of cases) {
      const v = await authorizer.decide(req({ proof }));
      expect(v).toMatchObject({ kind: 'deny', code: 'bad_proof' });
      if (v.kind !== 'deny') continue;
      expect(v.message).not.toMatch(cause);
      expect(v.cause).toMatch(cause);
      expect(JSON.stringify(v)).not.toContain(t.secret);
    }
  });

  it('a bad proof is refused even while install mode would admit the node (it never overrides a bad proof)', async () => {
    const { authorizer, clock, token } = setup({ install: {} });
    const t = token();
    expect((await authorizer.decide(req())).kind).toBe('accept');
    const bad = { ...proofFor(t, clock), hmac: 'A'.repeat(43) };
    expect(await authorizer.decide(req({ proof: bad }))).toMatchObject({ kind: 'deny', code: 'bad_proof' });
  });

  it('counts uses in flight: while only the use in flight is left, a join waits for it and gets the final answer', async () => {
    const { authorizer, clock, token, reservations } = setup();
    const t = token({ maxUses: 1 });
    // The last use is taken while its certificate is being signed: no second accept meanwhile. Its
    // commit lost (the use is given back): the waiting join is accepted.
    let release = reservations.hold(tokenKey(t.id));
    let waiting = decided(authorizer.decide(req({ proof: proofFor(t, clock) })));
    await ticks();
    expect(waiting.verdict).toBeUndefined();
    release();
    expect((await waiting.done).kind).toBe('accept');
    // Its commit landed (the store counts the use, and so does the hold until it ends): once it ends,
    // the token is used up, and only then is the join refused (issue 11, faults/etcd-registrars).
    release = reservations.hold(tokenKey(t.id));
    waiting = decided(authorizer.decide(req({ proof: proofFor(t, clock) })));
    await ticks();
    t.used = 1;
    await ticks();
    expect(waiting.verdict).toBeUndefined();
    release();
    expect(await waiting.done).toMatchObject({ kind: 'deny', code: 'bad_proof' });
  });

  it('scope: a role or cluster outside it is token_scope; an empty requested cluster is allowed', async () => {
    const { authorizer, clock, token } = setup();
    const t = token({ roles: ['worker', 'gpu'], clusters: ['edge'] });
    expect((await authorizer.decide(req({ proof: proofFor(t, clock) }))).kind).toBe('accept');
    const r = await authorizer.decide(
      req({ role: 'storage', proof: proofFor(t, clock, { role: 'storage' }) }),
    );
    expect(r).toMatchObject({
      kind: 'deny',
      code: 'token_scope',
      message: expect.stringContaining('role storage'),
    });
    expect(
      (await authorizer.decide(req({ cluster: '', proof: proofFor(t, clock, { cluster: '' }) }))).kind,
    ).toBe('accept');
  });

  it("a node asking for any cluster is checked against this registrar's cluster (issue 8: '' skipped the check)", async () => {
    const { authorizer, clock, token } = setup({ install: { cluster: 'core', remote: true } });
    const other = token({ clusters: ['core'] });
    const v = await authorizer.decide(req({ cluster: '', proof: proofFor(other, clock, { cluster: '' }) }));
    expect(v).toMatchObject({
      kind: 'deny',
      code: 'token_scope',
      message: expect.stringContaining('cluster edge'),
    });
    // Install mode for another cluster admits nobody here either.
    expect((await authorizer.decide(req({ cluster: '' }))).kind).toBe('pending');
    expect((await authorizer.decide(req({ cluster: 'edge' }))).kind).toBe('pending');
  });

  it('a token past its TTL or revoked is a bad proof, by the clock', async () => {
    const s = setup();
    const t = s.token({ ttlMs: 10 * MIN });
    s.clock.advance(10 * MIN - 1000);
    expect((await s.authorizer.decide(req({ proof: proofFor(t, s.clock) }))).kind).toBe('accept');
    s.clock.advance(1000);
    expect((await s.authorizer.decide(req({ proof: proofFor(t, s.clock) }))).kind).toBe('deny');
  });

  it("autoregister 'off': a valid token waits for approval; a token outside its scope is still denied", async () => {
    const { authorizer, clock, token } = setup({ auto: 'off' });
    expect((await authorizer.decide(req({ proof: proofFor(token(), clock) }))).kind).toBe('pending');
    const gpu = token({ roles: ['gpu'] });
    expect((await authorizer.decide(req({ proof: proofFor(gpu, clock) }))).kind).toBe('deny');
  });
});

describe('install-mode provisioner', () => {
  it("with autoregister 'local' it admits on-link peers only, and says why not", async () => {
    const { authorizer } = setup({ install: {} });
    expect(await authorizer.decide(req())).toMatchObject({
      kind: 'accept',
      rule: 'install-mode',
      detail: expect.stringContaining('on-link 198.18.0.10'),
    });
    const off = await authorizer.decide(req({ onLink: false, address: '203.0.113.9' }));
    expect(off).toMatchObject({ kind: 'pending', reason: expect.stringContaining('203.0.113.9') });
  });

  it('--remote, or autoregister any, also admits off-link peers', async () => {
    const remote = setup({ install: { remote: true } });
    expect(await remote.authorizer.decide(req({ onLink: false, address: '203.0.113.9' }))).toMatchObject({
      kind: 'accept',
      detail: expect.stringContaining('remote 203.0.113.9'),
    });
    const any = setup({ auto: 'any', install: {} });
    expect((await any.authorizer.decide(req({ onLink: false, address: '203.0.113.9' }))).kind).toBe('accept');
  });

  it('role and cluster filters; autoregister off', async () => {
    const { authorizer, setAuto } = setup({ install: { role: 'worker', cluster: 'edge' } });
    expect((await authorizer.decide(req())).kind).toBe('accept');
    expect((await authorizer.decide(req({ role: 'storage' }))).kind).toBe('pending');
    setAuto('off');
    expect((await authorizer.decide(req())).kind).toBe('pending');
  });

  it('ends at its deadline and at its count (acceptances in flight count), by the clock', async () => {
    const s = setup({ install: { max: 2, accepted: 1 } });
    expect((await s.authorizer.decide(req())).kind).toBe('accept');
    // The last slot held by an acceptance in flight: a join waits for it; it landed, so the window is
    // full once it ends.
    const release = s.reservations.hold(INSTALL_MODE_KEY);
    const waiting = decided(s.authorizer.decide(req()));
    await ticks();
    expect(waiting.verdict).toBeUndefined();
    s.setInstall({ ...(await s.install()), accepted: 2 });
    release();
    expect((await waiting.done).kind).toBe('pending');
    s.setInstall({
      on: true,
      since: s.clock.now(),
      until: s.clock.now() + 15 * MIN,
      max: null,
      accepted: 0,
      remote: false,
    });
    s.clock.advance(15 * MIN - 1);
    expect((await s.authorizer.decide(req())).kind).toBe('accept');
    s.clock.advance(1);
    expect((await s.authorizer.decide(req())).kind).toBe('pending');
  });

  it('names the window it admits by, so the store can count the use against that window only', async () => {
    const s = setup({ install: {} });
    expect(await s.authorizer.decide(req())).toMatchObject({ kind: 'accept', since: s.clock.now() });
  });

  it('a heard advertisement is a hint: it never makes a far peer local (issue 8, hole 1); another key waits for the operator', async () => {
    const { authorizer } = setup({ install: {} });
    const far = { onLink: false, address: '203.0.113.9' };
    // A forged (or real) advertisement of this very key, heard on the LAN: the TCP peer is far, so no.
    expect(
      await authorizer.decide(req({ ...far, heard: { key: KEY, addresses: ['198.18.0.10'] } })),
    ).toMatchObject({ kind: 'pending', reason: expect.stringContaining('203.0.113.9 is not on it') });
    expect(await authorizer.decide(req({ heard: { key: KEY, addresses: ['198.18.0.10'] } }))).toMatchObject({
      kind: 'accept',
      detail: expect.stringContaining('mdns'),
    });
    const other = await authorizer.decide(req({ heard: { key: 'x'.repeat(43), addresses: [] } }));
    expect(other).toMatchObject({
      kind: 'pending',
      reason: expect.stringContaining('differs from the one node-1 advertised'),
    });
  });
});

describe('pending cap', () => {
  it('a full queue refuses new pending nodes with closed + Retry-After, but not the ones already waiting or admitted', async () => {
    const s = setup({ pendingMax: 2, pending: 2, install: false });
    expect(await s.authorizer.decide(req())).toMatchObject({ kind: 'deny', code: 'closed', retryAfter: 60 });
    expect((await s.authorizer.decide(req({ alreadyPending: true }))).kind).toBe('pending');
    const t = s.token();
    expect((await s.authorizer.decide(req({ proof: proofFor(t, s.clock) }))).kind).toBe('accept');
    s.setPending(1);
    expect((await s.authorizer.decide(req())).kind).toBe('pending');
  });
});
