/**
 * The node's credentials on disk (DESIGN "The credentials bundle": temp file, fsync, rename; README
 * "Setting up nodes in an image"): writeBundle writes the whole set private (0600), chain.pem only
 * when there are intermediates, drops the ack of an earlier registration, leaves no temp file, and
 * bundle.json, which marks the set complete, is replaced last: when another file of the set cannot be
 * replaced, the old bundle.json is still there and no temp file is left. loadOrCreateKey makes a key
 * file that others could read private, also when the caller hands it the key it already parsed.
 * markAcknowledged creates its marker 0600 and replaces a link planted in its place, never writing
 * through it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { memoryLogger } from '../../src/common/log.js';
import type { Bundle } from '../../src/common/proof.js';
import { loadOrCreateKey, markAcknowledged, NodeFiles, writeBundle } from '../../src/node/node-files.js';
import { tempDir } from '../helpers/registrar.js';

const bundle = (chain: string[], node = 'web-1'): Bundle => ({
  v: 1,
  cluster: 'lab',
  node,
  role: 'web',
  certificate: 'CERT\n',
  chain,
  ca: 'CA\n',
  registrar: { url: 'https://r', id: 'r1' },
  config: { ntp: 'pool.example' },
  issuedAt: '2026-01-01T00:00:00Z',
});

let t: ReturnType<typeof tempDir>;
let dir: string;
beforeEach(() => {
  t = tempDir();
  dir = path.join(t.dir, 'node');
  mkdirSync(dir, { mode: 0o700 });
});
afterEach(() => t.cleanup());

const read = (f: string): string => readFileSync(path.join(dir, f), 'utf8');
const mode = (f: string): number => statSync(path.join(dir, f)).mode & 0o777;

describe('writeBundle', () => {
  it('writes the set 0600, drops the old ack and a stale chain.pem, and leaves no temp file', async () => {
    writeFileSync(path.join(dir, 'acknowledged'), 'earlier\n');
    writeFileSync(path.join(dir, 'chain.pem'), 'stale\n');
    const b = bundle([]);
    await writeBundle(new NodeFiles(dir), b);
    expect(readdirSync(dir).sort()).toEqual(['bundle.json', 'ca.crt', 'config.json', 'node.crt']);
    expect(read('ca.crt')).toBe('CA\n');
    expect(read('node.crt')).toBe('CERT\n');
    expect(JSON.parse(read('config.json'))).toEqual({ ntp: 'pool.example' });
    expect(JSON.parse(read('bundle.json'))).toEqual(b);
    for (const f of readdirSync(dir)) expect(mode(f), f).toBe(0o600);
  });

  it('writes chain.pem when the bundle has intermediates', async () => {
    await writeBundle(new NodeFiles(dir), bundle(['INT1\n', 'INT2\n']));
    expect(read('chain.pem')).toBe('INT1\nINT2\n');
    expect(mode('chain.pem')).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('keeps the old bundle.json and leaves no temp file when another file cannot be replaced', async () => {
    const files = new NodeFiles(dir);
    await writeBundle(files, bundle([], 'web-1'));
    const before = read('bundle.json');
    // A directory where config.json should be: its rename fails (EISDIR).
    rmSync(path.join(dir, 'config.json'));
    mkdirSync(path.join(dir, 'config.json'));
    await expect(writeBundle(files, bundle([], 'web-2'))).rejects.toThrow();
    expect(read('bundle.json')).toBe(before);
    expect(JSON.parse(read('bundle.json')).node).toBe('web-1');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('loadOrCreateKey', () => {
  const pem = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();

  for (const given of [false, true]) {
    it(`makes a node.key that others can read 0600 and warns (${given ? 'key given' : 'key read'})`, async () => {
      writeFileSync(path.join(dir, 'node.key'), pem);
      chmodSync(path.join(dir, 'node.key'), 0o644);
      const m = memoryLogger();
      const existing = given ? createPrivateKey(pem) : undefined;
      const key = await loadOrCreateKey(new NodeFiles(dir), 'ec', m.log, existing);
      if (existing) expect(key).toBe(existing);
      expect(key.export({ type: 'pkcs8', format: 'pem' })).toBe(pem);
      expect(mode('node.key')).toBe(0o600);
      expect(m.lines().map((l) => l.msg)).toEqual(['node key was readable by others: set to 0600']);
      expect(read('node.key')).toBe(pem);
    });
  }

  it('creates the key 0600 when there is none', async () => {
    const m = memoryLogger();
    const key = await loadOrCreateKey(new NodeFiles(dir), 'ec', m.log);
    expect(mode('node.key')).toBe(0o600);
    expect(createPrivateKey(read('node.key')).equals(key)).toBe(true);
    expect(m.lines().map((l) => l.msg)).toEqual(['created the node key']);
  });
});

describe('markAcknowledged', () => {
  it('creates the marker 0600 with the time in it, and replaces an older one', async () => {
    await markAcknowledged(new NodeFiles(dir), '2026-11-30T12:00:00.000Z\n');
    expect(read('acknowledged')).toBe('2026-11-30T12:00:00.000Z\n');
    expect(mode('acknowledged')).toBe(0o600);
    chmodSync(path.join(dir, 'acknowledged'), 0o644);
    await markAcknowledged(new NodeFiles(dir), 'later\n');
    expect(read('acknowledged')).toBe('later\n');
    expect(mode('acknowledged')).toBe(0o600);
  });

  it('replaces a link planted in its place without writing through it', async () => {
    const target = path.join(t.dir, 'elsewhere');
    writeFileSync(target, 'untouched\n');
    symlinkSync(target, path.join(dir, 'acknowledged'));
    await markAcknowledged(new NodeFiles(dir), 'now\n');
    expect(readFileSync(target, 'utf8')).toBe('untouched\n');
    expect(lstatSync(path.join(dir, 'acknowledged')).isFile()).toBe(true);
    expect(read('acknowledged')).toBe('now\n');
    expect(mode('acknowledged')).toBe(0o600);
  });
});
