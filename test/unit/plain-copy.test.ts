import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LevelRegistry } from '../../src/store/level.js';
import { plainCopy } from '../../src/store/common.js';

describe('plainCopy (the store hands out copies of its records)', () => {
  it('copies records deeply: a change to the copy never reaches the source, nor the reverse', () => {
    const src = {
      id: 't1',
      used: 3,
      roles: ['worker', 'edge'],
      expiresAt: null,
      revoked: false,
      description: undefined,
      nested: { list: [{ a: 1 }, { b: [2, 3] }] },
    };
    const c = plainCopy(src);
    expect(c).toStrictEqual(src);
    expect('description' in c).toBe(true);
    c.roles.push('x');
    c.nested.list[1]!.b!.push(4);
    c.used = 9;
    expect(src.roles).toEqual(['worker', 'edge']);
    expect(src.nested.list[1]!.b).toEqual([2, 3]);
    expect(src.used).toBe(3);
    src.nested.list[0]!.a = 7;
    expect(c.nested.list[0]!.a).toBe(1);
  });

  it('copies what is not plain data the way structuredClone does', () => {
    const when = new Date(1_700_000_000_000);
    const bytes = Buffer.from('abc');
    const c = plainCopy({ when, bytes: new Uint8Array(bytes), m: new Map([['k', 1]]) });
    expect(c.when).toBeInstanceOf(Date);
    expect(c.when).not.toBe(when);
    expect(c.when.getTime()).toBe(when.getTime());
    expect([...c.bytes]).toEqual([...bytes]);
    expect(c.m.get('k')).toBe(1);
  });

  it("a token read from the level store is the caller's own: changing it changes nothing stored", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-plain-copy-'));
    const reg = await LevelRegistry.open(path.join(dir, 'registry'));
    try {
      await reg.apply({
        putToken: {
          id: 'tok1',
          secret: 's'.repeat(43),
          createdAt: new Date(0).toISOString(),
          expiresAt: null,
          maxUses: null,
          used: 0,
          roles: ['worker'],
          clusters: [],
          revoked: false,
        },
      });
      const t = (await reg.getToken('tok1'))!;
      t.roles.push('admin');
      t.used = 99;
      const again = (await reg.getToken('tok1'))!;
      expect(again.roles).toEqual(['worker']);
      expect(again.used).toBe(0);
    } finally {
      await reg.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
