/**
 * Groups (DESIGN "Groups", after Open Horizon): after registration a node can be put into a group,
 * moved, or taken out, without re-registering and without restarting anything on it. A node is in
 * at most one group; putting it into a second one is 409 (`group_conflict`) unless forced.
 *
 * The group is a field of the node record (DESIGN "Node record"), written by compare-and-set with a
 * `group` event ({ from, to, by }); the registry keeps the group index with the record. The node
 * learns its group at its next contact (boot check-in, renewal): the bundle's config carries `group`
 * (issuer.ts), and the node rewrites config.json and runs --on-changed.
 */
import { MusterError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { KeyedMutex } from '../common/mutex.js';
import { assertLabel } from '../common/names.js';
import { isStoreConflict, type GroupCount, type Registry } from '../store/registry.js';
import type { NodeRecord, NodeState } from '../store/types.js';

/**
 * The states a node may be grouped in: registered (accepted, issued, active), and pending too, so that
 * an operator can group a node before approving it (harmless: the group only reaches the node with its
 * bundle). A node only heard over mDNS has not asked to join; a rejected or removed one has no bundle
 * to carry the group.
 */
export const GROUPABLE_STATES: readonly NodeState[] = ['pending', 'accepted', 'issued', 'active'];

/** What a group or ungroup did: the node after it, and the group before and after (null: none). */
export interface GroupChange {
  node: NodeRecord;
  from: string | null;
  to: string | null;
  /** False when the node was already where it was asked to be: nothing was written. */
  changed: boolean;
}

export interface GroupsOptions {
  registry: Registry;
  /** The per-name lock every writer of a node record holds (Registration.locks). */
  locks: KeyedMutex;
  log: Logger;
}

/**
 * The config a node's bundle carries (DESIGN "The credentials bundle"): the registrar's node-config
 * for every node ('*') and for its role, then `group`: the node's group, or no `group` key at all when
 * it is in none. The record is the one source of `group`: a `group` key in node-config is dropped, so
 * that an ungrouped node never reads one.
 */
export function bundleConfig(
  nodeConfig: Record<string, Record<string, string>> | undefined,
  rec: Pick<NodeRecord, 'role' | 'group'>,
): Record<string, string> {
  const { group: _configured, ...cfg } = { ...(nodeConfig?.['*'] ?? {}), ...(nodeConfig?.[rec.role] ?? {}) };
  return rec.group !== undefined ? { ...cfg, group: rec.group } : cfg;
}

/** Compare-and-set attempts before giving up when other writes of the record keep landing first. */
const ATTEMPTS = 5;

export class Groups {
  constructor(private readonly o: GroupsOptions) {}

  /**
   * Puts `name` into `group`. Already there: nothing written. In another group: `group_conflict`
   * naming it, unless `force` (then it moves, and the event says from where).
   */
  async set(name: string, group: string, opts: { force: boolean }, by: string): Promise<GroupChange> {
    assertLabel('node name', name);
    assertLabel('group', group);
    return this.write(name, by, (rec) => {
      if (!GROUPABLE_STATES.includes(rec.state)) {
        throw new MusterError(
          'invalid_state',
          `node ${name} is ${rec.state}; only a pending or registered node (${GROUPABLE_STATES.join(', ')}) can be grouped`,
        );
      }
      if (rec.group === group) return undefined;
      if (rec.group !== undefined && !opts.force) {
        throw new MusterError(
          'group_conflict',
          `node ${name} is in group ${rec.group}; a node is in at most one group: use --force to move it to ${group}`,
        );
      }
      return group;
    });
  }

  /** Takes `name` out of its group (any state: a removed node's group can be cleared too). */
  async unset(name: string, by: string): Promise<GroupChange> {
    assertLabel('node name', name);
    return this.write(name, by, (rec) => (rec.group === undefined ? undefined : null));
  }

  /** Every group with the number of records that name it (any state), by group name. */
  list(): Promise<GroupCount[]> {
    return this.o.registry.listGroups();
  }

  /**
   * Under the name's lock, decides on the current record (`decide` returns the new group, null for
   * none, or undefined for "no change") and writes it with its event by compare-and-set, deciding
   * again on the newer record if another write landed in between.
   */
  private async write(
    name: string,
    by: string,
    decide: (rec: NodeRecord) => string | null | undefined,
  ): Promise<GroupChange> {
    return this.o.locks.run(name, async () => {
      for (let attempt = 1; ; attempt++) {
        const rec = await this.o.registry.getNode(name);
        if (!rec) throw new MusterError('not_found', `no node named ${name}`);
        const from = rec.group ?? null;
        const to = decide(rec);
        if (to === undefined) return { node: rec, from, to: from, changed: false };
        const { group: _old, ...rest } = rec;
        const next: NodeRecord = to === null ? rest : { ...rest, group: to };
        try {
          await this.o.registry.apply({
            nodes: [{ expectRev: rec.rev, next }],
            events: [{ type: 'group', name, detail: { from, to, by } }],
          });
        } catch (err) {
          if (isStoreConflict(err, 'node') && attempt < ATTEMPTS) continue;
          throw err;
        }
        this.o.log.info({ node: name, from, to, by }, to === null ? 'node ungrouped' : 'node grouped');
        return { node: { ...next, rev: rec.rev + 1 }, from, to, changed: true };
      }
    });
  }
}
