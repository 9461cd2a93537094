/**
 * The node name when machines share a host name (issue 9, item 7; DESIGN "Node names": cloned images
 * and Aos secondaries often do, and the second one to ask would get 409). `--name-from` derives a
 * name that is unique and stable for the machine:
 *   hostname    the short host name (the default, as before)
 *   machine-id  <host>-<first 6 characters of /etc/machine-id>
 *   key         <host>-<first 6 [a-z0-9] characters of the node key's fingerprint, lowercased>
 * Pure: the host name, machine id and key fingerprint are given by the caller (agent.ts reads them).
 */
import { MusterError } from '../common/errors.js';

export const NAME_FROM = ['hostname', 'machine-id', 'key'] as const;
export type NameFrom = (typeof NAME_FROM)[number];

/** Characters of the machine-specific suffix. */
export const SUFFIX_LENGTH = 6;
const LABEL_MAX = 63;

export interface NameSources {
  /** The machine's host name (`os.hostname()`; only its first label is used). */
  host: string;
  /** The contents of /etc/machine-id (for machine-id). */
  machineId?: string | undefined;
  /** The node key's fingerprint, base64url SHA-256 of its SPKI (for key). */
  keyFingerprint?: string | undefined;
}

/**
 * The host part as a DNS label: the first label of the host name, lowercased, with every character
 * outside [a-z0-9-] turned into '-', runs of '-' collapsed and '-' trimmed from both ends.
 */
export function hostLabel(host: string): string {
  return host
    .split('.')[0]!
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^-+|-+$/g, '');
}

/** `<host>-<suffix>`, the host part shortened so that the name is one DNS label (at most 63). */
function withSuffix(host: string, suffix: string): string {
  const h = host.slice(0, LABEL_MAX - 1 - suffix.length).replace(/-+$/, '');
  return h ? `${h}-${suffix}` : suffix;
}

export function deriveNodeName(from: NameFrom, s: NameSources): string {
  const host = hostLabel(s.host);
  if (from === 'hostname') {
    if (!host)
      throw new MusterError(
        'MUSTER_ERR_USAGE',
        `the host name ${JSON.stringify(s.host)} gives no node name: set --name`,
      );
    return host.slice(0, LABEL_MAX).replace(/-+$/, '');
  }
  if (from === 'machine-id') {
    const id = (s.machineId ?? '').trim().toLowerCase();
    // machine-id(5): 32 lower-case hexadecimal characters, set once per installation.
    if (!/^[0-9a-f]{32}$/.test(id)) {
      throw new MusterError(
        'MUSTER_ERR_USAGE',
        '--name-from machine-id: /etc/machine-id is missing or not 32 hexadecimal characters (an image must leave it empty or absent for systemd to set it on first boot); use --name-from key or --name',
      );
    }
    return withSuffix(host, id.slice(0, SUFFIX_LENGTH));
  }
  const chars = (s.keyFingerprint ?? '').toLowerCase().replace(/[^a-z0-9]/g, '');
  if (chars.length < SUFFIX_LENGTH)
    throw new MusterError('MUSTER_ERR_USAGE', '--name-from key: the node key has no fingerprint to use');
  return withSuffix(host, chars.slice(0, SUFFIX_LENGTH));
}
