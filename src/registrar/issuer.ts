/**
 * The issuer: turns an accepted node record into a signed certificate (serial allocated from the
 * store, never reused) and a node record into its credentials bundle (DESIGN "The credentials
 * bundle"). It writes nothing: the caller lands the certificate with the decision in one Change.
 */
import type { Clock } from '../common/clock.js';
import { MusterError } from '../common/errors.js';
import { bundleMac, type Bundle } from '../common/proof.js';
import { issueCertificateAsync, makeSerial, serialHex, toPem } from '../common/x509.js';
import type { Registry, SerialRecord } from '../store/registry.js';
import type { NodeRecord } from '../store/types.js';
import type { CertificateAuthority } from './ca.js';
import { bundleConfig } from './groups.js';

export const DEFAULT_CERT_LIFETIME_MS = 90 * 86_400_000;

/**
 * The reserved role of tier registrars (issue 11, seed 004: cluster controllers register with the
 * main). A node admitted with it gets an intermediate CA certificate (pathLen 0), not a node
 * certificate; admission only lets it in by a token scoped to it, an install-mode window opened for
 * it, or the operator (admission/token.ts, admission/install-mode.ts).
 */
export const TIER_ROLE = 'cluster';

export interface IssuerOptions {
  ca: CertificateAuthority;
  registry: Registry;
  clock: Clock;
  cluster: string;
  registrarId: string;
  /** The registrar's own URL (known once it listens). */
  url: () => string;
  certLifetimeMs?: number;
  /** Lifetimes by role, over certLifetimeMs (issue 9, item 1: e.g. a short-lived 24 h mode for one role). */
  roleLifetimesMs?: Record<string, number>;
  /** String values written to nodes' config, for every node ('*') and per role. */
  nodeConfig?: Record<string, Record<string, string>>;
}

export class Issuer {
  private retiredBy: MusterError | undefined;

  constructor(private readonly o: IssuerOptions) {}

  /**
   * Stops issuing for good (a tier registrar whose parent removed it: its intermediate is revoked,
   * so whatever it signs would not verify). Every later certify throws `err`.
   */
  retire(err: MusterError): void {
    this.retiredBy = err;
  }

  get retired(): MusterError | undefined {
    return this.retiredBy;
  }

  get caPem(): string {
    return this.o.ca.certPem;
  }

  get caFingerprint(): string {
    return this.o.ca.fingerprint;
  }

  /** The certificate lifetime of a role: its own, else the registrar's (DESIGN "Renewal"). */
  lifetimeMs(role: string): number {
    return this.o.roleLifetimesMs?.[role] ?? this.o.certLifetimeMs ?? DEFAULT_CERT_LIFETIME_MS;
  }

  /** Signs the certificate of an accepted node; returns the issued record and the serial to store with it. */
  async certify(rec: NodeRecord): Promise<{ next: NodeRecord; serial: SerialRecord }> {
    if (this.retiredBy) throw this.retiredBy;
    // An intermediate (pathLen 0) may not make another CA: a tier has no tiers below it.
    const tier = rec.role === TIER_ROLE;
    if (tier && (this.o.ca.chain ?? []).length > 0) {
      throw new MusterError(
        'forbidden_role',
        `role ${TIER_ROLE} is reserved for tier registrars, which register with the main registrar, not with a tier`,
      );
    }
    const now = this.o.clock.now();
    const counter = await this.o.registry.allocateSerial();
    const serial = makeSerial(counter);
    const hex = serialHex(serial);
    const notAfter = new Date(now + this.lifetimeMs(rec.role));
    const der = await issueCertificateAsync(this.o.ca.issuer, {
      serial,
      subject: { cn: rec.name, o: this.o.cluster, ou: rec.role },
      spki: Buffer.from(rec.spki, 'base64'),
      notBefore: new Date(now - 5 * 60_000), // tolerate a node clock a little behind
      notAfter,
      // A tier's intermediate CA (issue 11): CN = the tier's name, pathLen 0, no SAN (it is no server).
      ...(tier
        ? { usage: 'ca' as const, pathLen: 0 }
        : { dnsNames: [rec.name], usage: 'client-server' as const }),
      // Where `openssl verify -crl_check` and other relying parties find this CA's revocations.
      crlUrl: `${this.o.url()}/v1/crl`,
    });
    const nowIso = new Date(now).toISOString();
    const { pendingReason: _p, ...rest } = rec;
    const next: NodeRecord = {
      ...rest,
      state: 'issued',
      serial: hex,
      certificate: toPem(der, 'CERTIFICATE'),
      notAfter: notAfter.toISOString(),
      issuedAt: nowIso,
      times: { ...rec.times, issued: nowIso },
    };
    return { next, serial: { counter, serial: hex, name: rec.name } };
  }

  /** The bundle of an issued node, MACed with the token secret when a token admitted it. */
  async bundle(rec: NodeRecord): Promise<Bundle> {
    const bundle: Bundle = {
      v: 1,
      cluster: this.o.cluster,
      node: rec.name,
      role: rec.role,
      certificate: rec.certificate!,
      chain: this.o.ca.chain ?? [],
      ca: this.o.ca.certPem,
      registrar: { url: this.o.url(), id: this.o.registrarId },
      // node-config, and the node's group (groups.ts): a change reaches the node at its next contact.
      config: bundleConfig(this.o.nodeConfig, rec),
      issuedAt: rec.issuedAt!,
    };
    const token = rec.tokenId ? await this.o.registry.getToken(rec.tokenId) : undefined;
    if (token) bundle.mac = bundleMac(token.secret, bundle);
    return bundle;
  }
}
