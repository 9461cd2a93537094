/**
 * The install-mode provisioner (DESIGN "Install mode"): while install mode is on, nodes that match
 * its scope are accepted without a token: those on the local link (the TCP peer's subnet), and with
 * --remote (or autoregister any) those from anywhere. Counts acceptances in flight against --max.
 *
 * A heard advertisement is a hint, never a credential: locality comes from the TCP peer address
 * alone, and a node whose CSR carries another key than the one it advertised over mDNS is not
 * admitted by install mode (it waits for the operator).
 */
import type { InstallModeState } from '../../store/types.js';
import { TIER_ROLE } from '../issuer.js';
import { effectiveInstallMode, type Autoregister } from '../policy.js';
import type { AdmissionRequest, Provisioner, Verdict } from './authorizer.js';
import { lookPastInflight } from './reservations.js';

export interface InstallModeProvisionerDeps {
  state(): Promise<InstallModeState>;
  /** Acceptances of this window in flight. */
  inflight(): number;
  /** Resolves when an acceptance in flight now gives its slot back (Reservations.released). */
  released(): Promise<void>;
  autoregister(): Autoregister;
  /** The cluster this registrar serves. */
  cluster: string;
}

export class InstallModeProvisioner implements Provisioner {
  readonly name = 'install-mode';
  constructor(private readonly deps: InstallModeProvisionerDeps) {}

  async evaluate(req: AdmissionRequest, now: number): Promise<Verdict | undefined> {
    // Only acceptances in flight fill the window (--max): one may yet give its slot back, and one
    // whose change already landed is counted twice until it ends (reservations.ts). Look again once
    // one of them ends, rather than leave the node waiting for the operator.
    const s = await lookPastInflight(
      async () => {
        const stored = await this.deps.state();
        const inflight = this.deps.inflight();
        const counted = effectiveInstallMode({ ...stored, accepted: stored.accepted + inflight }, now);
        return {
          result: counted,
          onlyInflightRefuses: !counted.on && inflight > 0 && effectiveInstallMode(stored, now).on,
        };
      },
      () => this.deps.released(),
    );
    if (!s) {
      return {
        kind: 'deny',
        code: 'busy',
        message: 'the registrar is busy with install mode: retry shortly',
        cause: 'the last acceptances of the install-mode window are held by joins in flight',
        retryAfter: 1,
      };
    }
    if (!s.on) return undefined;
    const auto = this.deps.autoregister();
    if (auto === 'off') return { kind: 'pending', reason: 'install mode is on, but autoregister is off' };
    // A tier registrar gets a CA certificate (issue 11): only a window opened for its role admits it.
    if (req.role === TIER_ROLE && s.role !== TIER_ROLE) {
      return {
        kind: 'pending',
        reason: `install mode admits role ${TIER_ROLE} (a tier registrar) only when opened with --role ${TIER_ROLE}`,
        refusal: 'out_of_scope',
      };
    }
    if (s.role && s.role !== req.role)
      return { kind: 'pending', reason: `install mode admits role ${s.role} only`, refusal: 'out_of_scope' };
    // Checked against the cluster the node would join (its own ask, or this registrar's cluster).
    if (s.cluster && s.cluster !== (req.cluster || this.deps.cluster)) {
      return {
        kind: 'pending',
        reason: `install mode admits cluster ${s.cluster} only`,
        refusal: 'out_of_scope',
      };
    }
    if (req.heard && req.heard.key !== req.key) {
      return {
        kind: 'pending',
        reason: `the key differs from the one ${req.name} advertised over mDNS (${req.heard.key}): waiting for approval`,
        refusal: 'out_of_scope',
      };
    }
    // Locality comes from the TCP peer alone (issue 8, hole 1): an advertisement anyone can forge,
    // even one with this very key, never makes a far peer local.
    const heardSame = req.heard?.key === req.key;
    const onLink = req.onLink;
    if (!onLink && !s.remote && auto !== 'any') {
      return {
        kind: 'pending',
        reason: `install mode admits the local link only and ${req.address} is not on it`,
        refusal: 'off_link',
      };
    }
    const channel = heardSame ? 'mdns' : req.channel;
    const where = onLink ? `on-link ${req.address}` : `remote ${req.address}`;
    return {
      kind: 'accept',
      rule: 'install-mode',
      detail: `install mode (${channel}, ${where})`,
      since: s.since ?? 0,
    };
  }
}
