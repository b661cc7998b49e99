import fs from 'node:fs';
import { dirname, join } from 'node:path';
import git from 'isomorphic-git';

export interface CommitFilesOptions {
  dir: string;
  /** Path -> new content, or null to delete the file. */
  files: Record<string, string | null>;
  message: string;
  author?: { name: string; email: string };
}

/** Writes files into a working tree and commits them on the current branch, through isomorphic-git. */
export async function commitFiles(options: CommitFilesOptions): Promise<string> {
  const { dir } = options;
  for (const [path, content] of Object.entries(options.files)) {
    const full = join(dir, path);
    if (content === null) {
      await fs.promises.rm(full, { force: true });
      await git.remove({ fs, dir, filepath: path });
    } else {
      await fs.promises.mkdir(dirname(full), { recursive: true });
      await fs.promises.writeFile(full, content);
      await git.add({ fs, dir, filepath: path });
    }
  }
  return git.commit({
    fs,
    dir,
    message: options.message,
    author: options.author ?? { name: process.env['GIT_AUTHOR_NAME'] ?? 'Cascade', email: process.env['GIT_AUTHOR_EMAIL'] ?? 'cascade@localhost' },
  });
}
