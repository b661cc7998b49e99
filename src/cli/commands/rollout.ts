import fs, { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { operatorRequest } from '../operator-request.js';
import { urlFlag } from '../parse-flags.js';

interface PauseFlags {
  push?: boolean;
  json?: boolean;
}

interface RetryFlags {
  regionUrl: string;
  operatorToken?: string;
  json?: boolean;
}

/**
 * `cascade rollout pause|resume DEPLOYMENT [DIR]` write a commit that sets or removes
 * `spec.rollout.paused` in the Deployment's file, the GitOps way: every region honours it on its next
 * pass. `cascade rollout retry DEPLOYMENT` asks one region to re-attempt the failed devices of a halt.
 */
export function registerRollout(program: Command): void {
  const rollout = program.command('rollout').description('pause, resume or retry a Deployment\'s rollout');
  for (const verb of ['pause', 'resume'] as const) {
    rollout
      .command(verb)
      .description(
        verb === 'pause'
          ? 'commit spec.rollout.paused: true: no further device is handed the version (devices already handed keep it)'
          : 'commit the removal of spec.rollout.paused: the rollout continues where it stopped',
      )
      .argument('<deployment>', 'the Deployment')
      .argument('[dir]', 'fleet repository (a working tree)', '.')
      .option('--push', 'push the commit to origin (credentials: CASCADE_GIT_TOKEN, or CASCADE_GIT_USERNAME/PASSWORD)')
      .addOption(new Option('--json', 'print the result as JSON'))
      .action(async (deployment: string, dirArg: string, flags: PauseFlags) => {
        const result = await commitPaused(resolve(dirArg), deployment, verb === 'pause', flags);
        if (flags.json) {
          process.stdout.write(JSON.stringify(result, null, 2) + '\n');
          return;
        }
        if (!result.commit) {
          process.stdout.write(`Deployment ${deployment} is already ${verb === 'pause' ? 'paused' : 'not paused'} (${result.path}); nothing to commit.\n`);
          return;
        }
        process.stdout.write(
          `Wrote ${result.commit.slice(0, 8)}: ${result.subject}\n  file: ${result.path}\n` +
            (result.pushed ? '  pushed: the regions pick it up on their next pass (or at once through the webhook).\n' : '  Push it (git push, or --push) for the regions to see it.\n'),
        );
      });
  }

  rollout
    .command('retry')
    .description('re-attempt the failed devices of a halted rollout, once, in one region (for when the cause was outside the version)')
    .argument('<deployment>', 'the halted Deployment')
    .addOption(new Option('--region-url <url>', 'URL of the region (or the current context\'s)').env('CASCADE_REGION_URL').argParser(urlFlag).makeOptionMandatory())
    .addOption(new Option('--operator-token <token>', "the region's operator token").env('CASCADE_OPERATOR_TOKEN'))
    .addOption(new Option('--json', 'print the result as JSON'))
    .action(async (deployment: string, flags: RetryFlags) => {
      const answer = (await operatorRequest(flags, 'POST', `/api/v1/rollouts/${encodeURIComponent(deployment)}/retry`, {})) as {
        deployment: string;
        version: string;
        devices: string[];
        count: number;
        state: string;
      };
      if (flags.json) {
        process.stdout.write(JSON.stringify(answer, null, 2) + '\n');
        return;
      }
      const n = answer.count;
      process.stdout.write(
        `retrying ${deployment} ${answer.version} on ${n} failed device${n === 1 ? '' : 's'}${n > 0 ? `: ${answer.devices.slice(0, 10).join(', ')}${n > Math.min(10, answer.devices.length) ? ', ...' : ''}` : ''}\n` +
          `  the halt is lifted for them; if they fail again the rollout halts again (cascade status --watch follows it)\n`,
      );
    });
}

export interface PausedCommit {
  deployment: string;
  paused: boolean;
  path: string;
  /** The commit written; null when the file already said so. */
  commit: string | null;
  subject: string | null;
  pushed: boolean;
}

/** Edits the Deployment's file in the working tree and commits it (and pushes it with --push). */
export async function commitPaused(dir: string, deployment: string, paused: boolean, flags: PauseFlags, env: NodeJS.ProcessEnv = process.env): Promise<PausedCommit> {
  const gitdir = join(dir, '.git');
  if (!existsSync(gitdir)) throw new CascadeError('rollout-not-a-worktree', `${dir} is not a git working tree (no .git): run cascade rollout ${paused ? 'pause' : 'resume'} in a clone of the fleet repository.`);
  // Loaded on use, so the other commands do not pay for git, YAML and schemas.
  const [{ default: git }, { loadRepository }, { credentialsFromEnv, toBasicAuth }, { resolveGitIdentity }, { pushBranch }, { setPaused }] = await Promise.all([
    import('isomorphic-git'),
    import('../../desired/load-repository.js'),
    import('../../source/git-auth.js'),
    import('../../source/git-identity.js'),
    import('../../source/push-branch.js'),
    import('../rollout/set-paused.js'),
  ]);
  // Committed on the checked-out branch, like git commit.
  const branch = await git.currentBranch({ fs, dir });
  if (!branch) throw new CascadeError('rollout-detached-head', 'HEAD is detached: check out the branch to commit on.');
  const { fleet } = await loadRepository(dir, { rev: 'HEAD' });
  const doc = fleet.deployments.get(deployment);
  const source = fleet.sources.get(`Deployment/${deployment}`);
  if (!doc || !source) {
    const known = [...fleet.deployments.keys()].sort().join(', ');
    throw new CascadeError('rollout-unknown-deployment', `no Deployment named "${deployment}" at HEAD; known: ${known || 'none'}.`);
  }
  const path = source.path;
  const [[, head, workdir, stage]] = await git.statusMatrix({ fs, dir, gitdir, filepaths: [path] }).then((m) => (m.length > 0 ? m : [[path, 1, 1, 1]]));
  if (!(head === workdir && workdir === stage)) {
    throw new CascadeError('rollout-dirty-worktree', `uncommitted changes in ${path}: commit or discard them first, so the commit holds only the ${paused ? 'pause' : 'resume'}.`);
  }
  const text = fs.readFileSync(join(dir, path), 'utf8');
  const next = setPaused(text, deployment, paused);
  if (next === null) return { deployment, paused, path, commit: null, subject: null, pushed: false };
  const author = await resolveGitIdentity({ gitdir }, env);
  fs.writeFileSync(join(dir, path), next);
  await git.add({ fs, dir, gitdir, filepath: path });
  const version = doc.spec.version;
  const subject = paused ? `Pause the rollout of Deployment ${deployment} (${version})` : `Resume the rollout of Deployment ${deployment} (${version})`;
  const body = paused
    ? `Sets spec.rollout.paused: no further device is handed ${version}; devices already handed it keep it.\nResume with: cascade rollout resume ${deployment}`
    : `Removes spec.rollout.paused: the rollout of ${version} continues where it stopped.`;
  const commit = await git.commit({ fs, dir, gitdir, message: `${subject}\n\n${body}\n`, author, ref: `refs/heads/${branch}` });
  let pushed = false;
  if (flags.push) {
    const credentials = credentialsFromEnv();
    await pushBranch({ dir, branch, auth: credentials ? toBasicAuth(credentials) : undefined });
    pushed = true;
  }
  return { deployment, paused, path, commit, subject, pushed };
}
