import path from 'node:path';
import type { Command } from 'commander';

/** `cascade init DIR`: a new fleet repository from the example template, with a first commit. */
export function registerInit(program: Command): void {
  program
    .command('init')
    .description('create a fleet repository in DIR (new or empty) from the example template, with a first commit')
    .argument('<dir>', 'directory to create the repository in; must not exist or be empty')
    .option('--branch <name>', 'name of the first branch', 'main')
    .option('--json', 'print {dir, branch, commit, files} as JSON on stdout')
    .action(async (dir: string, options: { branch: string; json?: boolean }) => {
      const { initFleetRepository } = await import('../../source/init-repository.js');
      const result = await initFleetRepository(dir, { branch: options.branch });
      const absolute = path.resolve(dir);
      if (options.json) {
        process.stdout.write(JSON.stringify({ dir: absolute, branch: options.branch, ...result }, null, 2) + '\n');
        return;
      }
      process.stdout.write(
        [
          `Created a fleet repository in ${absolute}`,
          `  branch ${options.branch}, commit ${result.commit.slice(0, 7)}, ${result.files.length} files (README.md explains them)`,
          '',
          'Next:',
          `  cascade validate ${dir}`,
          `  git -C ${dir} remote add origin <url> && git -C ${dir} push -u origin ${options.branch}`,
          '',
        ].join('\n'),
      );
    });
}
