import fs, { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';

interface RollbackFlags {
  deployment?: string;
  commit?: string;
  push?: boolean;
  branch?: string;
  json?: boolean;
  force?: boolean;
}

export function registerRollback(program: Command): void {
  program
    .command('rollback')
    .description('write the git revert of the last commit that changed a Deployment (or of a commit), to push or review')
    .argument('[dir]', 'fleet repository (a working tree)', '.')
    .option('--deployment <name>', 'revert the last commit that changed this Deployment')
    .option('--commit <sha>', 'revert this commit')
    .option('--branch <name>', 'branch to commit on (default: the current branch)')
    .option('--push', 'push the revert commit to origin (credentials: CASCADE_GIT_TOKEN, or CASCADE_GIT_USERNAME/PASSWORD)')
    .option('--force', 'also undo a commit that was itself a rollback (bringing back the version it rolled back)')
    .addOption(new Option('--json', 'print the result as JSON'))
    .action(async (dirArg: string, flags: RollbackFlags) => {
      if (!flags.deployment === !flags.commit) {
        throw new CascadeError('rollback-usage', 'give exactly one of --deployment NAME (revert the last change to that Deployment) or --commit SHA.');
      }
      const [{ loadRepository }, { findRollbackTarget }, { credentialsFromEnv, toBasicAuth }, { pushBranch }, { revertCommit }, { resolveGitIdentity }] = await Promise.all([
        import('../../desired/load-repository.js'),
        import('../rollback/find-rollback-target.js'),
        import('../../source/git-auth.js'),
        import('../../source/push-branch.js'),
        import('../../source/revert-commit.js'),
        import('../../source/git-identity.js'),
      ]);
      const dir = resolve(dirArg);
      const gitdir = join(dir, '.git');
      if (!existsSync(gitdir)) throw new CascadeError('rollback-not-a-worktree', `${dir} is not a git working tree (no .git): run cascade rollback in a clone of the fleet repository.`);

      let commit = flags.commit;
      let explanation: string | undefined;
      if (flags.deployment) {
        const { fleet } = await loadRepository(dir, { rev: 'HEAD' });
        const source = fleet.sources.get(`Deployment/${flags.deployment}`);
        if (!source) {
          const known = [...fleet.deployments.keys()].sort().join(', ');
          throw new CascadeError('rollback-unknown-deployment', `no Deployment named "${flags.deployment}" at HEAD; known: ${known || 'none'}.`);
        }
        const target = await findRollbackTarget({ gitdir, ref: 'HEAD', deployment: flags.deployment, path: source.path });
        if (target.reverts && !flags.force) {
          throw new CascadeError(
            'rollback-of-rollback',
            `the last change to Deployment ${target.deployment} is itself a rollback: ${target.commit.slice(0, 8)} "${target.subject}" undid ${target.reverts.slice(0, 8)}. ` +
              `Reverting it would bring back ${target.deployment} ${target.from ?? '(deleted)'}, the version that was rolled back. ` +
              `Roll forward with a new commit (set the version you want), or pass --force to bring ${target.from ?? 'it'} back anyway.`,
            { commit: target.commit, reverts: target.reverts },
          );
        }
        commit = target.commit;
        explanation = `Rolls back Deployment ${target.deployment} from ${target.to ?? '(deleted)'} to ${target.from ?? '(none: the Deployment is removed)'}.`;
      }
      // Authored like any commit of the user's: GIT_AUTHOR_*, the repository's and the global git config.
      const author = await resolveGitIdentity({ gitdir });
      const result = await revertCommit({ dir, gitdir, commit: commit!, branch: flags.branch, explanation, author });
      if (flags.push) {
        const credentials = credentialsFromEnv();
        const branch = flags.branch ?? (await currentBranch(dir));
        await pushBranch({ dir, branch, auth: credentials ? toBasicAuth(credentials) : undefined });
      }
      if (flags.json) {
        process.stdout.write(JSON.stringify({ ...result, pushed: Boolean(flags.push) }, null, 2) + '\n');
        return;
      }
      const subject = result.message.split('\n')[0];
      process.stdout.write(
        `Wrote ${result.commit.slice(0, 8)}: ${subject}\n` +
          (explanation ? `  ${explanation}\n` : '') +
          `  files: ${result.paths.join(', ')}\n` +
          (flags.push ? '  pushed: the regions pick it up on their next pass (or at once through the webhook).\n' : '  Push it, or open a pull request with it, to roll back: git push\n'),
      );
    });
}

async function currentBranch(dir: string): Promise<string> {
  const { default: git } = await import('isomorphic-git');
  const branch = await git.currentBranch({ fs, dir });
  if (!branch) throw new CascadeError('rollback-detached-head', 'HEAD is detached: check out a branch or pass --branch.');
  return branch;
}
