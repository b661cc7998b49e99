import fs from 'node:fs';
import git from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import { CascadeError } from '../core/errors.js';

export interface PushCommitOptions {
  /** A bare repository holding the commit (a region's `<data>/repo.git`). */
  gitdir: string;
  /** http(s) URL of the remote, without credentials. */
  url: string;
  commit: string;
  /** The remote branch to update, e.g. `main` or `cascade/revert-1a2b3c4d`. */
  branch: string;
  auth?: { username: string; password: string };
  timeoutMs?: number;
}

/** The local ref a pushed commit is held by while it goes out; never a branch the region follows. */
const PUSH_REF = 'refs/cascade/push';

/**
 * Pushes one commit of a bare repository to a branch of a smart-HTTP remote, fast-forward only:
 * when the branch moved meanwhile, the remote refuses and this throws `push-rejected` (final: the
 * commit was written on what the region served). SSH remotes are not supported (isomorphic-git
 * speaks smart HTTP only).
 */
export async function pushCommit(options: PushCommitOptions): Promise<void> {
  if (!/^https?:\/\//i.test(options.url)) {
    throw new CascadeError('push-unsupported-remote', `cannot push to ${options.url}: the region pushes over http(s) only (SSH is not supported by its git client)`, {}, { retry: 'final' });
  }
  await git.writeRef({ fs, gitdir: options.gitdir, ref: PUSH_REF, value: options.commit, force: true });
  let result: Awaited<ReturnType<typeof git.push>>;
  try {
    result = await git.push({
      fs,
      http,
      gitdir: options.gitdir,
      url: options.url,
      ref: PUSH_REF,
      remoteRef: `refs/heads/${options.branch}`,
      onAuth: options.auth ? () => options.auth : undefined,
      onAuthFailure: () => ({ cancel: true }),
    });
  } catch (err) {
    const message = (err as Error).message;
    const rejected = /not a simple fast-forward|rejected|non-fast-forward/i.test(message);
    throw new CascadeError(
      rejected ? 'push-rejected' : 'push-failed',
      rejected ? `${options.url} refused the push to ${options.branch}: the branch moved since; ${message}` : `push to ${options.url} (${options.branch}) failed: ${message}`,
      {},
      { retry: rejected ? 'final' : 'temporary' },
    );
  } finally {
    await git.deleteRef({ fs, gitdir: options.gitdir, ref: PUSH_REF }).catch(() => undefined);
  }
  if (!result.ok) {
    throw new CascadeError('push-rejected', `${options.url} refused the push to ${options.branch}: ${result.error ?? JSON.stringify(result.refs)}`, {}, { retry: 'final' });
  }
}
