import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CascadeError } from '../core/errors.js';
import type { FleetSource, FleetSourceOptions } from './fleet-source.js';
import { openLocalSource } from './local-source.js';
import { openRemoteSource } from './remote-source.js';

/** Opens the source for `--repo`: a remote for http(s) URLs, a local repository for paths and file:// URLs. */
export async function openFleetSource(opts: FleetSourceOptions): Promise<FleetSource> {
  const { repo } = opts;
  if (/^https?:\/\//i.test(repo)) return openRemoteSource(opts);
  if (/^file:\/\//i.test(repo)) return openLocalSource({ ...opts, repo: fileURLToPath(repo) });
  if (/^(ssh|git):\/\//i.test(repo) || /^[\w.-]+@[\w.-]+:/.test(repo)) {
    throw new CascadeError(
      'source-unsupported-url',
      `--repo ${repo}: only http(s) URLs and local paths are supported (no ssh or git://); use the repository's https URL with --git-token`,
      { repo },
    );
  }
  return openLocalSource({ ...opts, repo: resolve(repo) });
}
