import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { CascadeError } from '../core/errors.js';

/**
 * Checks a long-running command makes before it touches the disk or the network, so that a mistake
 * (a missing repository, a state folder it cannot write) fails with advice and leaves nothing behind.
 */

/**
 * The state folder is usable: an existing folder it can write, or one it could create (its nearest
 * existing parent is a writable folder). Creates nothing.
 */
export function checkStateDir(dir: string, flag: string, env: string): void {
  const absolute = resolve(dir);
  const advice = `pass ${flag} DIR (or set ${env}) to a folder this user can write, e.g. ${flag} ./cascade-state`;
  let existing = absolute;
  while (!existsSync(existing)) {
    const parent = dirname(existing);
    if (parent === existing) break;
    existing = parent;
  }
  if (!statSync(existing).isDirectory()) {
    throw new CascadeError('state-dir-unusable', `${flag} ${dir}: ${existing} is a file, not a folder; ${advice}`, { dir });
  }
  try {
    accessSync(existing, constants.W_OK | constants.X_OK);
  } catch {
    const what = existing === absolute ? `cannot write the state folder ${absolute}` : `cannot create the state folder ${absolute} (no write access to ${existing})`;
    throw new CascadeError('state-dir-unusable', `${flag} ${dir}: ${what}; ${advice}`, { dir });
  }
}

/**
 * A local `--repo` (a path or file:// URL) names a git repository: a folder with `.git`, or a bare
 * repository. URLs are checked when the region first fetches.
 */
export function checkLocalRepo(repo: string): void {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo) && !/^file:\/\//i.test(repo)) return;
  if (/^[\w.-]+@[\w.-]+:/.test(repo)) return;
  const path = resolve(repo.replace(/^file:\/\//i, ''));
  if (!existsSync(path)) {
    throw new CascadeError('source-not-a-repo', `--repo ${repo}: no such folder; give the path of a git repository (e.g. one made by \`cascade init\`) or an http(s) URL`, { repo });
  }
  const isGit = existsSync(join(path, '.git')) || (existsSync(join(path, 'HEAD')) && existsSync(join(path, 'objects')));
  if (!isGit) {
    throw new CascadeError('source-not-a-repo', `--repo ${repo}: not a git repository (no .git, not a bare repository); run \`git init\` there, or give an http(s) URL`, { repo });
  }
}

/** A listen error as advice: the port is taken, privileged, or the address is not this machine's. */
export function listenError(err: unknown, listen: { host: string; port: number }, flag: string): unknown {
  // The hub wraps the listen error; its cause keeps the system code.
  const system = err instanceof CascadeError ? err.cause : err;
  const code = (system as NodeJS.ErrnoException | null | undefined)?.code;
  const where = `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
  if (code === 'EADDRINUSE') {
    return new CascadeError(
      'address-in-use',
      `cannot listen on ${where}: the port is already in use (another cascade process?); stop it, or pick a free port with ${flag} HOST:PORT`,
      { host: listen.host, port: listen.port },
      { cause: err, retry: 'temporary' },
    );
  }
  if (code === 'EACCES') {
    return new CascadeError('address-not-allowed', `cannot listen on ${where}: permission denied (ports below 1024 need privileges); pick a port above 1024 with ${flag} HOST:PORT`, undefined, { cause: err });
  }
  if (code === 'EADDRNOTAVAIL') {
    return new CascadeError('address-not-available', `cannot listen on ${where}: no network interface of this machine has that address; use 0.0.0.0 or one of its addresses in ${flag}`, undefined, { cause: err });
  }
  return err;
}
