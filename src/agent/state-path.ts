/**
 * Every path the agent writes or deletes is built here, inside its state folder.
 *
 * Promise: a name from the region (app, version, artifact file name) is one plain path segment;
 * the joined path is checked after resolution (no `..`, no absolute part) and against the real
 * location of the folders on disk, so no symlink inside the state folder can lead a write or a
 * delete out of it. Anything else is refused with STATE_PATH_REFUSED; nothing is sanitized into
 * a different name that might collide.
 */
import { lstat, mkdir, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { CascadeError } from '../core/errors.js';

export const STATE_PATH_REFUSED = 'state-path-refused';

/** Why `segment` cannot be one component of a path, or null. */
export function segmentProblem(segment: string): string | null {
  if (segment === '' || segment === '.' || segment === '..') return `"${segment}" is not a file name`;
  if (segment.length > 255) return 'longer than 255 characters';
  if (/[/\\\0]/.test(segment)) return 'holds a path separator or a NUL character';
  if (isAbsolute(segment)) return 'is an absolute path';
  return null;
}

/** Is `path` (after resolution) `root` itself or inside it? */
export function isInside(root: string, path: string): boolean {
  const rel = relative(resolve(root), resolve(path));
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * `<stateDir>/<segments...>`, after checking each segment and the result. With `create`, makes the
 * parent folders (mode 0700). Refuses when a folder on the way is a symlink leading out of the
 * state folder, or when the path itself is a symlink.
 */
export async function statePath(stateDir: string, segments: readonly string[], opts: { create?: boolean } = {}): Promise<string> {
  for (const segment of segments) {
    const problem = segmentProblem(segment);
    if (problem) throw new CascadeError(STATE_PATH_REFUSED, `refusing path ${JSON.stringify(segments.join('/'))} in the state folder: ${problem}`);
  }
  const root = resolve(stateDir);
  const full = join(root, ...segments);
  if (!isInside(root, full) || full === root) throw new CascadeError(STATE_PATH_REFUSED, `refusing path ${full}: it is not inside the state folder ${root}`);
  // Checked before making folders (mkdir would follow a link out) and again after.
  await checkRealLocation(root, full);
  if (opts.create) {
    await mkdir(dirname(full), { recursive: true, mode: 0o700 });
    await checkRealLocation(root, full);
  }
  return full;
}

/** Checks an existing path built earlier (e.g. read back from the state file) before deleting it. */
export async function checkStatePath(stateDir: string, path: string): Promise<string> {
  const root = resolve(stateDir);
  const full = resolve(path);
  if (!isInside(root, full) || full === root) throw new CascadeError(STATE_PATH_REFUSED, `refusing path ${full}: it is not inside the state folder ${root}`);
  await checkRealLocation(root, full);
  return full;
}

async function checkRealLocation(root: string, full: string): Promise<void> {
  const realRoot = await realpath(root).catch(() => root);
  // The nearest existing folder on the way must really be inside the state folder.
  let parent = dirname(full);
  for (;;) {
    const real = await realpath(parent).catch(() => null);
    if (real !== null) {
      if (!isInside(realRoot, real)) throw new CascadeError(STATE_PATH_REFUSED, `refusing path ${full}: ${parent} leads to ${real}, outside the state folder ${realRoot}`);
      break;
    }
    if (parent === root || dirname(parent) === parent) break;
    parent = dirname(parent);
  }
  const stat = await lstat(full).catch(() => null);
  if (stat?.isSymbolicLink()) throw new CascadeError(STATE_PATH_REFUSED, `refusing path ${full}: it is a symlink`);
}
