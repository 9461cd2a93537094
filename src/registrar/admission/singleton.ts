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
 * active records scanned (paged). A vacancy found so is remembered for VACANCY_TTL_MS, or until the
 * store reports an acceptance (its `accepted` event, whoever made it), so that joins asking for a
 * vacant role (one node asking again and again, or many that only wait) cost no scan each. The store's
 * events arrive a moment after the change, so the names told "vacant" since the scan are remembered
 * too (a few) and read again (one read each) before the vacancy is believed: one of them may have
 * been admitted just now.
 * Joins of a singleton role are serialised in this process (Registration, serialRole) so that two
 * concurrent joins cannot both find the role vacant; registrars sharing one store do not see each
 * other's in-flight joins (a per-role index with compare-and-set in the store would close that).
 */
import type { Clock } from '../../common/clock.js';
import type { ListNodesOptions } from '../../store/registry.js';
import type { MusterEvent, NodeRecord, NodeState } from '../../store/types.js';
import type { AdmissionRequest, Provisioner, Verdict } from './authorizer.js';

/** The states in which a node holds its role. */
const HOLDING: readonly NodeState[] = ['accepted', 'issued', 'active'];
const PAGE = 500;
/** A vacancy is believed this long at most without a scan (registrars sharing a store see late). */
export const VACANCY_TTL_MS = 10_000;
/** Names told "vacant" since the scan, read again before a vacancy is believed; beyond, scan again. */
const VACANCY_CANDIDATES = 16;

export class SingletonRoleRule implements Provisioner {
  readonly name = 'singleton-role';
  readonly stage = 'admit' as const;
  readonly roles: ReadonlySet<string>;
  /** Role -> the last node found holding it (a hint, checked on every use). */
  private readonly lastHolder = new Map<string, string>();
  /** Role -> known vacant until `until`, and the names told so since (any may have been admitted). */
  private readonly vacant = new Map<string, { until: number; told: Set<string> }>();
  /** Acceptances seen: a scan that saw one begin while it ran does not conclude "vacant". */
  private acceptances = 0;
  private readonly unwatch: () => void;

  constructor(
    roles: readonly string[],
    private readonly registry: {
      getNode(name: string): Promise<NodeRecord | undefined>;
      listNodes(opts: ListNodesOptions): Promise<NodeRecord[]>;
      watch(fn: (ev: MusterEvent) => void): () => void;
    },
    private readonly clock: Clock,
  ) {
    this.roles = new Set(roles);
    // Any acceptance may fill a vacant role: forget every vacancy (they are few, and cheap to find).
    this.unwatch = registry.watch((ev) => {
      if (ev.type !== 'accepted') return;
      this.acceptances++;
      this.vacant.clear();
    });
  }

  close(): void {
    this.unwatch();
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
    const now = this.clock.now();
    const v = this.vacant.get(role);
    if (v && v.until > now && (v.told.has(except) || v.told.size < VACANCY_CANDIDATES)) {
      for (const name of v.told) {
        if (name !== except && holds(await this.registry.getNode(name), role)) {
          this.vacant.delete(role);
          this.lastHolder.set(role, name);
          return name;
        }
      }
      v.told.add(except);
      return undefined;
    }
    this.vacant.delete(role);
    const seen = this.acceptances;
    for (const state of HOLDING) {
      let after: string | undefined;
      for (;;) {
        const page = await this.registry.listNodes({ state, limit: PAGE, ...(after ? { after } : {}) });
        for (const r of page) {
          if (r.role !== role || r.name === except) continue;
          this.lastHolder.set(role, r.name);
          return r.name;
        }
        if (page.length < PAGE) break;
        after = page[page.length - 1]!.name;
      }
    }
    // Vacant for `except`, which may hold the role itself: it is the first name read again.
    if (this.acceptances === seen)
      this.vacant.set(role, { until: now + VACANCY_TTL_MS, told: new Set([except]) });
    return undefined;
  }
}

function holds(rec: NodeRecord | undefined, role: string): boolean {
  return rec !== undefined && rec.role === role && HOLDING.includes(rec.state);
}
