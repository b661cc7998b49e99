import fs from 'node:fs';
import git from 'isomorphic-git';

export interface FileChange {
  commit: string;
  parent: string | null;
  subject: string;
}

/** Commits on `ref` that changed `filepath`, newest first (first-parent history, as a merged PR sees it). */
export async function commitsTouching(options: { gitdir: string; ref: string; filepath: string; limit?: number }): Promise<FileChange[]> {
  const { gitdir, filepath } = options;
  const limit = options.limit ?? 200;
  const changes: FileChange[] = [];
  let oid: string | null = await git.resolveRef({ fs, gitdir, ref: options.ref });
  const cache = {};
  let visited = 0;
  while (oid && changes.length < limit && visited < 10_000) {
    visited++;
    const { commit } = await git.readCommit({ fs, gitdir, oid, cache });
    const parent = commit.parent[0] ?? null;
    const now = await blobAt(gitdir, oid, filepath, cache);
    const before = parent ? await blobAt(gitdir, parent, filepath, cache) : null;
    if (now !== before) changes.push({ commit: oid, parent, subject: commit.message.split('\n')[0]! });
    oid = parent;
  }
  return changes;
}

/** The text of a file at a commit, or null when the commit has no such file. */
export async function readFileAt(options: { gitdir: string; commit: string; filepath: string }): Promise<string | null> {
  try {
    const { blob } = await git.readBlob({ fs, gitdir: options.gitdir, oid: options.commit, filepath: options.filepath });
    return new TextDecoder().decode(blob);
  } catch {
    return null;
  }
}

async function blobAt(gitdir: string, commit: string, filepath: string, cache: object): Promise<string | null> {
  try {
    const { oid } = await git.readBlob({ fs, gitdir, oid: commit, filepath, cache });
    return oid;
  } catch {
    return null;
  }
}
