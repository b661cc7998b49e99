import fs from 'node:fs';
import git from 'isomorphic-git';

export interface TreeFile {
  oid: string;
  mode: string;
}

export interface GitLocation {
  dir?: string;
  gitdir: string;
}

/** Every file of a tree, by path. */
export async function flattenTree(location: GitLocation, treeOid: string): Promise<Map<string, TreeFile>> {
  const files = new Map<string, TreeFile>();
  const visit = async (oid: string, prefix: string): Promise<void> => {
    const { tree } = await git.readTree({ fs, ...location, oid });
    for (const entry of tree) {
      const path = prefix + entry.path;
      if (entry.type === 'tree') await visit(entry.oid, path + '/');
      else if (entry.type === 'blob') files.set(path, { oid: entry.oid, mode: entry.mode });
    }
  };
  await visit(treeOid, '');
  return files;
}

/** Writes the trees for a set of files and returns the root tree id. */
export async function writeFlatTree(location: GitLocation, files: Map<string, TreeFile>): Promise<string> {
  interface Folder {
    files: Map<string, TreeFile>;
    folders: Map<string, Folder>;
  }
  const root: Folder = { files: new Map(), folders: new Map() };
  for (const [path, file] of files) {
    const parts = path.split('/');
    let folder = root;
    for (const part of parts.slice(0, -1)) {
      let next = folder.folders.get(part);
      if (!next) {
        next = { files: new Map(), folders: new Map() };
        folder.folders.set(part, next);
      }
      folder = next;
    }
    folder.files.set(parts[parts.length - 1]!, file);
  }
  const write = async (folder: Folder): Promise<string> => {
    const tree: Array<{ mode: string; path: string; oid: string; type: 'blob' | 'tree' }> = [];
    for (const [name, sub] of folder.folders) tree.push({ mode: '040000', path: name, oid: await write(sub), type: 'tree' });
    for (const [name, file] of folder.files) tree.push({ mode: file.mode, path: name, oid: file.oid, type: 'blob' });
    return git.writeTree({ fs, gitdir: location.gitdir, tree });
  };
  return write(root);
}

/** Paths whose blob differs between two flattened trees. */
export function changedPaths(a: Map<string, TreeFile>, b: Map<string, TreeFile>): string[] {
  const paths = new Set<string>();
  for (const [path, file] of a) if (b.get(path)?.oid !== file.oid) paths.add(path);
  for (const path of b.keys()) if (!a.has(path)) paths.add(path);
  return [...paths].sort();
}
