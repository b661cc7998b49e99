import fs from 'node:fs';
import git from 'isomorphic-git';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { isCascadeError } from '../core/errors.js';
import type { LoadedFleet } from '../desired/model.js';
import { parseYamlText } from '../desired/parse-yaml.js';
import { effectiveRollout } from '../plan/waves.js';
import type { DeploymentRolloutStatus, HaltRevert } from '../plan/rollout/types.js';
import { commitsTouching, readFileAt } from '../source/file-history.js';
import { pushCommit } from '../source/push-commit.js';
import { revertCommit } from '../source/revert-commit.js';
import type { CommitSigner } from '../source/sign-commit.js';
import type { StateStore } from './state-store.js';

export interface HaltRevertOptions {
  region: string;
  /** The region's copy of the fleet repository (bare for a remote: `<data>/repo.git`). */
  gitdir: string;
  /** http(s) URL of the fleet repository, credentials removed; null when the region reads a local path. */
  remoteUrl: string | null;
  /** The branch the region follows: `onHalt: revert` pushes there. */
  branch: string;
  /** `--git-push-token`: the write credential; none: reverts are not pushed (and the region says so). */
  auth?: { username: string; password: string };
  /** `--signing-key`: the commit is signed, so regions with --verify-commits apply it. */
  signer?: CommitSigner;
  store: StateStore;
  log: Logger;
  clock: () => number;
  /** cascade_halt_reverts_total{outcome}. */
  counter?: Counter<'outcome'>;
  /** A revert went to the followed branch: ask for a fetching pass, which applies it. */
  onPushedToBranch?: () => void;
}

/** The trailer every halt revert carries; its presence marks a commit the region wrote. */
export const HALTED_TRAILER = 'Cascade-Halted';

/**
 * `spec.rollout.onHalt: revert | revert-branch`: when a rollout halts, the region writes the git revert
 * of the commit that brought the halted version (on top of the revision it serves, with trailers
 * `Cascade-Halted: <deployment> <version>` and `Cascade-Region: <region>`, signed with --signing-key)
 * and pushes it to the branch it follows (`revert`: the next pass applies it and the devices go back)
 * or to `cascade/revert-<short>` for review (`revert-branch`).
 *
 * Exactly once per halt: the attempt is claimed in the state database before anything is written, so
 * neither a second pass nor a restart pushes again; a push the remote refuses (the branch moved, say
 * because another region reverted first) is recorded as failed, not retried. Never in a loop: when
 * the halted version came back through a revert, nothing is pushed (a revert of a revert needs a person).
 * Without a write credential or a remote to push to, nothing is claimed: the region logs why once and
 * a restart with --git-push-token acts on a halt that still holds.
 */
export class HaltReverter {
  private readonly warned = new Set<string>();

  constructor(private readonly options: HaltRevertOptions) {}

  /** After a pass: acts on new halts, and names on each status the last revert of its Deployment. */
  async afterPass(fleet: LoadedFleet, statuses: DeploymentRolloutStatus[], served: string | null): Promise<void> {
    const { store, region } = this.options;
    let records: Map<string, { halt: string; record: HaltRevert }> | null = null;
    for (const status of statuses) {
      if (status.state !== 'Halted' || !status.halted || !served) continue;
      const mode = effectiveRollout(fleet, status.deployment, region).onHalt ?? 'hold';
      if (mode === 'hold') continue;
      await this.revertOnce(fleet, status, mode, served);
      records = null;
    }
    records ??= store.haltReverts();
    for (const status of statuses) {
      const found = records.get(status.deployment);
      if (found) status.revert = found.record;
    }
  }

  private async revertOnce(fleet: LoadedFleet, status: DeploymentRolloutStatus, mode: 'revert' | 'revert-branch', served: string): Promise<void> {
    const { store, log, clock, region } = this.options;
    const deployment = status.deployment;
    const key = `${status.version}@${status.revision}@${status.halted!.at}`;
    const fields = { deployment, version: status.version, onHalt: mode };
    const cannot = this.options.remoteUrl === null
      ? 'the region reads a local repository: there is no remote to push the revert to'
      : !/^https?:\/\//i.test(this.options.remoteUrl)
        ? `the region cannot push to ${this.options.remoteUrl}: only http(s) remotes are supported (SSH is not supported by the region's git client)`
        : !this.options.auth
          ? 'the region has no write credential: start it with --git-push-token (or CASCADE_GIT_PUSH_TOKEN)'
          : null;
    if (cannot) {
      if (!this.warned.has(`${deployment}@${key}`)) {
        this.warned.add(`${deployment}@${key}`);
        log.warn(fields, `rollout of ${deployment} ${status.version} halted with onHalt: ${mode}, but ${cannot}; holding instead`);
      }
      return;
    }
    const base: HaltRevert = { mode, outcome: 'failed', at: clock(), message: 'the region stopped while writing the revert; it is not tried again for this halt' };
    if (!store.claimHaltRevert(deployment, key, base)) return;
    const record = await this.writeAndPush(fleet, status, mode, served).catch((err: unknown): HaltRevert => ({
      ...base,
      at: clock(),
      message: `${isCascadeError(err) ? `[${err.code}] ` : ''}${err instanceof Error ? err.message : String(err)}`,
    }));
    // Error texts can be long (a host's reply); the status and the hub summary carry a bounded line.
    if (record.message.length > 2000) record.message = `${record.message.slice(0, 1999)}…`;
    store.recordHaltRevert(deployment, key, record);
    this.options.counter?.inc({ outcome: record.outcome });
    const line = `rollout of ${deployment} ${status.version} halted (onHalt: ${mode}): ${record.message}`;
    if (record.outcome === 'pushed') log.warn({ ...fields, commit: record.commit, reverted: record.reverted, branch: record.branch }, line);
    else log.error({ ...fields, outcome: record.outcome }, line);
    if (record.outcome === 'pushed' && mode === 'revert') this.options.onPushedToBranch?.();
  }

  private async writeAndPush(fleet: LoadedFleet, status: DeploymentRolloutStatus, mode: 'revert' | 'revert-branch', served: string): Promise<HaltRevert> {
    const { gitdir, region, clock, signer } = this.options;
    const deployment = status.deployment;
    const at = clock();
    const path = fleet.sources.get(`Deployment/${deployment}`)?.path;
    if (!path) return { mode, outcome: 'skipped', at, message: `Deployment ${deployment} has no file in the served revision` };
    const change = await findChange(gitdir, served, path, deployment, status.version);
    if (!change) return { mode, outcome: 'skipped', at, message: `no commit on the served history brought ${deployment} to ${status.version}; revert by hand (cascade rollback --deployment ${deployment})` };
    if (change.reverts) {
      return {
        mode,
        outcome: 'skipped',
        reverted: change.commit,
        at,
        message: `${status.version} came back through a revert (${change.commit.slice(0, 8)} "${change.subject}"); a revert of a revert is not pushed automatically: roll forward with a new commit`,
      };
    }
    const result = await revertCommit({
      gitdir,
      commit: change.commit,
      onto: served,
      author: { name: `Cascade region ${region}`, email: `cascade-region@${encodeURIComponent(region)}.invalid` },
      explanation: `The rollout of Deployment ${deployment} ${status.version} halted in region ${region}: ${status.halted!.reason}.\nRolls ${deployment} back to ${change.from ?? '(none)'} (onHalt: ${mode}).`,
      trailers: [`${HALTED_TRAILER}: ${deployment} ${status.version}`, `Cascade-Region: ${region}`],
      sign: signer,
    });
    const branch = mode === 'revert' ? this.options.branch : `cascade/revert-${change.commit.slice(0, 8)}`;
    await pushCommit({ gitdir, url: this.options.remoteUrl!, commit: result.commit, branch, auth: this.options.auth });
    return {
      mode,
      outcome: 'pushed',
      commit: result.commit,
      reverted: change.commit,
      branch,
      at: clock(),
      message:
        mode === 'revert'
          ? `pushed ${result.commit.slice(0, 8)} to ${branch}: the revert of ${change.commit.slice(0, 8)} "${change.subject}"; the next pass applies it`
          : `pushed ${result.commit.slice(0, 8)} to branch ${branch} for review: the revert of ${change.commit.slice(0, 8)} "${change.subject}"`,
    };
  }
}

interface Change {
  commit: string;
  subject: string;
  from: string | null;
  /** The commit is itself a revert (`This reverts commit X.`). */
  reverts: boolean;
}

/** The newest commit on `ref`'s first-parent history that changed Deployment `name`'s version to `version`. */
async function findChange(gitdir: string, ref: string, path: string, name: string, version: string): Promise<Change | null> {
  for (const touch of await commitsTouching({ gitdir, ref, filepath: path })) {
    const after = versionIn(await readFileAt({ gitdir, commit: touch.commit, filepath: path }), name);
    if (after !== version) continue;
    const before = touch.parent ? versionIn(await readFileAt({ gitdir, commit: touch.parent, filepath: path }), name) : null;
    if (before === version) continue;
    const { commit } = await git.readCommit({ fs, gitdir, oid: touch.commit });
    return { commit: touch.commit, subject: touch.subject, from: before, reverts: /^This reverts commit [0-9a-f]{40}\b/m.test(commit.message) };
  }
  return null;
}

function versionIn(text: string | null, name: string): string | null {
  if (text === null) return null;
  for (const doc of parseYamlText(text).documents) {
    const value = doc.value as { kind?: unknown; metadata?: { name?: unknown }; spec?: { version?: unknown } } | null;
    if (value && value.kind === 'Deployment' && value.metadata?.name === name) return typeof value.spec?.version === 'string' ? value.spec.version : null;
  }
  return null;
}
