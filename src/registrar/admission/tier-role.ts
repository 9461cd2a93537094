/**
 * The tier screen (issue 11): a tier registrar signs with an intermediate of pathLen 0, so it can
 * admit no tier below it (role `cluster` is refused at once, before anything is stored), and once its
 * parent removed it (its intermediate revoked) it admits nobody: what it would sign cannot verify.
 */
import type { MusterError } from '../../common/errors.js';
import { TIER_ROLE } from '../issuer.js';
import type { AdmissionRequest, Provisioner, Verdict } from './authorizer.js';

export class TierScreen implements Provisioner {
  readonly name = 'tier';
  readonly stage = 'screen' as const;

  constructor(
    private readonly deps: {
      /** This registrar signs with an intermediate (it is a tier). */
      isTier: () => boolean;
      /** Set once the parent removed this tier. */
      retired: () => MusterError | undefined;
    },
  ) {}

  evaluate(req: AdmissionRequest): Verdict | undefined {
    const retired = this.deps.retired();
    if (retired) return { kind: 'deny', code: retired.code, message: retired.message };
    if (this.deps.isTier() && req.role === TIER_ROLE) {
      return {
        kind: 'deny',
        code: 'forbidden_role',
        message: `role ${TIER_ROLE} is reserved for tier registrars, which register with the main registrar, not with a tier`,
      };
    }
    return undefined;
  }
}
