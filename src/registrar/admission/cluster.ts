/** The cluster rule: a registrar serves one cluster; a node that asks for another is refused. */
import type { AdmissionRequest, Provisioner, Verdict } from './authorizer.js';

export class ClusterRule implements Provisioner {
  readonly name = 'cluster';
  readonly stage = 'screen' as const;
  constructor(private readonly cluster: string) {}

  evaluate(req: AdmissionRequest): Verdict | undefined {
    if (req.cluster === '' || req.cluster === this.cluster) return undefined;
    return {
      kind: 'deny',
      code: 'wrong_cluster',
      message: `this registrar serves cluster ${this.cluster}, not ${req.cluster}`,
    };
  }
}
