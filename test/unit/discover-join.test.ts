/**
 * `muster join`'s choice among registrars, end to end in process (issue 11, item 2): two real
 * registrars (real level, HTTPS on 127.0.0.1:0, each with its own CA, different clusters) and a fake
 * mDNS stack that "hears" both (no packet is sent). The injected `choose` stands for the person at
 * the terminal: the node joins the one chosen, pinned to its CA and cluster; a cancelled choice ends
 * the run having asked neither registrar anything. The real pseudo-terminal is in
 * test/lan/discover.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import type { Discovered, Mdns } from '../../src/advertiser/index.js';
import { isMusterError } from '../../src/common/errors.js';
import type { AskChoice } from '../../src/node/choice.js';
import {
  joinNode,
  opensslVerify,
  startTestRegistrar,
  tempDir,
  type TestRegistrar,
} from '../helpers/registrar.js';

let t: ReturnType<typeof tempDir>;
let red: TestRegistrar;
let blue: TestRegistrar;

beforeEach(async () => {
  t = tempDir('muster-discover-join-');
  red = await startTestRegistrar(path.join(t.dir, 'red'), { mdns: false, cluster: 'red' });
  blue = await startTestRegistrar(path.join(t.dir, 'blue'), { mdns: false, cluster: 'blue' });
});
afterEach(async () => {
  await red?.close();
  await blue?.close();
  t.cleanup();
});

/** An unpinned token of `reg` (`<id>.<secret>`): it must not settle which CA to trust. */
const tokenOf = async (reg: TestRegistrar): Promise<string> =>
  (await reg.admin.request<{ token: string }>('POST', '/v1/admin/tokens', {})).token
    .split('.')
    .slice(0, 2)
    .join('.');
const joinsTo = (reg: TestRegistrar): Promise<number> => reg.metrics.requestCount('POST', '/v1/join');

function advert(reg: TestRegistrar, cluster: string): Discovered {
  return {
    type: '_muster._tcp.local',
    name: reg.id,
    fqdn: `${reg.id}._muster._tcp.local`,
    host: `${reg.id}.local`,
    port: reg.port,
    addresses: ['127.0.0.1'],
    txt: new Map([
      ['v', '1'],
      ['role', 'main'],
      ['cluster', cluster],
      ['ca', reg.caFingerprint],
      ['mode', 'token'],
      ['id', reg.id],
    ]),
    rawTxt: [],
  };
}

/** An mDNS stack that hears `adverts` and sends nothing. */
const hearing =
  (adverts: Discovered[]): (() => Mdns) =>
  () => ({
    ready: async () => undefined,
    publish: () => ({ stop: async () => undefined }) as never,
    browse: () => ({ stop: () => undefined, list: () => adverts }) as never,
    close: async () => undefined,
  });

/** `muster join` with no registrar named, its mDNS hearing both registrars (in process). */
const joinHearingBoth = (dir: string, over: Parameters<typeof joinNode>[2]) =>
  joinNode({ url: '' }, dir, {
    registrarUrl: undefined as never,
    mdns: true,
    discoveryTimeoutMs: 50,
    timeoutMs: 20_000,
    createMdns: hearing([advert(red, 'red'), advert(blue, 'blue')]),
    ...over,
  });

describe('join: the choice at the terminal', () => {
  it('joins the registrar chosen, pinned to its CA and cluster; the other is asked nothing', async () => {
    const token = await tokenOf(blue);
    const choose = vi.fn<AskChoice>(async (choices) => choices.findIndex((c) => c.cluster === 'blue'));
    const dir = path.join(t.dir, 'node');
    const r = await joinHearingBoth(dir, {
      name: 'chosen-1',
      token,
      choose,
    });
    expect(r.status).toBe('registered');
    expect(choose).toHaveBeenCalledTimes(1);
    expect(choose.mock.calls[0]![0].map((c) => c.cluster)).toEqual(['red', 'blue']);
    expect(opensslVerify(path.join(dir, 'ca.crt'), path.join(dir, 'node.crt')).ok).toBe(true);
    expect(r.fingerprint).toBe(blue.caFingerprint);
    const lines = r.logs.lines();
    expect(
      lines.find((l) => l.msg === 'registrar chosen at the terminal: joining it, its CA pinned for this run'),
    ).toMatchObject({ registrar: blue.id, ca: blue.caFingerprint, cluster: 'blue' });
    // Verified by the pin the choice made, not trusted on first use.
    expect(lines.find((l) => l.msg === 'registrar verified')).toMatchObject({
      trust: 'pinned',
      pinnedBy: 'the choice at the terminal',
    });
    expect(r.logs.text()).not.toContain('TRUST ON FIRST USE');
    expect(await joinsTo(red)).toBe(0);
  });

  it('cancelled: MUSTER_ERR_NOT_CHOSEN at once, neither registrar asked, no credentials', async () => {
    const choose = vi.fn<AskChoice>(async () => undefined);
    const dir = path.join(t.dir, 'node');
    const err = await joinHearingBoth(dir, {
      name: 'cancel-1',
      token: await tokenOf(blue),
      choose,
    }).then(
      () => new Error('the join succeeded'),
      (e: unknown) => e as Error,
    );
    expect(isMusterError(err, 'MUSTER_ERR_NOT_CHOSEN'), String(err)).toBe(true);
    expect(choose).toHaveBeenCalledTimes(1); // not asked again and again: the run ended
    expect(err.message).toContain(red.caFingerprint);
    expect(err.message).toContain(blue.caFingerprint);
    expect(readdirSync(dir)).toEqual(['node.key']);
    expect(await joinsTo(red)).toBe(0);
    expect(await joinsTo(blue)).toBe(0);
  });

  it('--cluster settles it: no prompt', async () => {
    const choose = vi.fn<AskChoice>(async () => 0);
    const r = await joinHearingBoth(path.join(t.dir, 'node'), {
      name: 'blue-1',
      cluster: 'blue',
      token: await tokenOf(blue),
      choose,
    });
    expect(r.status).toBe('registered');
    expect(r.fingerprint).toBe(blue.caFingerprint);
    expect(choose).not.toHaveBeenCalled();
  });
});
