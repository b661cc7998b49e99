import fs from 'node:fs';
import git from 'isomorphic-git';
import type { CommitInfo } from '../protocol/events.js';

export const MAX_SUBJECT_CHARS = 200;

/**
 * The subject line and author of one commit, read from the local object store (no network). Null
 * when the object is missing or not a commit: a description is a courtesy, never a reason to fail.
 */
export async function readCommitInfo(gitdir: string, oid: string): Promise<CommitInfo | null> {
  if (!/^[0-9a-f]{40}$/.test(oid)) return null;
  try {
    const { commit } = await git.readCommit({ fs, gitdir, oid });
    const firstLine = commit.message.split('\n', 1)[0]!.trim();
    const subject = firstLine.length > MAX_SUBJECT_CHARS ? `${firstLine.slice(0, MAX_SUBJECT_CHARS - 1)}…` : firstLine;
    const author = `${commit.author.name} <${commit.author.email}>`.slice(0, MAX_SUBJECT_CHARS);
    return { subject, author, authoredAt: commit.author.timestamp * 1000 };
  } catch {
    return null;
  }
}
