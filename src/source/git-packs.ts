import type * as nodeFs from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import git from 'isomorphic-git';

/**
 * Pack files of the region's fetched copy: making thin packs whole after a fetch, and merging the
 * packs that fetches leave behind into one (housekeeping). Every other module reads objects through
 * isomorphic-git and never looks at packs.
 */

/** The pack files of a gitdir, as paths relative to it. */
export async function listPacks(gitdir: string): Promise<Set<string>> {
  const names = await readdir(join(gitdir, 'objects', 'pack')).catch(() => [] as string[]);
  return new Set(names.filter((n) => n.endsWith('.pack')).map((n) => join('objects', 'pack', n)));
}

/**
 * A thin pack holds deltas against objects that live in other packs. Kept as
 * is, every fetch would lengthen a delta chain across packs (the root tree
 * changes in every commit), and reads would slow down without end. Like
 * `git index-pack --fix-thin`, the pack is replaced with one that holds every
 * object whole; a pack without outside bases (e.g. the first clone) is left alone.
 */
export async function fattenThinPack(fs: typeof nodeFs, gitdir: string, packfile: string): Promise<void> {
  const packPath = join(gitdir, packfile);
  const idxPath = packPath.replace(/\.pack$/, '.idx');
  const [pack, idx] = await Promise.all([fs.promises.readFile(packPath), fs.promises.readFile(idxPath)]);
  const entries = readPackIndex(idx);
  const REF_DELTA = 7;
  if (!entries.some(({ offset }) => ((pack[offset]! >> 4) & 0b111) === REF_DELTA)) return;
  const cache = {};
  const oids = entries.map((e) => e.oid);
  const { filename, packfile: fat } = await git.packObjects({ fs, gitdir, oids, cache });
  if (!fat || join(gitdir, 'objects/pack', filename) === packPath) return;
  await fs.promises.writeFile(join(gitdir, 'objects/pack', filename), fat);
  await git.indexPack({ fs, dir: gitdir, gitdir, filepath: join('objects/pack', filename), cache });
  // The index goes first: a pack without an index is ignored by readers.
  await fs.promises.rm(idxPath, { force: true });
  await fs.promises.rm(packPath, { force: true });
}

/** The object ids and pack offsets of a version 2 pack index. */
function readPackIndex(idx: Buffer): Array<{ oid: string; offset: number }> {
  if (idx.readUInt32BE(0) !== 0xff744f63 || idx.readUInt32BE(4) !== 2) throw new Error('unsupported pack index version');
  const count = idx.readUInt32BE(8 + 255 * 4);
  const oidsAt = 8 + 256 * 4;
  const offsetsAt = oidsAt + count * 20 + count * 4;
  const largeAt = offsetsAt + count * 4;
  const entries: Array<{ oid: string; offset: number }> = [];
  for (let i = 0; i < count; i++) {
    const oid = idx.subarray(oidsAt + i * 20, oidsAt + (i + 1) * 20).toString('hex');
    let offset = idx.readUInt32BE(offsetsAt + i * 4);
    if (offset & 0x80000000) offset = Number(idx.readBigUInt64BE(largeAt + (offset & 0x7fffffff) * 8));
    entries.push({ oid, offset });
  }
  return entries;
}

export interface CompactResult {
  packsBefore: number;
  packsAfter: number;
  objects: number;
}

/**
 * Merges every pack of `gitdir` into one (each fetch adds a pack, so a long-running region's object
 * store only grows in files and lookups). The new pack and its index are written first; only then are
 * the old ones removed, index before pack, so a reader always finds every object. The caller keeps
 * fetches out while this runs.
 */
export async function compactPacks(fs: typeof nodeFs, gitdir: string): Promise<CompactResult> {
  const packs = [...(await listPacks(gitdir))];
  if (packs.length <= 1) return { packsBefore: packs.length, packsAfter: packs.length, objects: 0 };
  const oids = new Set<string>();
  for (const pack of packs) {
    const idx = await fs.promises.readFile(join(gitdir, pack.replace(/\.pack$/, '.idx')));
    for (const { oid } of readPackIndex(idx)) oids.add(oid);
  }
  const cache = {};
  const { filename, packfile } = await git.packObjects({ fs, gitdir, oids: [...oids], cache });
  const target = join('objects/pack', filename);
  if (!packfile) throw new Error('packObjects returned no pack');
  if (!packs.includes(target)) {
    await fs.promises.writeFile(join(gitdir, target), packfile);
    await git.indexPack({ fs, dir: gitdir, gitdir, filepath: target, cache });
  }
  for (const pack of packs) {
    if (pack === target) continue;
    await fs.promises.rm(join(gitdir, pack.replace(/\.pack$/, '.idx')), { force: true });
    await fs.promises.rm(join(gitdir, pack), { force: true });
  }
  return { packsBefore: packs.length, packsAfter: (await listPacks(gitdir)).size, objects: oids.size };
}
