import { Counter, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { HaltReverter } from '../reconciler/halt-revert.js';
import type { StateStore } from '../reconciler/state-store.js';
import { splitUrlCredentials, toBasicAuth } from '../source/git-auth.js';
import type { CommitSigner } from '../source/sign-commit.js';

/** What the region needs to push reverts on a halt (`spec.rollout.onHalt`). */
export interface HaltRevertConfig {
  /** `--git-push-token`: a token allowed to push to the fleet repository (GitHub-style unless pushUsername). */
  pushToken?: string;
  /** With the token: the user name some hosts want (GitLab `oauth2`, Bitbucket `x-token-auth`). */
  pushUsername?: string;
  /** `--signing-key`: the region's OpenPGP key, so regions with --verify-commits trust its reverts. */
  signer?: CommitSigner;
}

/** The region's HaltReverter: its remote (credentials out of the URL), push credential, signer and metric. */
export function haltRevertsFor(
  config: { repo: string; branch: string; region: string; log: Logger; haltRevert?: HaltRevertConfig },
  gitdir: string,
  store: StateStore,
  registry: Registry,
  clock: () => number,
  onPushedToBranch: () => void,
): HaltReverter {
  const remote = /^[a-z][a-z0-9+.-]*:\/\//i.test(config.repo) || /^[^/]+@[^/]+:/.test(config.repo) ? splitUrlCredentials(config.repo).url : null;
  const token = config.haltRevert?.pushToken;
  const counter = new Counter({
    name: 'cascade_halt_reverts_total',
    help: 'Reverts the region wrote on a halt (spec.rollout.onHalt), by outcome: pushed, failed, skipped',
    labelNames: ['outcome'],
    registers: [registry],
  });
  return new HaltReverter({
    region: config.region,
    gitdir,
    remoteUrl: remote,
    branch: config.branch,
    auth: token ? toBasicAuth({ token, username: config.haltRevert?.pushUsername }) : undefined,
    signer: config.haltRevert?.signer,
    store,
    log: config.log,
    clock,
    counter,
    onPushedToBranch,
  });
}
