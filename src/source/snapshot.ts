import { createHash } from 'node:crypto';

/** One YAML file of a fleet repository at some revision (or in a working tree). */
export interface FleetFile {
  /** POSIX path relative to the repository root. */
  path: string;
  /** Git blob oid (sha1 of `blob <size>\0<content>`): equal content, equal id, at any path or revision. */
  id: string;
  /**
   * Byte length, or UNKNOWN_SIZE for git blobs: isomorphic-git cannot tell a blob's size without reading it,
   * so the loader checks the length of what read() returns, before parsing.
   */
  size: number;
  read(): Promise<Uint8Array>;
}

/** The fleet files of one revision: YAML files only, after ignore rules, sorted by path. */
export interface FleetSnapshot {
  /** Commit oid, or null for a working tree. */
  revision: string | null;
  files: FleetFile[];
  /** Symlinks and submodules the listing met and did not follow (paths outside .cascadeignore only), sorted by path. */
  skipped?: SkippedEntry[];
}

export interface SkippedEntry {
  path: string;
  kind: 'symlink' | 'submodule';
}

export const UNKNOWN_SIZE = -1;

/** The oid git gives a blob with this content. */
export function gitBlobId(content: Uint8Array): string {
  return createHash('sha1').update(`blob ${content.byteLength}\0`).update(content).digest('hex');
}

export function byPath(a: { path: string }, b: { path: string }): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}
