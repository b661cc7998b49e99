import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { urlFlag } from '../parse-flags.js';
import type { InventoryDevice } from '../../core/types.js';
import type { DiffLabels } from '../../plan/render-diff.js';
import { secretFrom } from '../secrets.js';
import { fetchInventory, readInventoryFile } from './plan.js';

type DiffFormat = 'text' | 'markdown' | 'json';

interface DiffFlags {
  base: string;
  head?: string;
  inventory?: string;
  regionUrl?: string;
  operatorToken?: string;
  format: DiffFormat;
  json?: boolean;
}

/**
 * `cascade diff [DIR] --base REV [--head REV]`: which devices' desired versions a change moves,
 * per Deployment and region (a pull request: base = the target branch, head = the branch or the
 * working tree). Exit 1 when head has problems (no diff), 2 on bad input.
 */
export function registerDiff(program: Command): void {
  program
    .command('diff')
    .description("what a change does: which devices' desired versions move between two revisions, per Deployment and region (a pull request's review comment)")
    .argument('[dir]', 'fleet repository (a clone, or a bare repository with --head)', '.')
    .requiredOption('--base <rev>', 'the revision the change applies to, e.g. origin/main or the merge base')
    .option('--head <rev>', 'the changed revision (default: the working tree)')
    .option('--inventory <file>', 'devices to compare, a JSON array as `cascade plan --inventory` takes')
    .addOption(new Option('--region-url <url>', "compare a running region's live inventory instead of a file").env('CASCADE_REGION_URL').argParser(urlFlag))
    .addOption(new Option('--operator-token <token>', "the region's operator token, for --region-url").env('CASCADE_OPERATOR_TOKEN'))
    .addOption(new Option('--format <format>', 'output format; markdown is the pull-request comment').choices(['text', 'markdown', 'json']).default('text'))
    .option('--json', 'same as --format json')
    .action(async (dir: string, flags: DiffFlags, command: Command) => {
      const format: DiffFormat = flags.json ? 'json' : flags.format;
      const regionUrl = command.getOptionValueSource('regionUrl') === 'env' && flags.inventory !== undefined ? undefined : flags.regionUrl;
      if (flags.inventory !== undefined && regionUrl !== undefined) {
        throw new CascadeError('invalid-arguments', 'diff: pass either --inventory or --region-url, not both');
      }
      if (flags.head === undefined && !existsSync(join(dir, '.git')) && existsSync(join(dir, 'HEAD')) && existsSync(join(dir, 'objects'))) {
        throw new CascadeError('head-required', `${dir} is a bare repository, which has no working tree to compare: pass --head REV (e.g. --head main)`);
      }
      // Loaded on use, so `cascade --help` and the other commands do not pay for git, YAML and schemas.
      const [{ formatProblem }, { loadRepository }, { diffRevisions }, { renderDiffJson, renderDiffMarkdown, renderDiffText }] = await Promise.all([
        import('../../desired/format-problem.js'),
        import('../../desired/load-repository.js'),
        import('../../plan/diff-revisions.js'),
        import('../../plan/render-diff.js'),
      ]);
      const [base, head] = await Promise.all([loadRepository(dir, { rev: flags.base }), loadRepository(dir, { rev: flags.head })]);
      if (head.problems.length > 0) {
        for (const problem of head.problems) process.stderr.write(formatProblem(problem) + '\n');
        const n = head.problems.length;
        process.stderr.write(`cascade: ${flags.head ?? 'the working tree'} has ${n} problem${n === 1 ? '' : 's'}; fix ${n === 1 ? 'it' : 'them'} to get a diff\n`);
        process.exitCode = 1;
        return;
      }
      if (base.problems.length > 0) {
        process.stderr.write(`cascade: warning: the base ${flags.base} has ${base.problems.length} problem(s); documents that failed to load there count as absent\n`);
      }
      let devices: InventoryDevice[] = [];
      let inventoryLabel: string | undefined;
      if (flags.inventory !== undefined) {
        devices = await readInventoryFile(flags.inventory);
        inventoryLabel = basename(flags.inventory);
      } else if (regionUrl !== undefined) {
        devices = await fetchInventory(regionUrl, secretFrom(flags.operatorToken, 'CASCADE_OPERATOR_TOKEN'));
        inventoryLabel = `the region at ${regionUrl}`;
      }
      const diff = diffRevisions(base.fleet, head.fleet, devices);
      const labels: DiffLabels = {
        base: label(flags.base, base.revision),
        head: flags.head === undefined ? `the working tree of ${basename(resolve(dir))}` : label(flags.head, head.revision),
        inventory: inventoryLabel,
      };
      const text = format === 'json' ? renderDiffJson(diff, labels) : format === 'markdown' ? renderDiffMarkdown(diff, labels) : renderDiffText(diff, labels);
      process.stdout.write(text);
    });
}

/** `origin/main (3f2a9c1d)`, or the short commit id when that is what was given. */
function label(rev: string, oid: string | null): string {
  if (oid === null) return rev;
  const short = oid.slice(0, 8);
  return oid.startsWith(rev.toLowerCase()) ? short : `${rev} (${short})`;
}
