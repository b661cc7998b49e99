import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ArtifactUrlPolicy } from '../core/artifact-url.js';
import { CascadeError } from '../core/errors.js';
import type { FleetSnapshot } from '../source/snapshot.js';
import { readWorktreeSnapshot } from '../source/worktree-snapshot.js';
import { FleetLoader } from './load.js';
import type { LoadedFleet, Problem } from './model.js';

export interface LoadRepositoryOptions {
  /** Load this commit (branch, tag or oid) from the object database instead of the working tree. */
  rev?: string;
  /** Keep parsed documents in `<cacheDir>/parse-cache.sqlite` for the next run. */
  cacheDir?: string;
  /** Which artifact URLs are accepted beyond the default (https:, public hosts). */
  artifactPolicy?: ArtifactUrlPolicy;
}

export interface RepositoryLoad {
  fleet: LoadedFleet;
  problems: Problem[];
  /** Symlinks and submodules that were not followed. */
  warnings: Problem[];
  /** Commit oid with `rev`, null for a working tree. */
  revision: string | null;
}

/** Loads and validates a fleet repository once: the working tree of `dir`, or commit `rev` of it (bare repositories too). */
export async function loadRepository(dir: string, options: LoadRepositoryOptions = {}): Promise<RepositoryLoad> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new CascadeError('no-such-dir', `${dir} is not a directory; pass the directory of a fleet repository`, { dir });
  }
  const snapshot = options.rev !== undefined ? await readCommitSnapshot(dir, options.rev) : await readWorktreeSnapshot(dir);
  // SQLite only with a cache; isomorphic-git only with a revision: a working tree loads neither.
  const cache = options.cacheDir !== undefined ? (await import('./parse-cache.js')).SqliteParseCache.inDir(options.cacheDir) : undefined;
  try {
    const { fleet, problems, warnings } = await new FleetLoader({ cache, artifactPolicy: options.artifactPolicy }).load(snapshot);
    return { fleet, problems, warnings, revision: snapshot.revision };
  } finally {
    cache?.close();
  }
}

async function readCommitSnapshot(dir: string, rev: string): Promise<FleetSnapshot> {
  const gitdir = findGitdir(dir);
  if (!gitdir) {
    throw new CascadeError(
      'not-a-git-repo',
      `${dir} is not a git repository (no .git, and not a bare repository), so revision "${rev}" cannot be read from it; run it in a clone of the fleet repository (validate and plan without --rev read the files as they are)`,
      { dir },
    );
  }
  const bare = gitdir === dir;
  const { readGitSnapshot } = await import('../source/git-snapshot.js');
  return (await readGitSnapshot(bare ? { gitdir, ref: rev } : { dir, gitdir, ref: rev })).snapshot;
}

/** `<dir>/.git` for a working tree (a `.git` file of a linked worktree is not supported), `dir` itself when bare. */
function findGitdir(dir: string): string | null {
  const dotGit = join(dir, '.git');
  if (existsSync(dotGit)) {
    if (statSync(dotGit).isDirectory()) return dotGit;
    throw new CascadeError(
      'unsupported-git-layout',
      `${dotGit} is a file (a linked worktree or submodule), which --rev cannot read; run it in the main clone or on a bare clone`,
      { dir },
    );
  }
  if (existsSync(join(dir, 'HEAD')) && existsSync(join(dir, 'objects')) && existsSync(join(dir, 'refs'))) return dir;
  return null;
}
