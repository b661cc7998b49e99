import type { Logger } from 'pino';
import type { GitCredentials } from './git-auth.js';

/**
 * Where the fleet repository comes from: a git host over smart HTTP (cloned
 * into the data dir and fetched incrementally) or a repository on local disk
 * (read in place). Only src/source talks to git.
 */
export interface FleetSource {
  /**
   * Brings the local copy up to date and returns the commit id the branch points to.
   * Throws CascadeError `source-unreachable` (with the URL and the cause) when the remote
   * cannot be reached, `source-auth-failed` when it refuses the credentials and
   * `source-branch-missing` when the branch does not exist.
   */
  sync(): Promise<string>;
  /**
   * The commit the branch points to in the local copy, without any network:
   * the last one `sync()` brought (or saw), also after a restart; null before the first sync.
   */
  current(): Promise<string | null>;
  /** Where isomorphic-git reads objects: `{ fs, gitdir, dir? }`. Readable even when the remote is down. */
  readonly location: { gitdir: string; dir?: string };
  /** Calls back when the source may have a new commit (local watch); a no-op for remote. Returns an unsubscribe. */
  watch(onChange: () => void): () => void;
  /** Housekeeping: merges the packs fetches left behind (remote sources only). */
  compact?(): Promise<{ packsBefore: number; packsAfter: number; objects: number }>;
  close(): Promise<void>;
}

/** Credentials for a private fleet repository (`--git-token`, or `--git-username` and `--git-password`). */
export type GitAuth = GitCredentials;

export interface FleetSourceOptions {
  /** An http(s) URL of a git host, or a path to a repository on disk (with a work tree or bare). */
  repo: string;
  branch: string;
  /** The reconciler's data directory; a remote is cloned into `<dataDir>/repo.git`. */
  dataDir: string;
  auth?: GitAuth;
  log?: Logger;
  /** Give up on a remote that stays silent this long (ms) during a request; 30 s by default. */
  timeoutMs?: number;
}
