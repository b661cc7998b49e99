import fs from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import git from 'isomorphic-git';
import { CascadeError } from '../core/errors.js';

export interface GitIdentity {
  name: string;
  email: string;
}

/**
 * Who authors a commit Cascade writes for a person, found the way git finds it: GIT_AUTHOR_NAME and
 * GIT_AUTHOR_EMAIL, then the repository's `user.name`/`user.email`, then the user's global config
 * ($XDG_CONFIG_HOME/git/config, then ~/.gitconfig; GIT_CONFIG_GLOBAL when set). Like git, it refuses
 * rather than inventing an author.
 */
export async function resolveGitIdentity(location: { gitdir: string }, env: NodeJS.ProcessEnv = process.env): Promise<GitIdentity> {
  let name = env['GIT_AUTHOR_NAME'] || undefined;
  let email = env['GIT_AUTHOR_EMAIL'] || undefined;
  if (!name || !email) {
    const repoName = (await git.getConfig({ fs, gitdir: location.gitdir, path: 'user.name' })) as string | undefined;
    const repoEmail = (await git.getConfig({ fs, gitdir: location.gitdir, path: 'user.email' })) as string | undefined;
    name ||= repoName || undefined;
    email ||= repoEmail || undefined;
  }
  for (const file of globalConfigFiles(env)) {
    if (name && email) break;
    const user = readUserSection(file);
    name ||= user.name;
    email ||= user.email;
  }
  if (!name || !email) {
    throw new CascadeError(
      'git-identity-unknown',
      `no commit author: set it as for git, e.g. git config --global user.name "Your Name" && git config --global user.email you@example.com (or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL)`,
    );
  }
  return { name, email };
}

function globalConfigFiles(env: NodeJS.ProcessEnv): string[] {
  if (env['GIT_CONFIG_GLOBAL']) return [env['GIT_CONFIG_GLOBAL']];
  const home = env['HOME'] || homedir();
  const xdg = env['XDG_CONFIG_HOME'] || join(home, '.config');
  // git reads the XDG file first and ~/.gitconfig after it, so ~/.gitconfig wins: look there first.
  return [join(home, '.gitconfig'), join(xdg, 'git', 'config')];
}

/** `name` and `email` of the `[user]` section of a git config file (quotes and comments handled; includes not followed). */
function readUserSection(file: string): { name?: string; email?: string } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  const found: { name?: string; email?: string } = {};
  let inUser = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const section = /^\[\s*([A-Za-z0-9.-]+)(?:\s+"[^"]*")?\s*\]/.exec(line);
    if (section) {
      inUser = section[1]!.toLowerCase() === 'user';
      continue;
    }
    if (!inUser) continue;
    const entry = /^([A-Za-z][A-Za-z0-9-]*)\s*=\s*(.*)$/.exec(line);
    if (!entry) continue;
    const key = entry[1]!.toLowerCase();
    let value = entry[2]!.replace(/\s+[#;].*$/, '').trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    if (key === 'name' && value) found.name = value;
    if (key === 'email' && value) found.email = value;
  }
  return found;
}
