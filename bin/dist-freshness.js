// Tells whether dist/ (src/ compiled by `npm run build`) was built from the sources as they are
// now. The build writes a stamp of the sources it compiled; this file compares it with src/.
// Plain JavaScript with no dependency, because bin/cascade.js needs it before tsx is loaded.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const SRC_DIR = join(ROOT, 'src');
export const DIST_DIR = join(ROOT, 'dist');
/** The stamp inside dist/: JSON `{ stat, content }`, the fingerprints of the sources it was compiled from. */
export const STAMP_NAME = '.sources.json';
/** The CLI's entry point in dist/ (dist/ mirrors src/, so `new URL('../../schemas/', import.meta.url)` resolves alike). */
export const COMPILED_MAIN = join(DIST_DIR, 'cli', 'main.js');

/** Every file under `dir`, sorted, so fingerprints do not depend on the order the file system lists them in. */
export function listSourceFiles(dir = SRC_DIR) {
  const out = [];
  const walk = (folder) => {
    const entries = readdirSync(folder, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) out.push(path);
    }
  };
  walk(dir);
  return out;
}

/**
 * Cheap: each file's path, size and modification time, one line per file. Changes when any file is
 * added, removed or written. Kept whole in the stamp (a few KB) rather than hashed: comparing it needs
 * neither node:crypto nor a digest, which `cascade --help` would pay for at every start (~8 ms).
 */
export function statFingerprint(files, dir = SRC_DIR) {
  let listing = '';
  for (const file of files) {
    const { size, mtimeMs } = statSync(file);
    listing += `${relative(dir, file)}\0${size}\0${mtimeMs}\n`;
  }
  return listing;
}

/**
 * Exact: each file's path and bytes. Survives copies that do not keep modification times (a container
 * build). Asynchronous only to load node:crypto when it is needed: after the stat fingerprint differed.
 */
export async function contentFingerprint(files, dir = SRC_DIR) {
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256');
  for (const file of files) {
    hash.update(`${relative(dir, file)}\0`);
    hash.update(readFileSync(file));
    hash.update('\0');
  }
  return hash.digest('hex');
}

/** The stamp dist/ was built with, or null when there is no complete build. */
export function readStamp(distDir = DIST_DIR) {
  try {
    const stamp = JSON.parse(readFileSync(join(distDir, STAMP_NAME), 'utf8'));
    return typeof stamp?.stat === 'string' && typeof stamp?.content === 'string' ? stamp : null;
  } catch {
    return null;
  }
}

/**
 * True when dist/ holds a complete build of src/ as it is now: same files and bytes. A checkout
 * without src/ (an install that ships dist/ only) counts as current when dist/ is complete.
 */
export async function distIsCurrent() {
  const stamp = readStamp();
  if (stamp === null || !existsSync(COMPILED_MAIN)) return false;
  if (!existsSync(SRC_DIR)) return true;
  const files = listSourceFiles();
  return stamp.stat === statFingerprint(files) || stamp.content === (await contentFingerprint(files));
}
