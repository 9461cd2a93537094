/**
 * `muster discover`'s listing (issue 11, item 2; src/advertiser/listing.ts) and the registrar's `sw`
 * TXT key: what a heard advertisement turns into, when everything in it is untrusted (DESIGN
 * "Discovery"). Bad values, oversized ones and missing keys are listed as invalid with the reason,
 * never thrown; what reaches a terminal is printable and bounded.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import {
  decodeTxt,
  encodeTxt,
  LISTING_MAX,
  listRegistrars,
  registrarTxt,
  TxtEncodeError,
  validateRegistrarTxt,
  type Discovered,
  type RegistrarAdvert,
} from '../../src/advertiser/index.js';

const fp = (s: string): string => createHash('sha256').update(s).digest('base64url');
const CA_A = fp('ca-a');
const CA_B = fp('ca-b');

const advert = (over: Partial<RegistrarAdvert> = {}): RegistrarAdvert => ({
  v: 1,
  role: 'main',
  cluster: 'red',
  ca: CA_A,
  mode: 'closed',
  id: 'reg-a',
  sw: '1.2.3',
  ...over,
});

/** A heard `_muster._tcp` instance, TXT as the wire carries it (encoded, then decoded). */
function heard(
  txt: Record<string, string> | Map<string, string | null>,
  over: Partial<Discovered> = {},
): Discovered {
  const name = over.name ?? 'reg-a';
  const map = txt instanceof Map ? txt : decodeTxt(encodeTxt(txt));
  return {
    type: '_muster._tcp.local',
    name,
    fqdn: `${name}._muster._tcp.local`,
    host: `${name}.local`,
    port: 8443,
    addresses: ['198.18.0.2'],
    txt: map,
    rawTxt: [],
    referer: '198.18.0.2',
    ...over,
  };
}

describe('the sw key (the registrar software version)', () => {
  it('round-trips through TXT and is optional', () => {
    const a = advert();
    expect(validateRegistrarTxt(decodeTxt(encodeTxt(registrarTxt(a))))).toEqual({ ok: true, value: a });
    const { sw: _sw, ...old } = a;
    expect(validateRegistrarTxt(decodeTxt(encodeTxt(registrarTxt(old))))).toEqual({ ok: true, value: old });
  });

  it('a received sw that is not a version is dropped; the advertisement stays valid', () => {
    for (const bad of ['', 'x'.repeat(33), '1.0 beta', '-1', '1.0\u0007', '<script>']) {
      const txt = new Map<string, string | null>(Object.entries({ ...registrarTxt(advert()), sw: bad }));
      const r = validateRegistrarTxt(txt);
      expect(r.ok, bad).toBe(true);
      if (r.ok) expect(r.value.sw, bad).toBeUndefined();
    }
    const flag = new Map<string, string | null>(Object.entries(registrarTxt(advert())));
    flag.set('sw', null);
    expect(validateRegistrarTxt(flag)).toMatchObject({ ok: true, value: { id: 'reg-a' } });
  });

  it('the registrar never publishes one that is not a version', () => {
    expect(() => registrarTxt(advert({ sw: '1.0 beta' }))).toThrow(TxtEncodeError);
    expect(() => registrarTxt(advert({ sw: 'x'.repeat(33) }))).toThrow(TxtEncodeError);
  });
});

describe('listRegistrars', () => {
  it('lists a valid advertisement with every field discover prints', () => {
    const l = listRegistrars([heard(registrarTxt(advert({ mode: 'open' })))]);
    expect(l).toEqual({
      items: [
        {
          id: 'reg-a',
          instance: 'reg-a',
          role: 'main',
          cluster: 'red',
          ca: CA_A,
          mode: 'open',
          addresses: ['198.18.0.2'],
          port: 8443,
          v: 1,
          software: '1.2.3',
          heardFrom: '198.18.0.2',
        },
      ],
      invalid: [],
      omitted: 0,
    });
  });

  it('a tier registrar shows its role and cluster; without sw the software is null', () => {
    const { sw: _sw, ...noSw } = advert({ role: 'cluster', cluster: 'edge', id: 'tier-1' });
    const l = listRegistrars([heard(registrarTxt(noSw), { name: 'tier-1' })]);
    expect(l.items[0]).toMatchObject({ id: 'tier-1', role: 'cluster', cluster: 'edge', software: null });
  });

  it.each([
    ['a bad value', { mode: 'wide-open' }, /mode="wide-open" is not/],
    ['an oversized value', { cluster: 'c'.repeat(200) }, /cluster=.* is not a cluster name/],
    ['another version', { v: '2' }, /unsupported advertisement version v="2"/],
    ['a CA that is no sha256', { ca: 'not-a-fingerprint' }, /ca="not-a-fingerprint" is not/],
    ['a bad id', { id: 'Reg A' }, /id="Reg A"/],
  ])('%s is listed as invalid with the reason, never listed as a registrar', (_what, patch, reason) => {
    const txt = new Map<string, string | null>(Object.entries({ ...registrarTxt(advert()), ...patch }));
    const l = listRegistrars([heard(txt)]);
    expect(l.items).toEqual([]);
    expect(l.invalid).toEqual([
      { instance: 'reg-a', heardFrom: '198.18.0.2', reason: expect.stringMatching(reason) },
    ]);
  });

  it.each(['v', 'role', 'cluster', 'ca', 'mode'])('a missing %s is invalid, by name', (key) => {
    const txt = new Map<string, string | null>(Object.entries(registrarTxt(advert())));
    txt.delete(key);
    const l = listRegistrars([heard(txt)]);
    expect(l.items).toEqual([]);
    expect(l.invalid[0]!.reason).toContain(`missing ${key}`);
  });

  it('no port, no address, or a TXT that is not a map: invalid, never a crash', () => {
    const txt = registrarTxt(advert());
    const l = listRegistrars([
      heard(txt, { port: 0 }),
      heard(txt, { addresses: ['not-an-ip', ''], referer: 'nope' }),
      heard(txt, { txt: undefined as never }),
      heard(txt, { name: undefined as never, referer: undefined }),
    ]);
    expect(l.items).toHaveLength(1); // the last: valid TXT, the address from the A record
    expect(l.items[0]).toMatchObject({ instance: '', heardFrom: null });
    expect(l.invalid.map((i) => i.reason)).toEqual([
      'no valid port (SRV)',
      'no address',
      expect.stringContaining('missing v'),
    ]);
  });

  it('addresses are IPs only, IPv4 first, deduplicated; the packet source stands in when A/AAAA are missing', () => {
    const txt = registrarTxt(advert());
    const l = listRegistrars([
      heard(txt, { addresses: ['fe80::1', '198.18.0.2', '198.18.0.2', 'evil\nline'] }),
      heard(txt, { name: 'reg-b', addresses: [], referer: '198.18.0.9' }),
    ]);
    expect(l.items.map((i) => i.addresses)).toEqual([['198.18.0.2', 'fe80::1'], ['198.18.0.9']]);
  });

  it('an instance name with control characters reaches the terminal printable and bounded', () => {
    const { id: _id, ...noId } = advert();
    const name = '\u001b[2Jreg\nx' + 'y'.repeat(300);
    const l = listRegistrars([heard(registrarTxt(noId), { name })]);
    const shown = l.items[0]!.instance;
    expect(shown).toMatch(/^[\x20-\x7e]*…?$/);
    expect(shown.length).toBeLessThanOrEqual(80);
    expect(l.items[0]!.id).toBe(shown); // without a TXT id, the (cleaned) instance name is the id
  });

  it('--cluster keeps only that cluster; the listing is sorted by cluster, id, address', () => {
    const l = listRegistrars([
      heard(registrarTxt(advert({ id: 'z', cluster: 'red' })), { name: 'z' }),
      heard(registrarTxt(advert({ id: 'b', cluster: 'blue', ca: CA_B })), { name: 'b' }),
      heard(registrarTxt(advert({ id: 'a', cluster: 'red' })), { name: 'a', addresses: ['198.18.0.7'] }),
      heard(registrarTxt(advert({ id: 'a', cluster: 'red' })), { name: 'a', addresses: ['198.18.0.3'] }),
    ]);
    expect(l.items.map((i) => [i.cluster, i.id, i.addresses[0]])).toEqual([
      ['blue', 'b', '198.18.0.2'],
      ['red', 'a', '198.18.0.3'],
      ['red', 'a', '198.18.0.7'],
      ['red', 'z', '198.18.0.2'],
    ]);
    const red = listRegistrars(
      [heard(registrarTxt(advert({ id: 'b', cluster: 'blue', ca: CA_B })), { name: 'b' })],
      { cluster: 'red' },
    );
    expect(red.items).toEqual([]);
  });

  it('a flood is bounded: at most LISTING_MAX listed, the rest counted', () => {
    const many = Array.from({ length: LISTING_MAX + 10 }, (_, i) =>
      heard(registrarTxt(advert({ id: `r${i}` })), { name: `r${i}` }),
    );
    const l = listRegistrars(many);
    expect(l.items).toHaveLength(LISTING_MAX);
    expect(l.omitted).toBe(10);
  });
});
