import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

/**
 * Builds real git repositories for tests with the git binary. Everything is
 * async on purpose: a test's git HTTP server runs in the same process, and a
 * synchronous `git push` to it would block the event loop that must answer it.
 */

const execFileAsync = promisify(execFile);

/** Files to write, relative to the work tree; `null` deletes the file. */
export type FileChanges = Record<string, string | null>;

export interface FleetRemote {
  name: string;
  /** The bare repository, `<root>/<name>.git`: served by the git HTTP server as `/<name>.git`. */
  bare: string;
  /** A clone with a work tree, `<root>/.work/<name>`, whose origin is the bare repository. */
  workdir: string;
  branch: string;
  /** The commit the branch points to after the first push. */
  head: string;
}

/** An environment that ignores the machine's git config and never prompts. */
export function gitEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 'Cascade Test',
    GIT_AUTHOR_EMAIL: 'test@cascade.invalid',
    GIT_COMMITTER_NAME: 'Cascade Test',
    GIT_COMMITTER_EMAIL: 'test@cascade.invalid',
  };
}

/** Runs git in `cwd` and returns its trimmed stdout; a failure throws with git's stderr. */
export async function git(cwd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync('git', args, { cwd, env: gitEnv(), maxBuffer: 64 * 1024 * 1024 });
    return stdout.trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`git ${args.join(' ')} (in ${cwd}) failed: ${e.stderr?.trim() || e.message}`);
  }
}

export async function writeFiles(workdir: string, files: FileChanges): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const full = join(workdir, path);
    if (content === null) {
      await rm(full, { force: true });
    } else {
      await mkdir(dirname(full), { recursive: true });
      await writeFile(full, content);
    }
  }
}

/** Writes the files, commits them all (even if nothing changed) and returns the new commit id. */
export async function commitFiles(workdir: string, files: FileChanges, message: string): Promise<string> {
  await writeFiles(workdir, files);
  await git(workdir, ['add', '-A']);
  await git(workdir, ['commit', '--quiet', '--allow-empty', '--no-verify', '-m', message]);
  return git(workdir, ['rev-parse', 'HEAD']);
}

/** A repository with a work tree at `dir` (created if needed), with one commit of `files` on `branch`. */
export async function makeLocalRepo(
  dir: string,
  files: FileChanges,
  options: { branch?: string; message?: string } = {},
): Promise<{ dir: string; head: string }> {
  const branch = options.branch ?? 'main';
  await mkdir(dir, { recursive: true });
  await git(dir, ['init', '--quiet', `--initial-branch=${branch}`]);
  const head = await commitFiles(dir, files, options.message ?? 'initial fleet');
  return { dir, head };
}

/**
 * A bare "fleet repository" at `<root>/<name>.git` whose `branch` holds `files`,
 * plus a work tree clone to change it with `commitAndPush` and `forcePush`.
 */
export async function makeFleetRemote(
  root: string,
  name: string,
  files: FileChanges,
  options: { branch?: string } = {},
): Promise<FleetRemote> {
  const branch = options.branch ?? 'main';
  const bare = join(root, `${name}.git`);
  const workdir = join(root, '.work', name);
  await mkdir(root, { recursive: true });
  await git(root, ['init', '--quiet', '--bare', `--initial-branch=${branch}`, bare]);
  await git(bare, ['config', 'http.receivepack', 'true']);
  await makeLocalRepo(workdir, files, { branch });
  await git(workdir, ['remote', 'add', 'origin', bare]);
  const head = await push(workdir, branch);
  return { name, bare, workdir, branch, head };
}

/** Commits `files` in the work tree, pushes the current branch to origin and returns the new commit id. */
export async function commitAndPush(workdir: string, files: FileChanges, message: string): Promise<string> {
  await commitFiles(workdir, files, message);
  return push(workdir, await git(workdir, ['rev-parse', '--abbrev-ref', 'HEAD']));
}

/**
 * Moves the work tree's branch to `commit` (any commit id or ref, e.g. `HEAD~2`, or an
 * unrelated history) and force-pushes it to origin. Returns the commit id pushed.
 */
export async function forcePush(workdir: string, commit: string): Promise<string> {
  const branch = await git(workdir, ['rev-parse', '--abbrev-ref', 'HEAD']);
  await git(workdir, ['reset', '--quiet', '--hard', commit]);
  await git(workdir, ['push', '--quiet', '--force', 'origin', `HEAD:refs/heads/${branch}`]);
  return git(workdir, ['rev-parse', 'HEAD']);
}

/** A commit with no parent (a rewritten history) holding only `files`, made without touching the branch. */
export async function makeOrphanCommit(workdir: string, files: FileChanges, message: string): Promise<string> {
  const branch = await git(workdir, ['rev-parse', '--abbrev-ref', 'HEAD']);
  const previous = await git(workdir, ['rev-parse', 'HEAD']);
  await git(workdir, ['checkout', '--quiet', '--orphan', 'cascade-orphan-tmp']);
  await git(workdir, ['rm', '-r', '--quiet', '--cached', '--ignore-unmatch', '.']);
  await git(workdir, ['clean', '-fdq']);
  const orphan = await commitFiles(workdir, files, message);
  await git(workdir, ['checkout', '--quiet', '-f', branch]);
  await git(workdir, ['branch', '-D', 'cascade-orphan-tmp']);
  if ((await git(workdir, ['rev-parse', 'HEAD'])) !== previous) throw new Error('makeOrphanCommit moved the branch');
  return orphan;
}

async function push(workdir: string, branch: string): Promise<string> {
  await git(workdir, ['push', '--quiet', 'origin', `HEAD:refs/heads/${branch}`]);
  return git(workdir, ['rev-parse', 'HEAD']);
}
