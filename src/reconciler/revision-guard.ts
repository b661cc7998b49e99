import { isDescendant } from '../source/ancestry.js';
import type { TrustedKeys } from '../source/trusted-keys.js';
import { isCommitSignatureRefusal, verifyCommitSignature } from '../source/verify-commit.js';

export interface RevisionGuardOptions {
  gitdir: string;
  /** Apply only commits signed by one of these keys (--verify-commits --trusted-keys). */
  trustedKeys?: TrustedKeys;
  /** Accept a branch that moves to a commit not descending from the served one (--allow-non-fast-forward). */
  allowNonFastForward?: boolean;
  /** One head an operator adopted although it does not descend (`cascade region accept`). Signatures still apply. */
  accepted?: string | null;
}

/**
 * Why a new head must not be applied (a final refusal), or null when it may be. Throws a temporary
 * CascadeError when it cannot tell yet. Checked before the revision is even
 * loaded: a force-push back to an old commit is a rollback attack (a rollback must be a new commit),
 * and with --verify-commits an unsigned or foreign-signed head is refused.
 */
/** Why a head is refused: `reason` for scripts and metrics, `message` for a person. */
export interface Refusal {
  reason: 'not-fast-forward' | 'unsigned';
  message: string;
}

export async function refuseRevision(options: RevisionGuardOptions, head: string, served: string | null): Promise<Refusal | null> {
  const short = head.slice(0, 8);
  if (served && !options.allowNonFastForward && head !== options.accepted) {
    // History that cannot be read now (ancestry-unknown, temporary) is not a refusal: it throws, the
    // head is not recorded as attempted, and the next pass asks again.
    const descends = await isDescendant({ gitdir: options.gitdir, oid: head, ancestor: served });
    if (!descends) {
      return {
        reason: 'not-fast-forward',
        message: `refused ${short}: the branch moved to a commit that does not descend from the served revision ${served.slice(0, 8)} (a force-push or rewritten history). Roll back with a new commit (git revert, cascade rollback); to adopt this head, an operator runs: cascade region accept ${head} --region-url URL`,
      };
    }
  }
  if (options.trustedKeys) {
    try {
      await verifyCommitSignature({ gitdir: options.gitdir, oid: head, trusted: options.trustedKeys });
    } catch (err) {
      if (!isCommitSignatureRefusal(err)) throw err;
      return {
        reason: 'unsigned',
        message: `refused ${short}: ${err.message}; only commits signed by a key in ${options.trustedKeys.path} are applied (sign the commit, e.g. git commit -S, or add the signer's key).`,
      };
    }
  }
  return null;
}
