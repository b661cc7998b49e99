import fs from 'node:fs';
import git from 'isomorphic-git';
import { CascadeError } from '../core/errors.js';

/** The message of commit `oid` (e.g. to read its trailers). Throws a temporary `git-read` error when it cannot be read. */
export async function readCommitMessage(location: { gitdir: string }, oid: string): Promise<string> {
  try {
    const { commit } = await git.readCommit({ fs, gitdir: location.gitdir, oid });
    return commit.message;
  } catch (err) {
    throw new CascadeError('git-read', `cannot read commit ${oid.slice(0, 8)}: ${(err as Error).message}`, { oid });
  }
}
