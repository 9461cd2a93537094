/**
 * Singleton roles (issue 10, item 5; like Eucalyptus' walrus, a role only one machine may hold):
 * `muster registrar --singleton-role R`. A join for role R while another node (another name) of role R
 * is accepted, issued or active waits for approval with a hold (authorizer.ts): neither a token nor
 * install mode nor the policy hook admits it; the operator's approval (or pre-approval) does, which is
 * the escape for a deliberate replacement. Once the holder is removed or rejected, the next node of
 * role R is admitted by its token as usual.
 *
 * Finding the holder: the registry has no index by role. The last holder found is remembered per role
 * and checked first (one read); only when it no longer holds the role are the accepted, issued and
 * active records scanned (paged), which happens while the role is vacant, a few times in a role's life.
 * Joins of a singleton role are serialised in this process (Registration, serialRole) so that two
 * concurrent joins cannot both find the role vacant; registrars sharing one store do not see each
 * other's in-flight joins (a per-role index with compare-and-set in the store would close that).
 */
import type { ListNodesOptions } from '../../store/registry.js';
import type { NodeRecord, NodeState } from '../../store/types.js';
import type { AdmissionRequest, Provisioner, Verdict } from './authorizer.js';

/** The states in which a node holds its role. */
const HOLDING: readonly NodeState[] = ['accepted', 'issued', 'active'];
const PAGE = 500;

export class SingletonRoleRule implements Provisioner {
  readonly name = 'singleton-role';
  readonly stage = 'admit' as const;
  readonly roles: ReadonlySet<string>;
  /** Role -> the last node found holding it (a hint, checked on every use). */
  private readonly lastHolder = new Map<string, string>();

  constructor(
    roles: readonly string[],
    private readonly registry: {
      getNode(name: string): Promise<NodeRecord | undefined>;
      listNodes(opts: ListNodesOptions): Promise<NodeRecord[]>;
    },
  ) {
    this.roles = new Set(roles);
  }

  async evaluate(req: AdmissionRequest): Promise<Verdict | undefined> {
    if (!this.roles.has(req.role)) return undefined;
    const holder = await this.holder(req.role, req.name);
    if (holder === undefined) return undefined;
    return {
      kind: 'pending',
      hold: true,
      reason: `role ${req.role} is a singleton held by node ${holder}: waiting for approval`,
    };
  }

  /** The name of a node other than `except` that holds `role`, if any. */
  async holder(role: string, except: string): Promise<string | undefined> {
    const hint = this.lastHolder.get(role);
    if (hint !== undefined && hint !== except && holds(await this.registry.getNode(hint), role)) return hint;
    for (const state of HOLDING) {
      let after: string | undefined;
      for (;;) {
        const page = await this.registry.listNodes({ state, limit: PAGE, ...(after ? { after } : {}) });
        const found = page.find((r) => r.role === role && r.name !== except);
        if (found) {
          this.lastHolder.set(role, found.name);
          return found.name;
        }
        if (page.length < PAGE) break;
        after = page[page.length - 1]!.name;
      }
    }
    return undefined;
  }
}

function holds(rec: NodeRecord | undefined, role: string): boolean {
  return rec !== undefined && rec.role === role && HOLDING.includes(rec.state);
}
