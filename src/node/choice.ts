/**
 * Which registrar a node joins when mDNS found several (DESIGN "Discovery": a node picks by cluster
 * and, where the operator pinned one, by CA; more than one candidate and nothing pinned is never a
 * silent pick; issue 11, item 2).
 *
 * Candidates are grouped by what the node would trust and ask for: the CA fingerprint and the cluster.
 * Several registrars of one group (one registry shared by several registrars, or one heard on two
 * addresses, or a forged copy) are one choice: all of them are tried and TLS tells them apart. A main
 * registrar and a tier registrar under the same root CA are two choices only when their clusters
 * differ; a node that asked for a cluster only ever sees registrars of that cluster.
 *
 * More than one group and nothing pinned:
 * - with an `ask` (a person at a terminal: the CLI passes one only when stdin and stderr are TTYs),
 *   the person chooses; the join then goes on pinned to that CA and cluster. No answer is
 *   MUSTER_ERR_NOT_CHOSEN, which ends the run;
 * - without one (a boot job), MUSTER_ERR_AMBIGUOUS, exactly as before: the join loop logs it and looks
 *   again later (issue 8: a forged packet must never stop a boot job).
 */
import { MusterError } from '../common/errors.js';
import type { Candidate } from './discovery.js';

/**
 * Asks which of `choices` to join: resolves with its index, or undefined for none (cancelled, no
 * answer, or the signal aborted).
 */
export type AskChoice = (choices: readonly Candidate[], signal?: AbortSignal) => Promise<number | undefined>;

/** Choices offered (and registrars named in a message) at most: the list comes from packets. */
export const MAX_CHOICES = 9;

export interface ChooseOptions {
  /** The CA the node trusts already (a pin, or the CA it holds): discovery kept only its registrars. */
  trusted?: string;
  /** The person at the terminal; absent in a boot job. */
  ask?: AskChoice;
  signal?: AbortSignal;
}

export interface Chosen {
  /** The registrars to try, in the order they were heard (all of one CA and cluster). */
  candidates: Candidate[];
  /** The registrar chosen at the prompt; absent when there was nothing to choose. */
  chosen?: Candidate;
}

/** MUSTER_ERR_AMBIGUOUS with the choices it names (one per CA and cluster, in the order heard). */
export class AmbiguousError extends MusterError {
  constructor(
    message: string,
    readonly choices: readonly Candidate[],
  ) {
    super('MUSTER_ERR_AMBIGUOUS', message);
    this.name = 'AmbiguousError';
  }
}

const groupKey = (c: Candidate): string => `${c.ca} ${c.cluster}`;

/** The first candidate heard of each CA and cluster, in the order heard. */
export function choicesOf(found: readonly Candidate[]): Candidate[] {
  const first = new Map<string, Candidate>();
  for (const c of found) if (!first.has(groupKey(c))) first.set(groupKey(c), c);
  return [...first.values()];
}

/** One line for a choice in a message or at the prompt (every field was validated by txt.ts). */
export function describeChoice(c: Candidate): string {
  return `${c.id} at ${c.url} (${c.role === 'cluster' ? 'tier registrar, ' : ''}cluster ${c.cluster}, CA ${c.ca}, mode ${c.mode})`;
}

/**
 * The ambiguity among `found`, or undefined when they are all one choice. The message lists the
 * choices and says how to pin one (it is what a boot job logs, and what the operator reads).
 */
export function ambiguity(found: readonly Candidate[], trusted?: string): AmbiguousError | undefined {
  const choices = choicesOf(found);
  if (choices.length < 2) return undefined;
  const shown = choices.slice(0, MAX_CHOICES);
  const lines =
    shown.map((c) => describeChoice(c)).join('; ') +
    (choices.length > shown.length ? `; and ${choices.length - shown.length} more` : '');
  const cas = new Set(choices.map((c) => c.ca));
  const message =
    cas.size > 1 && !trusted
      ? `found ${choices.length} registrars with different CAs and no CA is pinned: ${lines}. ` +
        'Pin the right one with --ca-fingerprint, or choose with --cluster.'
      : `found ${choices.length} registrars serving different clusters and no --cluster is set: ${lines}. ` +
        'Choose with --cluster (and pin the CA with --ca-fingerprint).';
  return new AmbiguousError(message, shown);
}

/**
 * The registrars to try among those found: all of them when they are one choice (no prompt), else
 * the group the person at the terminal chose. Throws AmbiguousError (MUSTER_ERR_AMBIGUOUS) when there
 * is a choice and nobody to ask, MUSTER_ERR_NOT_CHOSEN when the person chose none.
 */
export async function chooseRegistrar(found: readonly Candidate[], o: ChooseOptions = {}): Promise<Chosen> {
  const amb = ambiguity(found, o.trusted);
  if (!amb) return { candidates: [...found] };
  if (!o.ask) throw amb;
  const i = await o.ask(amb.choices, o.signal);
  if (o.signal?.aborted) throw o.signal.reason;
  const chosen = i === undefined || !Number.isInteger(i) ? undefined : amb.choices[i];
  if (!chosen) {
    throw new MusterError('MUSTER_ERR_NOT_CHOSEN', `no registrar was chosen: ${amb.message}`);
  }
  return { candidates: found.filter((c) => groupKey(c) === groupKey(chosen)), chosen };
}
