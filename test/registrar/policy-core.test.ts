// The policy hook and singleton roles in the exactly-once core (issue 10, items 1 and 5): the real
// service over the memory store on a ManualClock, with real `#!/bin/sh` hooks. Deny wins; a bad proof
// never reaches the hook's accept; a refusal writes nothing.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { VACANCY_TTL_MS } from '../../src/registrar/admission/singleton.js';
import { scriptDir } from '../helpers/sh-script.js';
import { code, core, FAR, node, ON_LINK, refusedOnly, settle, storeState, type Core } from './harness.js';

const scripts = scriptDir('muster-policy-');
const { dir, script } = scripts;
afterAll(scripts.cleanup);

let env: Core | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

/** The harness's core, closed after the test. */
async function start(o: Parameters<typeof core>[0] = {}): Promise<Core> {
  env = await core(o);
  return env;
}

/** A core whose policy hook is a `#!/bin/sh` script with this body. */
const hooked = (body: string): Promise<Core> =>
  start({ service: { policyExec: script(body), policyTimeoutMs: 10_000 } });

describe('policy hook in the core', () => {
  it('a hook that rejects refuses a node a token admits (403 policy_denied) and writes nothing', async () => {
    const e = await hooked('echo "asset 4711 is retired"; exit 20');
    const tok = await e.token();
    const before = await storeState(e.registry);
    const n1 = node('n1');
    let err: unknown;
    try {
      await e.svc.join(n1.request({ token: tok, clock: e.clock }), FAR);
    } catch (x) {
      err = x;
    }
    expect(err).toMatchObject({ code: 'policy_denied', status: 403 });
    // The node is told little; the operator's log has the hook's reason.
    expect((err as Error).message).not.toContain('4711');
    expect(await refusedOnly(e.registry, before, ['policy'])).toEqual(before);
    expect((await e.svc.operator.listTokens())[0]).toMatchObject({ used: 0 });
    expect(e.logs.text()).toContain('policy hook: asset 4711 is retired');
  });

  it('a hook that accepts admits a node that would wait: rule policy, the reason as detail', async () => {
    const e = await hooked('echo "in the inventory (rack 7)"; exit 0');
    const n1 = node('n1');
    const out = await e.svc.join(n1.request({ clock: e.clock }), FAR);
    expect(out.status).toBe(201);
    expect(await e.registry.getNode('n1')).toMatchObject({
      state: 'issued',
      key: n1.fp,
      decision: { rule: 'policy', detail: 'in the inventory (rack 7)' },
    });
    // No install-mode slot or token was consumed.
    expect(await e.registry.getInstallMode()).toMatchObject({ on: false });
    const shown = await e.svc.operator.showNode('n1');
    expect(shown.node.decision).toMatchObject({ rule: 'policy', detail: 'in the inventory (rack 7)' });
  });

  it('a hook that accepts does not admit a tier registrar (role cluster): it waits for the operator', async () => {
    const e = await hooked('echo "in the inventory"; exit 0');
    const out = await e.svc.join(node('t1').request({ role: 'cluster', clock: e.clock }), FAR);
    expect(out).toMatchObject({ status: 202, state: 'pending' });
    expect(await e.registry.getNode('t1')).toMatchObject({ state: 'pending' });
  });

  it('a bad proof is refused even when the hook would accept, and the hook never runs', async () => {
    const ran = path.join(dir, 'bad-proof-ran');
    const e = await hooked(`touch ${ran}; exit 0`);
    const tok = await e.token();
    const before = await storeState(e.registry);
    const forged = { ...tok, secret: tok.secret.replace(/^./, (ch) => (ch === 'a' ? 'b' : 'a')) };
    expect(await code(e.svc.join(node('n1').request({ token: forged, clock: e.clock }), FAR))).toBe(
      'bad_proof',
    );
    expect(await refusedOnly(e.registry, before, ['bad_proof'], { badProofs: { [tok.id]: 1 } })).toEqual(
      before,
    );
    expect(() => readFileSync(ran)).toThrow();
  });

  it('a hook that says wait holds a token join pending, with its reason; the stdin names the token id', async () => {
    const seen = path.join(dir, 'pending-stdin.json');
    const e = await hooked(`cat > ${seen}; echo "not racked yet"; exit 10`);
    const tok = await e.token();
    const n1 = node('n1');
    const out = await e.svc.join(n1.request({ token: tok, clock: e.clock }), ON_LINK);
    expect(out).toMatchObject({
      status: 202,
      state: 'pending',
      reason: 'policy hook: not racked yet: waiting for approval',
    });
    expect(await e.registry.getNode('n1')).toMatchObject({
      state: 'pending',
      pendingReason: 'policy hook: not racked yet: waiting for approval',
    });
    expect((await e.svc.operator.listTokens())[0]).toMatchObject({ used: 0 });
    const req = JSON.parse(readFileSync(seen, 'utf8'));
    expect(req).toEqual({
      v: 1,
      name: 'n1',
      role: 'worker',
      cluster: '',
      key: n1.fp,
      channel: 'https',
      address: ON_LINK,
      onLink: true,
      heard: false,
      tokenId: tok.id,
      builtin: { verdict: 'accept', rule: 'token', reason: expect.any(String) },
    });
    // The secret and the proof never reach the hook.
    expect(readFileSync(seen, 'utf8')).not.toContain(tok.secret);
    expect(readFileSync(seen, 'utf8')).not.toContain('hmac');
    // The operator can still approve it.
    await e.svc.operator.approve('n1', 'alice');
    expect(await e.registry.getNode('n1')).toMatchObject({ state: 'issued' });
  });

  it('a hook that crashes leaves a token join pending (default-deny), with the failure as reason', async () => {
    const e = await hooked('exit 3');
    const tok = await e.token();
    const out = await e.svc.join(node('n1').request({ token: tok, clock: e.clock }), FAR);
    expect(out).toMatchObject({ status: 202, reason: 'policy hook failed (exit 3): waiting for approval' });
    expect(e.logs.text()).toContain('policy hook gave no answer');
  });
});

describe('singleton roles', () => {
  it('a second node of a singleton role waits with the reason; approval admits it; after removal a token admits the next', async () => {
    const e = await start({ service: { singletonRoles: ['walrus'] } });
    const tok = await e.token();
    const w1 = node('w1');
    expect((await e.svc.join(w1.request({ role: 'walrus', token: tok, clock: e.clock }), FAR)).status).toBe(
      201,
    );
    // Other roles are not affected.
    expect((await e.svc.join(node('x1').request({ token: tok, clock: e.clock }), FAR)).status).toBe(201);

    const w2 = node('w2');
    const out = await e.svc.join(w2.request({ role: 'walrus', token: tok, clock: e.clock }), FAR);
    expect(out).toMatchObject({
      status: 202,
      reason: 'role walrus is a singleton held by node w1: waiting for approval',
    });
    expect(await e.registry.getNode('w2')).toMatchObject({
      state: 'pending',
      pendingReason: 'role walrus is a singleton held by node w1: waiting for approval',
    });
    // Install mode does not lift the hold either.
    await e.svc.operator.installModeOn({ forMs: 60_000, max: null, remote: true });
    const w3 = node('w3');
    expect((await e.svc.join(w3.request({ role: 'walrus', clock: e.clock }), ON_LINK)).status).toBe(202);
    await e.svc.operator.installModeOff();
    // The operator's approval is the escape.
    await e.svc.operator.approve('w2', 'alice');
    expect(await e.registry.getNode('w2')).toMatchObject({ state: 'issued' });

    // Once the holders are removed, the next node of the role is admitted by its token as usual.
    await e.svc.operator.remove('w1', 'alice');
    await e.svc.operator.remove('w2', 'alice');
    await e.svc.operator.reject('w3', 'alice');
    const w4 = node('w4');
    expect((await e.svc.join(w4.request({ role: 'walrus', token: tok, clock: e.clock }), FAR)).status).toBe(
      201,
    );
    expect(await e.registry.getNode('w4')).toMatchObject({ state: 'issued', decision: { rule: 'token' } });
  });

  it('two concurrent token joins of a singleton role: exactly one is admitted', async () => {
    const e = await start({ service: { singletonRoles: ['walrus'] } });
    const tok = await e.token();
    const outs = await Promise.all(
      ['a1', 'a2', 'a3'].map((name) =>
        e.svc.join(node(name).request({ role: 'walrus', token: tok, clock: e.clock }), FAR),
      ),
    );
    expect(outs.map((o) => o.status).sort()).toEqual([201, 202, 202]);
  });

  it('the same node re-joining (its own role) is not held by itself', async () => {
    const e = await start({ service: { singletonRoles: ['walrus'] } });
    const tok = await e.token();
    const w1 = node('w1');
    expect((await e.svc.join(w1.request({ role: 'walrus', token: tok, clock: e.clock }), FAR)).status).toBe(
      201,
    );
    expect((await e.svc.join(w1.request({ role: 'walrus', token: tok, clock: e.clock }), FAR)).status).toBe(
      200,
    );
  });

  it('a vacant role costs one scan, not one per join; a node admitted meanwhile ends the vacancy at once', async () => {
    const e = await start({ service: { singletonRoles: ['walrus'] } });
    let scans = 0;
    const list = e.registry.listNodes.bind(e.registry);
    e.registry.listNodes = (opts) => {
      scans++;
      return list(opts);
    };
    const n1 = node('n1');
    // No token: n1 waits (the role is vacant, that is not why); asking again costs no scan.
    expect((await e.svc.join(n1.request({ role: 'walrus', clock: e.clock }), FAR)).status).toBe(202);
    const first = scans;
    expect(first).toBeGreaterThan(0);
    expect((await e.svc.join(n1.request({ role: 'walrus', clock: e.clock }), FAR)).status).toBe(202);
    expect(scans).toBe(first);
    e.clock.advance(VACANCY_TTL_MS);
    expect((await e.svc.join(n1.request({ role: 'walrus', clock: e.clock }), FAR)).status).toBe(202);
    expect(scans).toBe(2 * first);
    // w1 is admitted while the vacancy is remembered; w2 right after it (before the store's event
    // arrives) is held.
    const tok = await e.token();
    const w1 = e.svc.join(node('w1').request({ role: 'walrus', token: tok, clock: e.clock }), FAR);
    const w2 = e.svc.join(node('w2').request({ role: 'walrus', token: tok, clock: e.clock }), FAR);
    expect((await w1).status).toBe(201);
    expect(await w2).toMatchObject({
      status: 202,
      reason: 'role walrus is a singleton held by node w1: waiting for approval',
    });
    expect(scans).toBe(2 * first);
  });

  it('a holder asking again and refused still holds the role for the others', async () => {
    const e = await start({ service: { singletonRoles: ['walrus'] }, certLifetimeMs: 3_600_000 });
    const tok = await e.token();
    const w1 = node('w1');
    expect((await e.svc.join(w1.request({ role: 'walrus', token: tok, clock: e.clock }), FAR)).status).toBe(
      201,
    );
    await settle(); // the store's events have arrived: nothing is remembered but what a scan finds
    e.clock.advance(2 * 3_600_000);
    // Its certificate expired: w1 asks again, with a token for another role (refused: nothing written).
    const other = await e.token({ roles: ['other'] });
    const before = await storeState(e.registry);
    expect(await code(e.svc.join(w1.request({ role: 'walrus', token: other, clock: e.clock }), FAR))).toBe(
      'token_scope',
    );
    expect(await refusedOnly(e.registry, before, ['token_scope'])).toEqual(before);
    expect(await e.registry.getNode('w1')).toMatchObject({ state: 'issued' });
    const fresh = await e.token();
    expect(
      await e.svc.join(node('w2').request({ role: 'walrus', token: fresh, clock: e.clock }), FAR),
    ).toMatchObject({
      status: 202,
      reason: 'role walrus is a singleton held by node w1: waiting for approval',
    });
  });
});
