import * as nodeFs from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';
import git from 'isomorphic-git';
import type { Logger } from 'pino';
import { CascadeError } from '../core/errors.js';
import type { FleetSource, FleetSourceOptions } from './fleet-source.js';

/** How long the watcher waits for git to finish a burst of ref writes before calling back. */
const DEBOUNCE_MS = 50;

/**
 * A fleet repository on local disk, read in place: a clone with a work tree
 * (`<path>/.git`) or a bare repository that people push into. Nothing is
 * copied; only committed state counts (the work tree is never read).
 */
export class LocalSource implements FleetSource {
  readonly location: { gitdir: string; dir?: string };
  private readonly fullRef: string;
  private readonly watchers = new Set<FSWatcher>();

  private constructor(
    private readonly repo: string,
    private readonly branch: string,
    location: { gitdir: string; dir?: string },
    private readonly log?: Logger,
  ) {
    this.location = location;
    this.fullRef = `refs/heads/${branch}`;
  }

  static async open(opts: Pick<FleetSourceOptions, 'repo' | 'branch' | 'log'>): Promise<LocalSource> {
    const location = await findGitdir(opts.repo);
    return new LocalSource(opts.repo, opts.branch, location, opts.log);
  }

  async sync(): Promise<string> {
    const commit = await this.current();
    if (commit) return commit;
    let branches: string[] = [];
    try {
      branches = await git.listBranches({ fs: nodeFs, gitdir: this.location.gitdir });
    } catch {
      // The list only makes the message more helpful.
    }
    const known = branches.length ? `; its branches: ${branches.join(', ')}` : '; it has no branches yet';
    throw new CascadeError(
      'source-branch-missing',
      `branch "${this.branch}" does not exist in ${this.repo}${known}; check --branch`,
      { repo: this.repo, branch: this.branch, branches },
    );
  }

  async current(): Promise<string | null> {
    try {
      return await git.resolveRef({ fs: nodeFs, gitdir: this.location.gitdir, ref: this.fullRef });
    } catch {
      return null;
    }
  }

  /**
   * Watches the refs that can move the branch: `refs/heads/**` (git writes
   * `<ref>.lock` and renames it, so the directory is watched, not the file),
   * `packed-refs` (after `git gc` / `pack-refs`) and `HEAD`. Calls back at most
   * once per 50 ms burst. Also calls back once the watcher is ready if the branch
   * moved while it was starting, so a commit made right after `watch()` is not lost.
   */
  watch(onChange: () => void): () => void {
    const gitdir = this.location.gitdir;
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    const fire = () => {
      if (closed) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (!closed) onChange();
      }, DEBOUNCE_MS);
    };
    const atStart = this.current();
    const watcher = chokidarWatch(gitdir, {
      ignoreInitial: true,
      awaitWriteFinish: false,
      ignored: (path) => !isWatchedRefPath(relative(gitdir, path)),
    });
    this.watchers.add(watcher);
    watcher.on('all', (_event, path) => {
      if (isRefFile(relative(gitdir, path))) fire();
    });
    watcher.on('ready', () => {
      void Promise.all([atStart, this.current()]).then(([before, now]) => {
        if (before !== now) fire();
      });
    });
    watcher.on('error', (err) => this.log?.warn({ err, gitdir }, 'watching the fleet repository failed; changes are picked up on the next poll'));
    return () => {
      closed = true;
      clearTimeout(timer);
      this.watchers.delete(watcher);
      void watcher.close();
    };
  }

  async close(): Promise<void> {
    const closing = [...this.watchers].map((w) => w.close());
    this.watchers.clear();
    await Promise.all(closing);
  }
}

export function openLocalSource(opts: Pick<FleetSourceOptions, 'repo' | 'branch' | 'log'>): Promise<LocalSource> {
  return LocalSource.open(opts);
}

/** Directories to descend into and files to report, relative to the gitdir ('' is the gitdir itself). */
function isWatchedRefPath(rel: string): boolean {
  const path = rel.split(sep).join('/');
  return path === '' || path === 'refs' || path === 'refs/heads' || isRefFile(path);
}

function isRefFile(rel: string): boolean {
  const path = rel.split(sep).join('/');
  if (path === 'HEAD' || path === 'packed-refs') return true;
  return path.startsWith('refs/heads/') && !path.endsWith('.lock');
}

/** `<repo>/.git` (a directory, or a `gitdir:` file as in submodules) for a work tree, `<repo>` for a bare repository. */
async function findGitdir(repo: string): Promise<{ gitdir: string; dir?: string }> {
  const dotGit = join(repo, '.git');
  const dotGitStat = await stat(dotGit).catch(() => null);
  if (dotGitStat?.isDirectory()) return { gitdir: dotGit, dir: repo };
  if (dotGitStat?.isFile()) {
    const match = /^gitdir:\s*(.+?)\s*$/m.exec(await readFile(dotGit, 'utf8'));
    if (match) {
      const target = match[1]!;
      return { gitdir: isAbsolute(target) ? target : resolve(repo, target), dir: repo };
    }
  }
  const isBare = (await stat(join(repo, 'HEAD')).catch(() => null))?.isFile() && (await stat(join(repo, 'objects')).catch(() => null))?.isDirectory();
  if (isBare) return { gitdir: repo };
  const missing = !(await stat(repo).catch(() => null));
  throw new CascadeError(
    'source-not-a-repo',
    missing
      ? `--repo ${repo}: no such directory; give a git repository path or an http(s) URL`
      : `--repo ${repo}: not a git repository (no .git directory, and not a bare repository); give a git repository path or an http(s) URL`,
    { repo },
  );
}
