import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { CascadeError } from '../core/errors.js';
import { IGNORE_FILE, fleetPathFilter } from './ignore.js';
import { byPath, gitBlobId, type FleetFile, type FleetSnapshot, type SkippedEntry } from './snapshot.js';

/** Files up to this size are read once and kept; bigger ones are hashed as a stream (the loader refuses them anyway). */
const KEEP_IN_MEMORY_BYTES = 1024 * 1024;
const PARALLEL_READS = 32;

/**
 * The fleet files in a directory as they are on disk (uncommitted changes included). Symlinks and
 * submodules (a folder with its own `.git`) are not followed; they are listed in `skipped`.
 */
export async function readWorktreeSnapshot(dir: string): Promise<FleetSnapshot> {
  const rootStat = await lstat(dir).catch(() => null);
  if (!rootStat?.isDirectory()) {
    throw new CascadeError('no-such-dir', `${dir} is not a directory; pass the directory of a fleet repository`, { dir });
  }
  const filter = fleetPathFilter(await readIgnoreFile(dir));
  const paths: string[] = [];
  const skipped: SkippedEntry[] = [];
  const pending: string[] = [''];
  while (pending.length > 0) {
    const relDir = pending.pop()!;
    const entries = await readdir(join(dir, relDir), { withFileTypes: true });
    for (const entry of entries) {
      const path = relDir ? `${relDir}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (!filter.includesDir(path)) continue;
        if (await lstat(join(dir, path, '.git')).then(() => true, () => false)) skipped.push({ path, kind: 'submodule' });
        else pending.push(path);
      } else if (entry.isFile()) {
        if (filter.includesFile(path)) paths.push(path);
      } else if (entry.isSymbolicLink() && (filter.includesFile(path) || filter.includesDir(path))) {
        skipped.push({ path, kind: 'symlink' });
      }
    }
  }
  skipped.sort(byPath);
  const files: FleetFile[] = new Array(paths.length);
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const i = next++;
      files[i] = await readWorktreeFile(dir, paths[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_READS, paths.length) }, worker));
  files.sort(byPath);
  return { revision: null, files, skipped };
}

async function readIgnoreFile(dir: string): Promise<string | null> {
  try {
    return await readFile(join(dir, IGNORE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

async function readWorktreeFile(dir: string, path: string): Promise<FleetFile> {
  const full = join(dir, path);
  const { size } = await lstat(full);
  if (size > KEEP_IN_MEMORY_BYTES) {
    return { path, id: await hashLargeFile(full, size), size, read: async () => new Uint8Array(await readFile(full)) };
  }
  // Keep the bytes that were hashed, so read() can never disagree with id.
  const content = new Uint8Array(await readFile(full));
  return { path, id: gitBlobId(content), size: content.byteLength, read: async () => content };
}

async function hashLargeFile(full: string, size: number): Promise<string> {
  const hash = createHash('sha1').update(`blob ${size}\0`);
  for await (const chunk of createReadStream(full)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
