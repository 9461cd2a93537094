// Admission policy (src/registrar/policy.ts, DESIGN "Admission policy") on a ManualClock (CONVENTIONS 2, 4).
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { joinProofMac, PROOF_WINDOW_S } from '../../src/common/proof.js';
import {
  Authorizer,
  checkProof,
  describeInstallMode,
  effectiveInstallMode,
  INSTALL_MODE_OFF,
  InstallModeProvisioner,
  newToken,
  TokenProvisioner,
  tokenState,
  tokenView,
  type AdmissionRequest,
  type Autoregister,
  type InstallModeState,
  type Proof,
  type Provisioner,
  type TokenRecord,
} from '../../src/registrar/policy.js';

const MIN = 60_000;
const fields = { name: 'node-1', role: 'worker', cluster: 'edge', key: 'k'.repeat(43) };

function proofFor(t: TokenRecord, clock: ManualClock, offsetS = 0, f = fields): Proof {
  const ts = Math.floor(clock.now() / 1000) + offsetS;
  return { id: t.id, ts, hmac: joinProofMac(t.secret, { ...f, ts }) };
}

const token = (clock: ManualClock, over: Partial<Parameters<typeof newToken>[1]> = {}): TokenRecord =>
  newToken(clock.now(), { ttlMs: 60 * MIN, maxUses: null, roles: [], clusters: [], ...over });

describe('newToken', () => {
  it('makes a fresh id and secret each time, with TTL and limits from the options', () => {
    const clock = new ManualClock();
    const a = token(clock, { maxUses: 3, roles: ['worker'], clusters: ['edge'], description: 'rack 4' });
    const b = token(clock);
    expect(a.id).not.toBe(b.id);
    expect(a.secret).not.toBe(b.secret);
    expect(a).toMatchObject({
      createdAt: new Date(clock.now()).toISOString(),
      expiresAt: clock.now() + 60 * MIN,
      maxUses: 3,
      used: 0,
      roles: ['worker'],
      clusters: ['edge'],
      revoked: false,
      description: 'rack 4',
    });
    expect(newToken(clock.now(), { ttlMs: null, maxUses: null, roles: [], clusters: [] }).expiresAt).toBeNull();
  });
});

describe('checkProof', () => {
  it('accepts a fresh proof made with the token secret', () => {
    const clock = new ManualClock();
    const t = token(clock);
    const r = checkProof(t, proofFor(t, clock), fields, clock.now());
    expect(r).toEqual({ ok: true, token: t });
  });

  it('refuses an unknown token', () => {
    const clock = new ManualClock();
    const t = token(clock);
    const r = checkProof(undefined, proofFor(t, clock), fields, clock.now());
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain(`unknown token id ${t.id}`);
  });

  it(`accepts a timestamp up to ${PROOF_WINDOW_S} s away, and refuses 301 s in the past or the future`, () => {
    const clock = new ManualClock();
    const t = token(clock);
    for (const off of [-299, 299, -300, 300, 0]) {
      expect(checkProof(t, proofFor(t, clock, off), fields, clock.now()).ok, `offset ${off}`).toBe(true);
    }
    for (const off of [-301, 301, -3600, 86_400]) {
      const r = checkProof(t, proofFor(t, clock, off), fields, clock.now());
      expect(r.ok, `offset ${off}`).toBe(false);
      if (!r.ok) expect(r.reason).toMatch(/timestamp/);
    }
  });

  it('a proof goes stale as the registrar clock moves on', () => {
    const clock = new ManualClock();
    const t = token(clock);
    const p = proofFor(t, clock);
    clock.advance(299_000);
    expect(checkProof(t, p, fields, clock.now()).ok).toBe(true);
    clock.advance(2_000);
    expect(checkProof(t, p, fields, clock.now()).ok).toBe(false);
  });

  it('refuses a wrong HMAC: other secret, other fields, other ts', () => {
    const clock = new ManualClock();
    const t = token(clock);
    const other = token(clock);
    const good = proofFor(t, clock);
    const cases: Proof[] = [
      { ...good, hmac: proofFor(other, clock).hmac },
      { ...good, hmac: proofFor(t, clock, 0, { ...fields, name: 'node-2' }).hmac },
      { ...good, hmac: proofFor(t, clock, 0, { ...fields, key: 'j'.repeat(43) }).hmac },
      { ...good, ts: good.ts + 1 },
      { ...good, hmac: '' },
      { ...good, hmac: 'x' },
    ];
    for (const p of cases) {
      const r = checkProof(t, p, fields, clock.now());
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toContain('HMAC');
    }
    // The fields the registrar checks against are those of the request, not of the proof.
    expect(checkProof(t, good, { ...fields, role: 'storage' }, clock.now()).ok).toBe(false);
    expect(checkProof(t, good, { ...fields, cluster: '' }, clock.now()).ok).toBe(false);
  });

  it('refuses a revoked token', () => {
    const clock = new ManualClock();
    const t = { ...token(clock), revoked: true };
    const r = checkProof(t, proofFor(t, clock), fields, clock.now());
    expect(r).toEqual({ ok: false, reason: `token ${t.id} is revoked` });
  });

  it('refuses a token past its TTL, by the clock', () => {
    const clock = new ManualClock();
    const t = token(clock, { ttlMs: 10 * MIN });
    clock.advance(10 * MIN - 1);
    expect(checkProof(t, proofFor(t, clock), fields, clock.now()).ok).toBe(true);
    clock.advance(1);
    const r = checkProof(t, proofFor(t, clock), fields, clock.now());
    expect(r).toEqual({ ok: false, reason: `token ${t.id} is expired` });
  });

  it('refuses a used-up token', () => {
    const clock = new ManualClock();
    const t = { ...token(clock, { maxUses: 2 }), used: 1 };
    expect(checkProof(t, proofFor(t, clock), fields, clock.now()).ok).toBe(true);
    const r = checkProof({ ...t, used: 2 }, proofFor(t, clock), fields, clock.now());
    expect(r).toEqual({ ok: false, reason: `token ${t.id} is used-up` });
  });

  it('never puts the secret in a reason', () => {
    const clock = new ManualClock();
    const t = { ...token(clock), revoked: true };
    const reasons = [
      checkProof(t, proofFor(t, clock), fields, clock.now()),
      checkProof(t, proofFor(t, clock, 1000), fields, clock.now()),
      checkProof(t, { ...proofFor(t, clock), hmac: 'x' }, fields, clock.now()),
    ];
    for (const r of reasons) expect(JSON.stringify(r)).not.toContain(t.secret);
  });
});

describe('tokenState / tokenView', () => {
  it('reports valid, expired, used-up and revoked, revoked first', () => {
    const clock = new ManualClock();
    const t = token(clock, { ttlMs: MIN, maxUses: 1 });
    expect(tokenState(t, clock.now())).toBe('valid');
    expect(tokenState(t, clock.now() + MIN)).toBe('expired');
    expect(tokenState({ ...t, used: 1 }, clock.now())).toBe('used-up');
    expect(tokenState({ ...t, used: 1, revoked: true }, clock.now() + MIN)).toBe('revoked');
    expect(tokenState({ ...t, expiresAt: null, maxUses: null, used: 1e6 }, clock.now() + 1e12)).toBe('valid');
  });

  it('never contains the secret', () => {
    const clock = new ManualClock();
    for (const t of [token(clock), { ...token(clock), revoked: true, revokedAt: 'x' }, token(clock, { description: 'd' })]) {
      const v = tokenView(t, clock.now());
      expect(v).not.toHaveProperty('secret');
      expect(JSON.stringify(v)).not.toContain(t.secret);
      expect(v.id).toBe(t.id);
      expect(v.state).toBe(tokenState(t, clock.now()));
    }
  });

  it('does not modify the record', () => {
    const clock = new ManualClock();
    const t = token(clock);
    tokenView(t, clock.now());
    expect(t.secret).toBeTruthy();
  });
});

describe('install mode state', () => {
  const clock = new ManualClock();
  const now = clock.now();
  const on: InstallModeState = { on: true, since: now, until: now + 15 * MIN, max: 5, accepted: 2, remote: false };

  it('is on before its deadline and count', () => {
    expect(effectiveInstallMode(on, now)).toEqual(on);
    expect(effectiveInstallMode(on, now + 15 * MIN - 1).on).toBe(true);
  });

  it('is off at its deadline', () => {
    const e = effectiveInstallMode(on, now + 15 * MIN);
    expect(e.on).toBe(false);
    expect(e.offReason).toBe('deadline passed');
  });

  it('is off once max nodes were accepted', () => {
    const e = effectiveInstallMode({ ...on, accepted: 5 }, now);
    expect(e.on).toBe(false);
    expect(e.offReason).toBe('5 node(s) accepted');
  });

  it('without a max or deadline it stays on', () => {
    const open: InstallModeState = { on: true, since: now, max: null, accepted: 1000, remote: true };
    expect(effectiveInstallMode(open, now + 1e12).on).toBe(true);
  });

  it('leaves an off state alone', () => {
    expect(effectiveInstallMode(INSTALL_MODE_OFF, now)).toBe(INSTALL_MODE_OFF);
  });

  it('describeInstallMode', () => {
    expect(describeInstallMode(INSTALL_MODE_OFF, now)).toBe('off');
    expect(describeInstallMode({ ...INSTALL_MODE_OFF, offReason: 'turned off by the operator' }, now)).toBe('off (turned off by the operator)');
    expect(describeInstallMode(on, now)).toBe('on for 15m more, 3 of 5 acceptance(s) left, local link only');
    expect(describeInstallMode({ ...on, role: 'worker', cluster: 'edge', remote: true }, now + 5 * MIN)).toBe(
      'on for 10m more, 3 of 5 acceptance(s) left, role worker, cluster edge, any address',
    );
    expect(describeInstallMode({ ...on, max: null }, now + 90 * 1000)).toBe('on for 13m30s more, local link only');
    expect(describeInstallMode(on, now + 15 * MIN)).toBe('off (deadline passed)');
    expect(describeInstallMode({ ...on, accepted: 5 }, now)).toBe('off (5 node(s) accepted)');
  });
});

describe('Authorizer with TokenProvisioner and InstallModeProvisioner', () => {
  function setup(opts: { auto?: Autoregister; install?: Partial<InstallModeState> | false } = {}) {
    const clock = new ManualClock();
    let auto: Autoregister = opts.auto ?? 'local';
    let install: InstallModeState =
      opts.install === false || opts.install === undefined
        ? INSTALL_MODE_OFF
        : { on: true, since: clock.now(), until: clock.now() + 15 * MIN, max: null, accepted: 0, remote: false, ...opts.install };
    const authorizer = new Authorizer(
      [new TokenProvisioner(() => auto), new InstallModeProvisioner(() => install, () => auto)],
      clock,
    );
    return {
      clock,
      authorizer,
      setAuto: (a: Autoregister) => (auto = a),
      setInstall: (s: InstallModeState) => (install = s),
    };
  }

  const req = (over: Partial<AdmissionRequest> = {}): AdmissionRequest => ({
    ...fields,
    channel: 'http',
    address: '198.18.0.10',
    onLink: true,
    ...over,
  });

  it('defaults to pending when nothing matches', () => {
    const { authorizer } = setup();
    const v = authorizer.decide(req());
    expect(v.kind).toBe('pending');
    if (v.kind === 'pending') expect(v.reason).toMatch(/approval/);
    expect(new Authorizer([], new ManualClock()).decide(req()).kind).toBe('pending');
  });

  it('accepts a verified token, naming it as the rule', () => {
    const { authorizer, clock } = setup();
    const t = token(clock);
    for (const onLink of [true, false]) {
      const v = authorizer.decide(req({ token: t, onLink, address: onLink ? '198.18.0.10' : '203.0.113.9' }));
      expect(v).toEqual({ kind: 'accept', rule: 'token', detail: `join token ${t.id}`, tokenId: t.id });
    }
  });

  it('accepts a token whose scope matches, and denies a role outside it with token_scope', () => {
    const { authorizer, clock } = setup();
    const t = token(clock, { roles: ['worker', 'gpu'] });
    expect(authorizer.decide(req({ token: t })).kind).toBe('accept');
    const v = authorizer.decide(req({ token: t, role: 'storage' }));
    expect(v.kind).toBe('deny');
    if (v.kind === 'deny') {
      expect(v.code).toBe('token_scope');
      expect(v.message).toContain('role storage');
      expect(v.message).not.toContain(t.secret);
    }
  });

  it('denies a cluster outside the token scope; an empty requested cluster is allowed', () => {
    const { authorizer, clock } = setup();
    const t = token(clock, { clusters: ['edge'] });
    expect(authorizer.decide(req({ token: t, cluster: 'core' }))).toMatchObject({ kind: 'deny', code: 'token_scope' });
    expect(authorizer.decide(req({ token: t, cluster: 'edge' })).kind).toBe('accept');
    expect(authorizer.decide(req({ token: t, cluster: '' })).kind).toBe('accept');
  });

  it("autoregister 'off': a valid token or install mode leaves the node pending", () => {
    const { authorizer, clock } = setup({ auto: 'off', install: { remote: true } });
    const t = token(clock);
    expect(authorizer.decide(req({ token: t })).kind).toBe('pending');
    expect(authorizer.decide(req()).kind).toBe('pending');
    expect(authorizer.decide(req({ onLink: false })).kind).toBe('pending');
  });

  it("autoregister 'off' still denies a token used outside its scope", () => {
    const { authorizer, clock } = setup({ auto: 'off' });
    const t = token(clock, { roles: ['gpu'] });
    expect(authorizer.decide(req({ token: t })).kind).toBe('deny');
  });

  it("install mode with autoregister 'local' accepts on-link nodes only", () => {
    const { authorizer } = setup({ install: {} });
    const on = authorizer.decide(req({ channel: 'mdns' }));
    expect(on).toMatchObject({ kind: 'accept', rule: 'install-mode' });
    if (on.kind === 'accept') expect(on.detail).toContain('on-link 198.18.0.10');
    const off = authorizer.decide(req({ onLink: false, address: '203.0.113.9' }));
    expect(off.kind).toBe('pending');
    if (off.kind === 'pending') expect(off.reason).toContain('203.0.113.9');
  });

  it('install mode --remote, or autoregister any, also accepts off-link nodes', () => {
    const remote = setup({ install: { remote: true } });
    const v = remote.authorizer.decide(req({ onLink: false, address: '203.0.113.9' }));
    expect(v).toMatchObject({ kind: 'accept', rule: 'install-mode' });
    if (v.kind === 'accept') expect(v.detail).toContain('remote 203.0.113.9');
    const any = setup({ auto: 'any', install: {} });
    expect(any.authorizer.decide(req({ onLink: false, address: '203.0.113.9' })).kind).toBe('accept');
  });

  it('install mode role and cluster filters', () => {
    const { authorizer } = setup({ install: { role: 'worker', cluster: 'edge' } });
    expect(authorizer.decide(req()).kind).toBe('accept');
    expect(authorizer.decide(req({ role: 'storage' })).kind).toBe('pending');
    expect(authorizer.decide(req({ cluster: 'core' })).kind).toBe('pending');
  });

  it('install mode ends at its deadline and at its count, by the clock', () => {
    const s = setup({ install: { max: 2, accepted: 1 } });
    expect(s.authorizer.decide(req()).kind).toBe('accept');
    s.setInstall({ on: true, since: s.clock.now(), until: s.clock.now() + 15 * MIN, max: 2, accepted: 2, remote: false });
    expect(s.authorizer.decide(req()).kind).toBe('pending');
    s.setInstall({ on: true, since: s.clock.now(), until: s.clock.now() + 15 * MIN, max: null, accepted: 0, remote: false });
    s.clock.advance(15 * MIN - 1);
    expect(s.authorizer.decide(req()).kind).toBe('accept');
    s.clock.advance(1);
    expect(s.authorizer.decide(req()).kind).toBe('pending');
  });

  it('reads autoregister at decision time', () => {
    const s = setup({ install: {} });
    expect(s.authorizer.decide(req()).kind).toBe('accept');
    s.setAuto('off');
    expect(s.authorizer.decide(req()).kind).toBe('pending');
  });

  it('a deny wins over an accept', () => {
    // Install mode would accept this on-link node; its out-of-scope token denies it.
    const { authorizer, clock } = setup({ install: {} });
    const t = token(clock, { roles: ['gpu'] });
    expect(authorizer.decide(req()).kind).toBe('accept');
    expect(authorizer.decide(req({ token: t }))).toMatchObject({ kind: 'deny', code: 'token_scope' });

    // Order of provisioners does not matter.
    const accept: Provisioner = { name: 'yes', evaluate: () => ({ kind: 'accept', rule: 'token', detail: 'x' }) };
    const deny: Provisioner = { name: 'no', evaluate: () => ({ kind: 'deny', code: 'token_scope', message: 'no' }) };
    expect(new Authorizer([accept, deny], clock).decide(req()).kind).toBe('deny');
    expect(new Authorizer([deny, accept], clock).decide(req()).kind).toBe('deny');
  });

  it('an accept wins over a pending, and a provisioner pending reason is kept', () => {
    const clock = new ManualClock();
    const pending: Provisioner = { name: 'wait', evaluate: () => ({ kind: 'pending', reason: 'because' }) };
    const accept: Provisioner = { name: 'yes', evaluate: () => ({ kind: 'accept', rule: 'install-mode', detail: 'x' }) };
    expect(new Authorizer([pending, accept], clock).decide(req()).kind).toBe('accept');
    expect(new Authorizer([pending], clock).decide(req())).toEqual({ kind: 'pending', reason: 'because' });
  });

  it('passes the clock time to provisioners', () => {
    const clock = new ManualClock(12345);
    let seen = -1;
    const spy: Provisioner = {
      name: 'spy',
      evaluate: (_r, now) => {
        seen = now;
        return undefined;
      },
    };
    new Authorizer([spy], clock).decide(req());
    expect(seen).toBe(12345);
  });
});
