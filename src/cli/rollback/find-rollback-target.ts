import fs from 'node:fs';
import git from 'isomorphic-git';
import { CascadeError } from '../../core/errors.js';
import { parseYamlText } from '../../desired/parse-yaml.js';
import { commitsTouching, readFileAt } from '../../source/file-history.js';

export interface RollbackTarget {
  /** The commit to revert. */
  commit: string;
  subject: string;
  deployment: string;
  /** Version the Deployment asked for before that commit (null when the commit created it). */
  from: string | null;
  /** Version that commit introduced (null when the commit deleted the Deployment). */
  to: string | null;
  /** That commit is itself a revert (`This reverts commit X.`): the commit it reverted. */
  reverts: string | null;
}

/**
 * The last commit on `ref` that changed Deployment `name`: the one `cascade rollback --deployment`
 * reverts. Commits that touched the file without changing that Deployment's spec are passed over.
 */
export async function findRollbackTarget(options: { gitdir: string; ref: string; deployment: string; path: string }): Promise<RollbackTarget> {
  const { gitdir, deployment, path } = options;
  for (const change of await commitsTouching({ gitdir, ref: options.ref, filepath: path })) {
    const after = deploymentSpec(await readFileAt({ gitdir, commit: change.commit, filepath: path }), deployment);
    const before = change.parent ? deploymentSpec(await readFileAt({ gitdir, commit: change.parent, filepath: path }), deployment) : null;
    if (JSON.stringify(after) === JSON.stringify(before)) continue;
    const message = await readMessage(gitdir, change.commit);
    return { commit: change.commit, subject: change.subject, deployment, from: versionOf(before), to: versionOf(after), reverts: revertedCommit(message) };
  }
  throw new CascadeError('rollback-nothing-to-revert', `no commit on ${options.ref} changed Deployment ${deployment} (in ${path}); pass --commit SHA to revert a given commit.`);
}

function deploymentSpec(text: string | null, name: string): Record<string, unknown> | null {
  if (text === null) return null;
  for (const doc of parseYamlText(text).documents) {
    const value = doc.value as { kind?: unknown; metadata?: { name?: unknown }; spec?: unknown } | null;
    if (value && value.kind === 'Deployment' && value.metadata?.name === name) return (value.spec ?? {}) as Record<string, unknown>;
  }
  return null;
}

function versionOf(spec: Record<string, unknown> | null): string | null {
  return spec && typeof spec['version'] === 'string' ? spec['version'] : null;
}

async function readMessage(gitdir: string, oid: string): Promise<string> {
  return (await git.readCommit({ fs, gitdir, oid })).commit.message;
}

/** The commit a `git revert` (or `cascade rollback`) commit undid, from its `This reverts commit X.` line. */
export function revertedCommit(message: string): string | null {
  return /^This reverts commit ([0-9a-f]{40})\b/m.exec(message)?.[1] ?? null;
}
