// --name-from (issue 9, item 7; DESIGN "Node names"): a unique, stable name for machines that share
// a host name, derived from injected host name, machine id and key fingerprint (node/node-name.ts).
import { describe, expect, it } from 'vitest';
import { isLabel } from '../../src/common/names.js';
import { deriveNodeName, hostLabel } from '../../src/node/node-name.js';

const MACHINE_ID = '4f1c9a2be07d4e6a9c3b5d7e8f901234\n';
const FP = 'Ab-_9xQz7Kp2LmN4oP6qR8sT0uV1wX3yZ5aB7cD9eF0';

describe('deriveNodeName', () => {
  it('hostname: the short host name, lowercased (the default, as before)', () => {
    expect(deriveNodeName('hostname', { host: 'Edge-07.lab.example' })).toBe('edge-07');
  });

  it('machine-id: <host>-<first 6 characters of /etc/machine-id>', () => {
    expect(deriveNodeName('machine-id', { host: 'aos', machineId: MACHINE_ID })).toBe('aos-4f1c9a');
    // Two clones of one image: same host name, different machine ids, different names.
    const other = deriveNodeName('machine-id', { host: 'aos', machineId: 'ee'.repeat(16) });
    expect(other).toBe('aos-eeeeee');
  });

  it('key: <host>-<first 6 [a-z0-9] characters of the key fingerprint, lowercased>', () => {
    // "Ab-_9xQz..." lowercased, without '-' and '_': "ab9xqz".
    expect(deriveNodeName('key', { host: 'aos', keyFingerprint: FP })).toBe('aos-ab9xqz');
  });

  it('is stable: the same inputs give the same name', () => {
    const a = deriveNodeName('machine-id', { host: 'aos.local', machineId: MACHINE_ID });
    expect(deriveNodeName('machine-id', { host: 'AOS', machineId: MACHINE_ID.trim() })).toBe(a);
  });

  it('is always one DNS label of at most 63 characters, whatever the host name', () => {
    const long = 'h'.repeat(61) + '-x.example';
    for (const host of [long, 'My_Host!', '-edge-', 'a--b', 'x'.repeat(100)]) {
      for (const name of [
        deriveNodeName('machine-id', { host, machineId: MACHINE_ID }),
        deriveNodeName('key', { host, keyFingerprint: FP }),
      ]) {
        expect(isLabel(name), `${host} -> ${name}`).toBe(true);
        expect(name.length).toBeLessThanOrEqual(63);
      }
    }
    expect(deriveNodeName('machine-id', { host: long, machineId: MACHINE_ID })).toBe(
      'h'.repeat(56) + '-4f1c9a',
    );
    expect(deriveNodeName('key', { host: 'My_Host!', keyFingerprint: FP })).toBe('my-host-ab9xqz');
  });

  it('a host name with nothing usable: the suffix alone for derived names, a usage error for hostname', () => {
    expect(hostLabel('___')).toBe('');
    expect(deriveNodeName('machine-id', { host: '___', machineId: MACHINE_ID })).toBe('4f1c9a');
    expect(() => deriveNodeName('hostname', { host: '___' })).toThrow(/set --name/);
  });

  it('refuses a missing or malformed machine id, and a key with no fingerprint (usage errors)', () => {
    for (const machineId of [undefined, '', 'uninitialized\n', 'xyz']) {
      expect(() => deriveNodeName('machine-id', { host: 'aos', machineId })).toThrow(
        expect.objectContaining({ code: 'MUSTER_ERR_USAGE' }),
      );
    }
    expect(() => deriveNodeName('key', { host: 'aos' })).toThrow(
      expect.objectContaining({ code: 'MUSTER_ERR_USAGE' }),
    );
  });
});
