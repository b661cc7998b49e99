import fs from 'node:fs';
import git from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import { CascadeError } from '../core/errors.js';

export interface PushOptions {
  dir: string;
  /** Remote URL; the `origin` remote when absent. */
  url?: string;
  branch: string;
  auth?: { username: string; password: string };
}

/** Pushes a branch over smart HTTP through isomorphic-git. */
export async function pushBranch(options: PushOptions): Promise<void> {
  const result = await git.push({
    fs,
    http,
    dir: options.dir,
    url: options.url,
    remote: options.url ? undefined : 'origin',
    ref: options.branch,
    remoteRef: options.branch,
    onAuth: options.auth ? () => options.auth : undefined,
  });
  if (!result.ok) {
    throw new CascadeError('push-failed', `push of ${options.branch} to ${options.url ?? 'origin'} was refused: ${result.error ?? JSON.stringify(result.refs)}. Pull the remote's changes first.`);
  }
}
