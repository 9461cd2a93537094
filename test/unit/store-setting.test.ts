/** The --store setting (issue 11, item 3): level, or the etcd members and an optional key prefix. */
import { describe, expect, it } from 'vitest';
import { isMusterError } from '../../src/common/errors.js';
import { parseSetting, SETTINGS, storeEndpoints } from '../../src/common/config.js';

const store = SETTINGS.registrar.store;
const parse = (v: unknown) => parseSetting(store, v, 'MUSTER_STORE', 'MUSTER_ERR_CONFIG');

describe('--store', () => {
  it('is level unless set', () => {
    expect(store.default).toBe('level');
    expect(parse('level')).toBe('level');
  });

  it('takes etcd members, with an optional key prefix', () => {
    expect(parse('etcd://10.0.0.5:2379')).toBe('etcd://10.0.0.5:2379');
    expect(storeEndpoints('etcd://10.0.0.5:2379,etcd-b.lan:2379,[fd00::1]:2379')).toEqual({
      endpoints: ['10.0.0.5:2379', 'etcd-b.lan:2379', '[fd00::1]:2379'],
    });
    expect(storeEndpoints('etcd://a:2379/lab')).toEqual({ endpoints: ['a:2379'], prefix: '/lab/' });
    expect(storeEndpoints('etcd://a:2379/site-1/lab/')).toEqual({
      endpoints: ['a:2379'],
      prefix: '/site-1/lab/',
    });
    expect(storeEndpoints('etcd://a:2379/')).toEqual({ endpoints: ['a:2379'] });
  });

  it('refuses anything else, naming the source and the part that is wrong', () => {
    for (const [v, says] of [
      ['memory', /level or etcd:\/\//],
      ['etcds://a:2379', /level or etcd:\/\//],
      ['http://a:2379', /level or etcd:\/\//],
      ['etcd://a', /"a" where an etcd member HOST:PORT belongs/],
      ['etcd://a:2379,', /"" where an etcd member/],
      ['etcd://a:0', /"a:0" where/],
      ['etcd://a:70000', /"a:70000" where/],
      ['etcd://a:2379/x y', /key prefix/],
      ['etcd://a:2379//x', /key prefix/],
      [2379, /level or etcd:\/\//],
    ] as const) {
      let err: unknown;
      try {
        parse(v);
      } catch (e) {
        err = e;
      }
      expect(isMusterError(err, 'MUSTER_ERR_CONFIG')).toBe(true);
      expect((err as Error).message).toMatch(/^MUSTER_STORE /);
      expect((err as Error).message).toMatch(says);
    }
  });
});
