/**
 * The config file and the MUSTER_* variables (readConfigFile, loadConfig in src/common/config.ts;
 * CONVENTIONS 6: "an error names the bad key and the source it came from") under generated hostile
 * input (issue 8 "Prove it").
 *
 * Properties:
 * - any file content (arbitrary JSON, text, bytes) is read, or refused with MusterError
 *   MUSTER_ERR_CONFIG whose message starts with the file's path; never another error;
 * - a valid file with one key of one section edited (any value, `__proto__` and other nasty keys,
 *   duplicates, nested edits) is read, or refused naming that `section.key`;
 * - any value of any MUSTER_* variable is taken, or refused naming the variable; a secret's value
 *   (MUSTER_TOKEN) never appears in the message.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  camel,
  envName,
  FILE_SECTIONS,
  loadConfig,
  readConfigFile,
  settingsOf,
} from '../../src/common/config.js';
import { isMusterError } from '../../src/common/errors.js';
import {
  applyAll,
  fromPlain,
  mutation,
  nastyJson,
  nastyString,
  Obj,
  toJsonText,
  type Json,
} from './arbitraries.js';

const RUNS = Number(process.env.MUSTER_FUZZ_RUNS ?? 200);

let dir: string;
let file: string;
const counts = { files: 0, accepted: 0, variables: 0 };

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'muster-fuzz-config-'));
  file = path.join(dir, 'muster.json');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  console.log(
    `fuzz config: ${counts.files} files read (${counts.accepted} valid), ${counts.variables} variables`,
  );
});

/** A file every setting of which is valid. */
const VALID = {
  registrar: {
    stateDir: '/var/lib/muster-registrar',
    listen: '0.0.0.0:8443',
    cluster: 'lab',
    autoregister: 'local',
    interface: '198.18.0.1',
    mdns: 'off',
    adminSocket: '/run/muster/admin.sock',
    certLifetime: '90d',
    rateLimit: 600,
    nodeConfig: { '*': { ntp: 'pool.ntp.org' }, worker: { zone: 'a' } },
  },
  join: {
    registrar: 'https://10.0.0.1:8443',
    name: 'node-1',
    role: 'worker',
    cluster: '',
    caFingerprint: 'A'.repeat(43),
    stateDir: '/var/lib/muster',
    discoveryTimeout: '5s',
    mdns: 'on',
    onRegistered: 'systemctl start app',
    timeout: '10m',
    keyType: 'ec',
  },
  admin: { adminSocket: '/run/muster/admin.sock' },
};

/** Reads `text` as the config file: the values, or the error (which must be MUSTER_ERR_CONFIG). */
function read(text: string | Buffer): { ok: true } | { ok: false; message: string } {
  counts.files++;
  writeFileSync(file, text);
  try {
    readConfigFile(file);
    counts.accepted++;
    return { ok: true };
  } catch (err) {
    expect(isMusterError(err, 'MUSTER_ERR_CONFIG'), `not MUSTER_ERR_CONFIG: ${(err as Error)?.stack}`).toBe(
      true,
    );
    const message = (err as Error).message;
    expect(message.startsWith(file), message).toBe(true);
    return { ok: false, message };
  }
}

const isJson = (text: string): boolean => {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
};

describe('config file under hostile input', () => {
  it('the valid file is read, every section and key of it', () => {
    expect(read(JSON.stringify(VALID))).toEqual({ ok: true });
    const v = readConfigFile(file);
    expect(v.registrar.cluster).toBe('lab');
    expect(v.join['ca-fingerprint']).toBe('A'.repeat(43));
  });

  it('any content: read, or MUSTER_ERR_CONFIG naming the file', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          nastyJson.map(toJsonText),
          // Sections that exist, with arbitrary bodies: the parsers see every kind of value.
          fc
            .array(
              fc.tuple(fc.constantFrom(...FILE_SECTIONS, '__proto__', 'constructor', 'Registrar'), nastyJson),
              { maxLength: 3 },
            )
            .map((es) => toJsonText(new Obj(es))),
          fc.string({ maxLength: 200 }),
          fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
          fc.constantFrom(
            '',
            '\ufeff{}',
            '{}',
            '[]',
            'null',
            '{"registrar": null}',
            '{"join": []}',
            '{"__proto__": {}}',
          ),
        ),
        (text) => {
          read(text);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('one key of one section edited: read, or refused naming section.key', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...FILE_SECTIONS).chain((section) => {
          const keys = Object.keys(settingsOf(section)).map(camel);
          return fc.tuple(
            fc.constant(section),
            fc.oneof(
              fc.record({ op: fc.constant('set' as const), key: fc.constantFrom(...keys), value: nastyJson }),
              fc.record({
                op: fc.constant('duplicate' as const),
                key: fc.constantFrom(...keys),
                value: nastyJson,
              }),
              fc.record({ op: fc.constant('set' as const), key: nastyString, value: nastyJson }),
              fc.record({
                op: fc.constant('inner' as const),
                key: fc.constantFrom(...keys),
                mutation: mutation([]),
              }),
            ),
          );
        }),
        ([section, m]) => {
          const doc = fromPlain(VALID) as Obj;
          const edited = new Obj(
            doc.entries.map(([s, body]): [string, Json] => [s, s === section ? applyAll(body, [m]) : body]),
          );
          const text = toJsonText(edited);
          fc.pre(isJson(text)); // NaN and Infinity are written as themselves: not JSON, not this property
          const r = read(text);
          if (!r.ok) expect(r.message, r.message).toContain(`${file} ${section}.${m.key}`);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('a section replaced by any value: read, or refused naming the section', () => {
    fc.assert(
      fc.property(fc.constantFrom(...FILE_SECTIONS), nastyJson, (section, value) => {
        const doc = fromPlain(VALID) as Obj;
        const edited = new Obj(
          doc.entries.map(([s, body]): [string, Json] => [s, s === section ? value : body]),
        );
        const text = toJsonText(edited);
        fc.pre(isJson(text));
        const r = read(text);
        if (!r.ok) expect(r.message, r.message).toContain(`${file} ${section}`);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('MUSTER_* variables under hostile input', () => {
  const absent = (): string => path.join(dir, 'absent.json');

  it('any value of any variable: taken, or MUSTER_ERR_CONFIG naming the variable; secrets never echoed', () => {
    const vars = FILE_SECTIONS.flatMap((section) =>
      Object.entries(settingsOf(section)).map(([name, s]) => ({ section, name, secret: !!s.secret })),
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...vars),
        fc.oneof(
          nastyString.filter((s) => !s.includes('\u0000')),
          nastyJson.map(toJsonText),
          fc.constantFrom('secret-token-value-0123456789abcdef', `abcdef.${'s'.repeat(400)}`),
        ),
        (v, value) => {
          counts.variables++;
          const variable = envName(v.name);
          try {
            loadConfig(v.section, { file: absent(), env: { [variable]: value } });
          } catch (err) {
            expect(isMusterError(err, 'MUSTER_ERR_CONFIG'), (err as Error)?.stack).toBe(true);
            const message = (err as Error).message;
            expect(message).toContain(`environment ${variable}`);
            if (v.secret && value.length >= 8) expect(message).not.toContain(value);
          }
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });
});
