import fs from 'node:fs';
import git, { Errors } from 'isomorphic-git';
import { CascadeError } from '../core/errors.js';

/**
 * How many commits the search may read before giving up. isomorphic-git counts commits
 * visited (breadth first), not generations; a fleet repository gains a commit per rollout,
 * so this covers decades of history while still bounding a walk over a huge foreign repo.
 */
export const DEFAULT_ANCESTRY_DEPTH = 100_000;

/**
 * True when `oid` is `ancestor` or has it in its history: the branch moved forward.
 * False when the branch moved anywhere else (an older commit, a rewritten or unrelated
 * history): the move is not a fast-forward. In a shallow repository, history beyond the
 * shallow boundary is unknown and counts as not descending. Throws CascadeError
 * `ancestry-unknown` when history cannot be read or is deeper than `depth` commits.
 */
export async function isDescendant(opts: {
  gitdir: string;
  oid: string;
  ancestor: string;
  depth?: number;
}): Promise<boolean> {
  if (opts.oid === opts.ancestor) return true;
  const depth = opts.depth ?? DEFAULT_ANCESTRY_DEPTH;
  try {
    return await git.isDescendent({ fs, gitdir: opts.gitdir, oid: opts.oid, ancestor: opts.ancestor, depth });
  } catch (err) {
    const what =
      err instanceof Errors.MaxDepthError
        ? `${opts.ancestor.slice(0, 8)} was not found within ${depth} commits of its history`
        : (err as Error).message;
    throw new CascadeError(
      'ancestry-unknown',
      `cannot tell whether commit ${opts.oid.slice(0, 8)} descends from ${opts.ancestor.slice(0, 8)} in ${opts.gitdir}: ${what}`,
      { gitdir: opts.gitdir, oid: opts.oid, ancestor: opts.ancestor },
    );
  }
}
