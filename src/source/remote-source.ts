import * as nodeFs from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import git from 'isomorphic-git';
import type { Logger } from 'pino';
import { CascadeError } from '../core/errors.js';
import type { FleetSource, FleetSourceOptions } from './fleet-source.js';
import { compactPacks, fattenThinPack, listPacks, type CompactResult } from './git-packs.js';
import { atomicWriteFs } from './atomic-write-fs.js';
import { gitHttp, type GitHttp } from './git-wire.js';
import {
  authorizationHeaders,
  cancelOnAuthRequest,
  GIT_AUTH_HINT,
  hasCredentials,
  splitUrlCredentials,
  type GitCredentials,
} from './git-auth.js';

/**
 * A fleet repository on a git host, kept as a bare repository in
 * `<dataDir>/repo.git` (no work tree: readers take files straight from objects).
 *
 * Each sync costs one small ref lookup (protocol v2 `ls-refs` for the one branch,
 * ~0.8 KB whatever else the host holds) when nothing changed, and one incremental
 * fetch with a thin pack when something did (about native git's bytes). Never
 * fetched with `depth`: a shallow fetch re-sends the whole snapshot every time.
 * The local branch `refs/heads/<branch>` always follows the remote's, even
 * backwards (force-push): isomorphic-git tells the server only about local
 * branches, so a stale one would make every fetch download everything again.
 * Every file is written via scratch file + rename, and the first clone goes to a
 * scratch gitdir renamed into place: a crash never leaves half-written state.
 */
export class RemoteSource implements FleetSource {
  readonly location: { gitdir: string };
  private readonly url: string;
  private readonly fullRef: string;
  private readonly remoteRef: string;
  private readonly headers: Record<string, string>;
  private readonly fs: typeof nodeFs;
  private readonly http: GitHttp;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly opts: {
      url: string;
      branch: string;
      dataDir: string;
      credentials?: GitCredentials;
      log?: Logger;
      timeoutMs: number;
      deadlineMs: number;
    },
  ) {
    this.url = opts.url;
    this.fullRef = `refs/heads/${opts.branch}`;
    this.remoteRef = `refs/remotes/origin/${opts.branch}`;
    this.location = { gitdir: join(opts.dataDir, 'repo.git') };
    this.headers = authorizationHeaders(opts.credentials);
    this.fs = atomicWriteFs(join(opts.dataDir, '.repo-writes'));
    this.http = gitHttp(opts.timeoutMs, opts.deadlineMs, opts.url);
  }

  static async open(opts: FleetSourceOptions): Promise<RemoteSource> {
    const { url, credentials: inUrl } = splitUrlCredentials(opts.repo);
    const credentials = hasCredentials(opts.auth) ? opts.auth : inUrl;
    const source = new RemoteSource({
      url,
      branch: opts.branch,
      dataDir: opts.dataDir,
      credentials,
      log: opts.log,
      timeoutMs: opts.timeoutMs ?? 30_000,
      deadlineMs: opts.deadlineMs ?? DEFAULT_GIT_DEADLINE_MS,
    });
    await source.prepareDataDir();
    return source;
  }

  sync(): Promise<string> {
    // One sync at a time: two fetches into the same gitdir would race on refs.
    const run = this.queue.then(() => this.syncNow());
    this.queue = run.catch(() => undefined);
    return run;
  }

  async current(): Promise<string | null> {
    try {
      return await git.resolveRef({ fs: nodeFs, gitdir: this.location.gitdir, ref: this.fullRef });
    } catch {
      return null;
    }
  }

  watch(): () => void {
    return () => undefined;
  }

  /** Merges the packs fetches left behind into one; waits for any sync, and syncs wait for it. */
  compact(): Promise<CompactResult> {
    const run = this.queue.then(() => compactPacks(this.fs, this.location.gitdir));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.queue;
  }

  private async syncNow(): Promise<string> {
    this.http.takeExpired();
    try {
      return await this.syncOrThrow();
    } catch (err) {
      // isomorphic-git may turn a body cut short into its own error ("Empty response"): say what happened.
      const expired = this.http.takeExpired();
      if (expired) throw expired;
      const code = (err as { code?: string })?.code;
      if (!(err instanceof CascadeError) && isStorageError(code)) throw this.storageError(err);
      throw err;
    }
  }

  private async syncOrThrow(): Promise<string> {
    const started = this.http.bytesReceived;
    if (!(await exists(join(this.location.gitdir, 'HEAD')))) {
      const commit = await this.cloneFresh();
      this.opts.log?.info({ repo: this.url, branch: this.opts.branch, commit, bytes: this.http.bytesReceived - started }, 'cloned fleet repository');
      return commit;
    }
    const before = await this.current();
    const commit = await this.update(before);
    const bytes = this.http.bytesReceived - started;
    if (commit === before) this.opts.log?.debug({ commit, bytes }, 'fleet repository: no new commit');
    else this.opts.log?.info({ repo: this.url, branch: this.opts.branch, from: before, to: commit, bytes }, 'fetched fleet repository');
    return commit;
  }

  /** Clones into a scratch gitdir renamed into place once complete, so a crash never leaves half a clone. */
  private async cloneFresh(): Promise<string> {
    const scratch = `${this.location.gitdir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await git.init({ fs: this.fs, gitdir: scratch, bare: true, defaultBranch: this.opts.branch });
      // The usual refspec, so that a later --branch change still maps to refs/remotes/origin/<branch>.
      await git.addRemote({ fs: this.fs, gitdir: scratch, remote: 'origin', url: this.url });
      const commit = await this.fetch(scratch);
      await rename(scratch, this.location.gitdir);
      return commit;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  private async update(before: string | null): Promise<string> {
    const advertised = await this.remoteCommit();
    if (advertised === before) return advertised;
    // A force-push back to a commit we already hold needs no download at all.
    if (await this.hasCommit(advertised)) {
      await this.moveBranch(this.location.gitdir, advertised);
      return advertised;
    }
    return this.fetch(this.location.gitdir);
  }

  /** Asks the host where the branch points: protocol v2 `ls-refs` limited to that one ref, whatever else the host holds. */
  private async remoteCommit(): Promise<string> {
    let refs: Array<{ ref: string; oid: string }>;
    try {
      refs = await git.listServerRefs({
        http: this.http.client,
        url: this.url,
        prefix: this.fullRef,
        protocolVersion: 2,
        headers: { ...this.headers },
        onAuth: cancelOnAuthRequest,
        onAuthFailure: cancelOnAuthRequest,
      });
    } catch (err) {
      throw this.toSourceError(err);
    }
    const found = refs.find((r) => r.ref === this.fullRef);
    if (!found) throw this.branchMissing();
    return found.oid;
  }

  private async fetch(gitdir: string): Promise<string> {
    const packsBefore = await listPacks(gitdir);
    let fetchHead: string | null;
    try {
      const result = await git.fetch({
        fs: this.fs,
        http: this.http.client,
        gitdir,
        url: this.url,
        remote: 'origin',
        ref: this.fullRef,
        remoteRef: this.fullRef,
        singleBranch: true,
        tags: false,
        headers: { ...this.headers },
        onAuth: cancelOnAuthRequest,
        onAuthFailure: cancelOnAuthRequest,
      });
      fetchHead = result.fetchHead;
    } catch (err) {
      throw this.toSourceError(err);
    }
    for (const pack of await listPacks(gitdir)) {
      if (!packsBefore.has(pack)) await fattenThinPack(this.fs, gitdir, pack);
    }
    if (!fetchHead) throw this.branchMissing();
    await this.moveBranch(gitdir, fetchHead);
    return fetchHead;
  }

  private async moveBranch(gitdir: string, commit: string): Promise<void> {
    // force: the remote branch may have moved backwards or to an unrelated history.
    await git.writeRef({ fs: this.fs, gitdir, ref: this.remoteRef, value: commit, force: true });
    await git.writeRef({ fs: this.fs, gitdir, ref: this.fullRef, value: commit, force: true });
  }

  private async hasCommit(oid: string): Promise<boolean> {
    try {
      await git.readCommit({ fs: nodeFs, gitdir: this.location.gitdir, oid });
      return true;
    } catch {
      return false;
    }
  }

  private async prepareDataDir(): Promise<void> {
    await mkdir(this.opts.dataDir, { recursive: true });
    // Leftovers of a run that died mid-clone or mid-write.
    await rm(join(this.opts.dataDir, '.repo-writes'), { recursive: true, force: true });
    const leftovers = (await readdir(this.opts.dataDir)).filter((name) => name.startsWith('repo.git.tmp-'));
    for (const name of leftovers) await rm(join(this.opts.dataDir, name), { recursive: true, force: true });
    await mkdir(join(this.opts.dataDir, '.repo-writes'), { recursive: true });
    if (await exists(join(this.location.gitdir, 'HEAD'))) {
      const gitdir = this.location.gitdir;
      const configured = await git.getConfig({ fs: nodeFs, gitdir, path: 'remote.origin.url' });
      if (configured !== this.url) {
        this.opts.log?.info({ from: configured, to: this.url }, 'fleet repository URL changed; fetching from the new one');
        await git.setConfig({ fs: this.fs, gitdir, path: 'remote.origin.url', value: this.url });
      }
    }
  }

  private branchMissing(): CascadeError {
    return new CascadeError(
      'source-branch-missing',
      `branch "${this.opts.branch}" does not exist in ${this.url}; check --branch (or push the branch)`,
      { repo: this.url, branch: this.opts.branch },
    );
  }

  private storageError(err: unknown): CascadeError {
    const cause = (err as Error)?.message ?? String(err);
    return new CascadeError(
      'source-storage-failed',
      `cannot write the fleet repository copy under ${this.opts.dataDir}: ${cause}; check free space and permissions of --data-dir`,
      { repo: this.url, dataDir: this.opts.dataDir, cause },
    );
  }

  private toSourceError(err: unknown): CascadeError {
    if (err instanceof CascadeError) return err;
    const e = err as { code?: string; message?: string; data?: { statusCode?: number; statusMessage?: string } };
    const cause = e?.message ?? String(err);
    const details = { repo: this.url, branch: this.opts.branch, cause };
    const status = e?.code === git.Errors.HttpError.code ? e.data?.statusCode : undefined;
    if (e?.code === git.Errors.UserCanceledError.code || status === 401 || status === 403) {
      const what = hasCredentials(this.opts.credentials)
        ? `${this.url} refused the credentials given`
        : `${this.url} requires credentials`;
      return new CascadeError('source-auth-failed', `${what}: ${GIT_AUTH_HINT}`, details);
    }
    if (e?.code === git.Errors.NotFoundError.code) return this.branchMissing();
    if (isStorageError(e?.code)) return this.storageError(err);
    const hint = status === 404 ? ' (no repository at that URL: check --repo)' : '';
    return new CascadeError(
      'source-unreachable',
      `cannot reach the fleet repository ${this.url}: ${cause}${hint}; check --repo and that the git host is up (commits fetched before stay readable)`,
      details,
    );
  }
}

/** `--git-timeout`: the longest one request to the git host may take, start to end. */
export const DEFAULT_GIT_DEADLINE_MS = 60_000;

export function openRemoteSource(opts: FleetSourceOptions): Promise<RemoteSource> {
  return RemoteSource.open(opts);
}

function isStorageError(code: string | undefined): boolean {
  return code === 'ENOSPC' || code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'EDQUOT' || code === 'EIO';
}


async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
