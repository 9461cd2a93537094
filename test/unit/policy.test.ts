// Admission policy (src/registrar/policy.ts, DESIGN "Admission policy") on a ManualClock (CONVENTIONS 2, 4).
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { joinProofMac, PROOF_WINDOW_S } from '../../src/common/proof.js';
import {
  checkProof,
  describeInstallMode,
  effectiveInstallMode,
  INSTALL_MODE_OFF,
  newToken,
  tokenState,
  tokenView,
  type InstallModeState,
  type Proof,
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
