import { basename, resolve } from 'node:path';
import type { Command } from 'commander';
import { allowArtifactOriginOption, allowHttpArtifactsOption, artifactPolicyFrom } from '../parse-flags.js';

interface ValidateOptions {
  rev?: string;
  json?: boolean;
  allowArtifactOrigin?: string[];
  allowHttpArtifacts?: boolean;
}

/** `cascade validate [DIR] [--rev REV] [--json]`: exit 0 when the fleet repository is valid, 1 with every problem, 2 on usage errors. */
export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('check a fleet repository: YAML, schemas, references, rollout settings, priority overlaps')
    .argument('[dir]', 'fleet repository directory', '.')
    .option('--rev <rev>', 'check this commit (branch, tag or commit id) instead of the working tree; works on bare repositories')
    .option('--json', 'print {valid, revision, problems, warnings} as JSON on stdout')
    .addOption(allowArtifactOriginOption())
    .addOption(allowHttpArtifactsOption())
    .action(async (dir: string, options: ValidateOptions) => {
      const [{ formatProblem }, { loadRepository }] = await Promise.all([import('../../desired/format-problem.js'), import('../../desired/load-repository.js')]);
      const { fleet, problems, warnings, revision } = await loadRepository(dir, { rev: options.rev, artifactPolicy: artifactPolicyFrom(options) });
      const fields = ({ path, line, col, pointer, code, message }: (typeof problems)[number]) => ({ path, line, col, pointer, code, message });
      if (options.json) {
        const report = {
          valid: problems.length === 0,
          revision,
          problems: problems.map(fields),
          warnings: warnings.map(fields),
        };
        process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      } else {
        const name = basename(resolve(dir));
        // Warnings go to stderr: they never make the repository invalid.
        for (const warning of warnings) process.stderr.write(formatProblem(warning) + '\n');
        const at = revision === null ? 'the working tree' : options.rev && options.rev !== revision ? `${options.rev} (${revision})` : revision;
        if (problems.length === 0) {
          const counts = `${fleet.apps.size} apps, ${fleet.deployments.size} deployments, ${fleet.regions.size} regions`;
          process.stdout.write(`${name}: valid (${counts}) at ${at}\n`);
        } else {
          for (const problem of problems) process.stdout.write(formatProblem(problem) + '\n');
          process.stderr.write(`${name}: ${problems.length} problem${problems.length === 1 ? '' : 's'} at ${at}\n`);
        }
      }
      process.exitCode = problems.length === 0 ? 0 : 1;
    });
}
