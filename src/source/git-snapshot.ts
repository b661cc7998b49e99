import nodeFs from 'node:fs';
import git from 'isomorphic-git';
import { CascadeError } from '../core/errors.js';
import { IGNORE_FILE, fleetPathFilter, isYamlName } from './ignore.js';
import { UNKNOWN_SIZE, byPath, type FleetFile, type FleetSnapshot, type SkippedEntry } from './snapshot.js';

/** The entries of one git tree that can matter to a fleet (same oid, same entries, at any path). */
interface TreeEntries {
  blobs: Array<[name: string, oid: string]>;
  trees: Array<[name: string, oid: string]>;
  /** Symlinks and submodules: never followed, named in a warning. */
  links: Array<[name: string, kind: SkippedEntry['kind']]>;
}

/**
 * What one readGitSnapshot call learnt, handed to the next call so that it reads only trees whose
 * oid changed (a subtree with an unchanged oid has unchanged contents, however deep).
 */
export interface GitSnapshotState {
  revision: string;
  trees: Map<string, TreeEntries>;
  ignoreFile: { oid: string; text: string } | null;
  /** isomorphic-git's object cache (packfile indexes), reused across reads. */
  cache: object;
}

export interface ReadGitSnapshotOptions {
  /** Working tree directory; its .git is used. Give `gitdir` instead for a bare repository. */
  dir?: string;
  gitdir?: string;
  /** Branch, tag, remote branch, HEAD, or a (possibly abbreviated) commit oid. */
  ref: string;
  previous?: GitSnapshotState;
  fs?: typeof nodeFs;
}

const BLOB_MODES = new Set(['100644', '100755']);
const TREE_MODE = '040000';
const SYMLINK_MODE = '120000';
const SUBMODULE_MODE = '160000';

/**
 * The fleet files of a commit, read from the object database alone (no working tree, so bare
 * repositories work). Only trees are read here; blobs are read when the loader asks for them.
 */
export async function readGitSnapshot(
  options: ReadGitSnapshotOptions,
): Promise<{ snapshot: FleetSnapshot; state: GitSnapshotState }> {
  const fs = options.fs ?? nodeFs;
  const gitdir = options.gitdir ?? (options.dir !== undefined ? `${options.dir}/.git` : undefined);
  if (gitdir === undefined) throw new CascadeError('bad-options', 'readGitSnapshot needs dir or gitdir');
  const cache = options.previous?.cache ?? {};
  const { oid: revision, commit } = await resolveCommit(fs, gitdir, options.dir ?? gitdir, options.ref, cache);

  const previousTrees = options.previous?.trees ?? new Map<string, TreeEntries>();
  const trees = new Map<string, TreeEntries>();
  const readEntries = async (oid: string): Promise<TreeEntries> => {
    const known = trees.get(oid) ?? previousTrees.get(oid);
    if (known) {
      trees.set(oid, known);
      return known;
    }
    const { tree } = await git.readTree({ fs, gitdir, oid, cache });
    const entries: TreeEntries = { blobs: [], trees: [], links: [] };
    for (const entry of tree) {
      if (entry.mode === TREE_MODE) entries.trees.push([entry.path, entry.oid]);
      else if (entry.mode === SYMLINK_MODE) entries.links.push([entry.path, 'symlink']);
      else if (entry.mode === SUBMODULE_MODE) entries.links.push([entry.path, 'submodule']);
      else if (BLOB_MODES.has(entry.mode) && (isYamlName(entry.path) || entry.path === IGNORE_FILE)) {
        entries.blobs.push([entry.path, entry.oid]);
      }
    }
    trees.set(oid, entries);
    return entries;
  };

  const root = await readEntries(commit.tree);
  const ignoreOid = root.blobs.find(([name]) => name === IGNORE_FILE)?.[1];
  let ignoreFile: GitSnapshotState['ignoreFile'] = null;
  if (ignoreOid) {
    const previousIgnore = options.previous?.ignoreFile;
    ignoreFile =
      previousIgnore?.oid === ignoreOid
        ? previousIgnore
        : { oid: ignoreOid, text: new TextDecoder().decode((await git.readBlob({ fs, gitdir, oid: ignoreOid, cache })).blob) };
  }
  const filter = fleetPathFilter(ignoreFile?.text ?? null);

  const files: FleetFile[] = [];
  const skipped: SkippedEntry[] = [];
  await collect('', root);
  async function collect(prefix: string, entries: TreeEntries): Promise<void> {
    for (const [name, blobOid] of entries.blobs) {
      const path = prefix + name;
      if (filter.includesFile(path)) files.push(gitFile(fs, gitdir!, cache, path, blobOid));
    }
    // A link may point at a file or a folder: name it unless .cascadeignore (or a hidden name) leaves it out either way.
    for (const [name, kind] of entries.links ?? []) {
      const path = prefix + name;
      if (filter.includesFile(path) || filter.includesDir(path)) skipped.push({ path, kind });
    }
    const included = entries.trees.filter(([name]) => filter.includesDir(prefix + name));
    const children = await Promise.all(included.map(([, childOid]) => readEntries(childOid)));
    await Promise.all(included.map(([name], i) => collect(`${prefix}${name}/`, children[i]!)));
  }
  files.sort(byPath);
  skipped.sort(byPath);
  return { snapshot: { revision, files, skipped }, state: { revision, trees, ignoreFile, cache } };
}

function gitFile(fs: typeof nodeFs, gitdir: string, cache: object, path: string, oid: string): FleetFile {
  return {
    path,
    id: oid,
    size: UNKNOWN_SIZE,
    read: async () => (await git.readBlob({ fs, gitdir, oid, cache })).blob,
  };
}

/**
 * Resolves a ref or abbreviated oid to a commit (annotated tags are peeled). Like git, `REV~N` and
 * `REV^` walk first parents: `HEAD~1`, `main^`, `origin/main~2`.
 */
async function resolveCommit(fs: typeof nodeFs, gitdir: string, where: string, ref: string, cache: object): Promise<git.ReadCommitResult> {
  const ancestry = /^(.+?)((?:~\d*|\^)+)$/.exec(ref);
  if (ancestry) {
    let result = await resolveCommit(fs, gitdir, where, ancestry[1]!, cache);
    for (const step of ancestry[2]!.match(/~\d*|\^/g)!) {
      const count = step === '^' || step === '~' ? 1 : Number(step.slice(1));
      for (let i = 0; i < count; i++) {
        const parent = result.commit.parent[0];
        if (parent === undefined) {
          throw new CascadeError('unknown-rev', `"${ref}" goes back past the first commit of ${where}; give a later revision`, { ref, gitdir });
        }
        result = await git.readCommit({ fs, gitdir, oid: parent, cache });
      }
    }
    return result;
  }
  let oid: string | undefined;
  try {
    oid = await git.resolveRef({ fs, gitdir, ref });
  } catch (err) {
    if (!isNotFound(err)) throw wrapGitError(err, where, ref);
  }
  if (oid === undefined && /^[0-9a-f]{4,40}$/i.test(ref)) {
    try {
      oid = await git.expandOid({ fs, gitdir, oid: ref.toLowerCase(), cache });
    } catch (err) {
      if ((err as { code?: string }).code === 'AmbiguousError') {
        throw new CascadeError('ambiguous-rev', `"${ref}" matches more than one object in ${where}; give more digits of the commit id`, { ref });
      }
      if (!isNotFound(err)) throw wrapGitError(err, where, ref);
    }
  }
  if (oid === undefined) {
    if ((await git.listBranches({ fs, gitdir }).catch(() => ['?'])).length === 0 && (await git.listTags({ fs, gitdir }).catch(() => ['?'])).length === 0) {
      throw new CascadeError('no-commits', `${where} has no commits yet, so there is no revision "${ref}" to read; commit first (git -C ${where} add -A && git -C ${where} commit -m "First fleet"), or drop --rev to read the files as they are`, { ref, gitdir });
    }
    throw new CascadeError(
      'unknown-rev',
      `"${ref}" is not a branch, tag or commit in ${where}; list them with \`git -C ${where} branch -a\` and \`git -C ${where} tag\`, or fetch it first`,
      { ref, gitdir },
    );
  }
  try {
    return await git.readCommit({ fs, gitdir, oid, cache });
  } catch (err) {
    throw new CascadeError('unknown-rev', `"${ref}" (${oid}) is not a commit in ${where}; give a branch, tag or commit`, {
      ref,
      cause: String(err),
    });
  }
}

function isNotFound(err: unknown): boolean {
  return (err as { code?: string }).code === 'NotFoundError';
}

function wrapGitError(err: unknown, where: string, ref: string): CascadeError {
  return new CascadeError('git-read', `cannot read "${ref}" from ${where}: ${(err as Error).message}; is this a git repository?`, {
    ref,
    where,
  });
}
