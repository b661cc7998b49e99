import fs from 'node:fs';
import { dirname, join } from 'node:path';
import git from 'isomorphic-git';
import { CascadeError } from '../core/errors.js';
import { changedPaths, flattenTree, writeFlatTree, type GitLocation } from './tree-edit.js';

export interface RevertOptions extends GitLocation {
  /** Commit to revert (sha, branch, tag). */
  commit: string;
  /** Branch to commit on; the current branch when absent. */
  branch?: string;
  /** Who the commit is by: resolveGitIdentity() for a person, a fixed identity for automation. */
  author: { name: string; email: string };
  /** Extra paragraph for the message, e.g. which Deployment goes back to which version. */
  explanation?: string;
  /**
   * Bare mode (a region's `<data>/repo.git`): write the revert on top of this commit and move no
   * branch; the caller pushes the returned commit. `branch` is then ignored.
   */
  onto?: string;
  /** Trailer lines (`Key: value`) at the end of the message. */
  trailers?: string[];
  /** Signs the commit (OpenPGP, armored private key), e.g. with signOpenPgp. */
  sign?: { signingKey: string; onSign: (args: { payload: string; secretKey: string }) => Promise<{ signature: string }> };
}

export interface RevertResult {
  commit: string;
  reverted: string;
  paths: string[];
  message: string;
}

/**
 * Writes the `git revert` of one commit through isomorphic-git: for each file the commit
 * changed, the branch head gets the file as it was before that commit. When a later commit
 * changed the same file again, the revert does not apply cleanly and is refused, naming the
 * files, rather than guessing. A merge commit is reverted against its first parent (`-m 1`),
 * which is what a merged pull request needs.
 */
export async function revertCommit(options: RevertOptions): Promise<RevertResult> {
  const location: GitLocation = { dir: options.dir, gitdir: options.gitdir };
  const branch = options.onto ? undefined : (options.branch ?? (await git.currentBranch({ fs, ...location, fullname: false })) ?? undefined);
  if (!branch && !options.onto) throw new CascadeError('revert-detached-head', 'HEAD is detached: check out the branch to revert on, or pass the branch.');
  const target = await resolveCommit(location, options.commit);
  const { commit } = await git.readCommit({ fs, ...location, oid: target });
  const parent = commit.parent[0];
  if (!parent) throw new CascadeError('revert-root-commit', `commit ${target.slice(0, 8)} is the first commit of the repository; there is nothing before it to go back to.`);
  const headOid = options.onto ?? (await git.resolveRef({ fs, ...location, ref: `refs/heads/${branch}` }));

  const before = await flattenTree(location, (await git.readCommit({ fs, ...location, oid: parent })).commit.tree);
  const after = await flattenTree(location, commit.tree);
  const head = await flattenTree(location, (await git.readCommit({ fs, ...location, oid: headOid })).commit.tree);
  const paths = changedPaths(before, after);

  const conflicts: string[] = [];
  const next = new Map(head);
  let changes = 0;
  for (const path of paths) {
    const current = head.get(path)?.oid;
    if (current === after.get(path)?.oid) {
      const old = before.get(path);
      if (old) next.set(path, old);
      else next.delete(path);
      changes++;
    } else if (current !== before.get(path)?.oid) {
      conflicts.push(path);
    }
  }
  if (conflicts.length > 0) {
    throw new CascadeError(
      'revert-conflict',
      `the revert of ${target.slice(0, 8)} does not apply cleanly: later commits changed ${conflicts.join(', ')}. Revert those later commits first, or edit the files by hand in a new commit.`,
      { conflicts },
    );
  }
  if (changes === 0) {
    throw new CascadeError('revert-empty', `commit ${target.slice(0, 8)} is already undone on ${branch ?? headOid.slice(0, 8)}: nothing to revert.`);
  }
  if (options.dir) await ensureClean({ dir: options.dir, gitdir: options.gitdir }, paths);

  const subject = commit.message.split('\n')[0]!;
  const trailers = options.trailers && options.trailers.length > 0 ? `\n${options.trailers.join('\n')}\n` : '';
  const message = `Revert "${subject}"\n\nThis reverts commit ${target}.\n${options.explanation ? `\n${options.explanation}\n` : ''}${trailers}`;
  const tree = await writeFlatTree(location, next);
  const { author } = options;
  const oid = await git.commit({
    fs,
    ...location,
    message,
    tree,
    parent: [headOid],
    author,
    ...(options.onto ? { noUpdateBranch: true } : { ref: `refs/heads/${branch}` }),
    ...(options.sign ? { signingKey: options.sign.signingKey, onSign: options.sign.onSign } : {}),
  });
  if (options.dir) await syncWorktree({ dir: options.dir, gitdir: options.gitdir }, paths, next);
  return { commit: oid, reverted: target, paths, message };
}

async function resolveCommit(location: GitLocation, ref: string): Promise<string> {
  try {
    if (/^[0-9a-f]{4,40}$/i.test(ref)) return await git.expandOid({ fs, ...location, oid: ref.toLowerCase() });
    return await git.resolveRef({ fs, ...location, ref });
  } catch {
    throw new CascadeError('revert-unknown-commit', `"${ref}" is not a commit of this repository; give a commit id (see \`git log\`).`);
  }
}

async function ensureClean(location: Required<GitLocation>, paths: string[]): Promise<void> {
  const matrix = await git.statusMatrix({ fs, ...location, filepaths: paths });
  const dirty = matrix.filter(([, headStatus, workdir, stage]) => !(headStatus === workdir && workdir === stage)).map(([path]) => path);
  if (dirty.length > 0) {
    throw new CascadeError('revert-dirty-worktree', `uncommitted changes in ${dirty.join(', ')}: commit or discard them before reverting.`);
  }
}

async function syncWorktree(location: Required<GitLocation>, paths: string[], next: Map<string, { oid: string }>): Promise<void> {
  for (const path of paths) {
    const file = next.get(path);
    const full = join(location.dir, path);
    if (file) {
      const { blob } = await git.readBlob({ fs, ...location, oid: file.oid });
      await fs.promises.mkdir(dirname(full), { recursive: true });
      await fs.promises.writeFile(full, blob);
      await git.add({ fs, ...location, filepath: path });
    } else {
      await fs.promises.rm(full, { force: true });
      await git.remove({ fs, ...location, filepath: path });
    }
  }
}
