import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import type { InventoryDevice } from '../../core/types.js';
import type { Plan } from '../../plan/types.js';
import { allowArtifactOriginOption, allowHttpArtifactsOption, artifactPolicyFrom, fractionFlag, urlFlag } from '../parse-flags.js';
import { secretFrom } from '../secrets.js';
import { allowRemovalHint, describeRemoval, exceedsRemovalLimit, removalsFromPlan, DEFAULT_MAX_REMOVAL } from '../../plan/removal.js';

type PlanFormat = 'text' | 'json' | 'markdown';

interface PlanFlags {
  inventory?: string;
  regionUrl?: string;
  operatorToken?: string;
  rev?: string;
  format: PlanFormat;
  json?: boolean;
  allowArtifactOrigin?: string[];
  allowHttpArtifacts?: boolean;
  maxRemoval: number;
}

/**
 * `cascade plan [DIR] --inventory FILE | --region-url URL`: what the fleet repository would change on
 * which devices, for a reviewer. Exit 1 when the repository has problems (no plan), 2 on bad input.
 */
export function registerPlan(program: Command): void {
  program
    .command('plan')
    .description('show the steps (install, upgrade, downgrade, remove) the fleet repository asks for, per region, Deployment and wave')
    .argument('[dir]', 'fleet repository directory', '.')
    .option('--inventory <file>', 'JSON array of devices: [{"id", "region", "labels": {...}, "apps": {"<app>": "<version>"}}]')
    .option('--region-url <url>', 'read the inventory from a running region (GET <url>/api/v1/devices) instead of a file', urlFlag)
    .addOption(new Option('--operator-token <token>', "the region's operator token, for --region-url").env('CASCADE_OPERATOR_TOKEN'))
    .option('--rev <rev>', 'plan a commit, branch or tag instead of the working tree')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json', 'markdown']).default('text'))
    .option('--json', 'same as --format json: only the plan JSON goes to stdout')
    .addOption(allowArtifactOriginOption())
    .addOption(allowHttpArtifactsOption())
    .addOption(new Option('--max-removal <share>', 'warn when the plan removes apps from more than this share of a region\'s devices (a region refuses such a revision)').default(DEFAULT_MAX_REMOVAL, '10%').argParser(fractionFlag))
    .action(async (dir: string, flags: PlanFlags) => {
      const format: PlanFormat = flags.json ? 'json' : flags.format;
      if ((flags.inventory === undefined) === (flags.regionUrl === undefined)) {
        throw new CascadeError(
          'invalid-arguments',
          flags.inventory === undefined
            ? 'cascade plan needs the devices to plan for: pass --inventory FILE (a JSON array of devices) or --region-url URL'
            : 'pass either --inventory or --region-url, not both',
        );
      }
      // The inventory file (20 MB for 100,000 devices) is read while the modules load and the repository
      // is read; a failure to read it is reported where it was before, after the repository's problems.
      const inventoryBytes = flags.inventory !== undefined ? readInventoryBytes(flags.inventory) : undefined;
      const [{ formatProblem }, { loadRepository }, { buildPlan }] = await Promise.all([
        import('../../desired/format-problem.js'),
        import('../../desired/load-repository.js'),
        import('../../plan/diff.js'),
      ]);
      const loaded = await loadRepository(dir, { rev: flags.rev, artifactPolicy: artifactPolicyFrom(flags) });
      for (const warning of loaded.warnings) process.stderr.write(formatProblem(warning) + '\n');
      if (loaded.problems.length > 0) {
        for (const problem of loaded.problems) process.stderr.write(formatProblem(problem) + '\n');
        process.stderr.write(
          `cascade: the fleet repository has ${loaded.problems.length} problem${loaded.problems.length === 1 ? '' : 's'}; fix ${loaded.problems.length === 1 ? 'it' : 'them'} to get a plan\n`,
        );
        process.exitCode = 1;
        return;
      }
      const devices = inventoryBytes !== undefined ? await parseInventoryBytes(await inventoryBytes, flags.inventory!) : await fetchInventory(flags.regionUrl!, secretFrom(flags.operatorToken, 'CASCADE_OPERATOR_TOKEN'));
      const plan = buildPlan(loaded.fleet, devices);
      // The logger (pino) is loaded only for its one debug line.
      if (/^(debug|trace)$/.test(process.env['CASCADE_LOG_LEVEL'] ?? '')) {
        (await import('../logger.js')).createCliLogger().debug({ revision: plan.revision, devices: devices.length, steps: plan.steps.length, conflicts: plan.conflicts.length }, 'plan built');
      }
      const warnings = removalsFromPlan(plan, devices)
        .filter((count) => exceedsRemovalLimit(count, flags.maxRemoval))
        .map((count) => `warning: ${describeRemoval(count, flags.maxRemoval)}; the region refuses this revision unless ${allowRemovalHint()}`);
      if (format === 'json') {
        // Beside the JSON, on stderr. The JSON (26 MB for 100,000 devices) is written in pieces as they are made.
        for (const warning of warnings) process.stderr.write(`${warning}\n`);
        const { planJsonChunks } = await import('../../plan/render-json.js');
        await writeChunks(process.stdout, planJsonChunks(plan));
        return;
      }
      process.stdout.write(withWarnings(await render(plan, format), format, warnings));
    });
}

/**
 * The mass-removal warnings where the reader of each format sees them: at the end of the text, under
 * the title of the Markdown for the pull request (read before merging), on stderr beside the JSON.
 */
function withWarnings(output: string, format: 'text' | 'markdown', warnings: string[]): string {
  if (warnings.length === 0) return output;
  if (format === 'text') return `${output.replace(/\n*$/, '\n')}\n${warnings.join('\n')}\n`;
  const quoted = warnings.map((w) => `> **Warning:** ${w.replace(/^warning: /, '')}`).join('\n>\n');
  const newline = output.indexOf('\n');
  return newline < 0 ? `${output}\n\n${quoted}\n` : `${output.slice(0, newline + 1)}\n${quoted}\n${output.slice(newline + 1)}`;
}

/** Writes each piece as it comes, waiting while the stream's buffer is full (a slow pipe reader). */
async function writeChunks(out: NodeJS.WritableStream, chunks: Iterable<string>): Promise<void> {
  for (const chunk of chunks) {
    if (!out.write(chunk)) await once(out, 'drain');
  }
}

async function render(plan: Plan, format: 'text' | 'markdown'): Promise<string> {
  switch (format) {
    case 'markdown':
      return (await import('../../plan/render-markdown.js')).renderPlanMarkdown(plan);
    case 'text':
      return (await import('../../plan/render-text.js')).renderPlanText(plan);
  }
}

export async function readInventoryFile(file: string): Promise<InventoryDevice[]> {
  return parseInventoryBytes(await readInventoryBytes(file), file);
}

/**
 * The file's bytes, or why they could not be read (never a rejected promise, so a read started early
 * and not waited for fails no one). Bytes decoded at once give one string where `readFile(file, 'utf8')`
 * joins a string per 512 KB read: for 20 MB, less for the garbage collector to copy and mark.
 */
function readInventoryBytes(file: string): Promise<Buffer | NodeJS.ErrnoException> {
  return readFile(file).catch((err: NodeJS.ErrnoException) => err);
}

async function parseInventoryBytes(bytes: Buffer | NodeJS.ErrnoException, file: string): Promise<InventoryDevice[]> {
  if (!Buffer.isBuffer(bytes)) {
    throw new CascadeError(
      'inventory-unreadable',
      `cannot read the inventory ${file}: ${bytes.code ?? bytes.message}; check the --inventory path`,
      { file },
    );
  }
  return (await import('../../plan/inventory.js')).parseInventory(bytes.toString('utf8'), file);
}

/** The inventory of a running region: `GET <url>/api/v1/devices` answers the same JSON array as a file. */
export async function fetchInventory(regionUrl: string, operatorToken?: string): Promise<InventoryDevice[]> {
  let base: URL;
  try {
    base = new URL(regionUrl);
  } catch {
    throw new CascadeError('invalid-arguments', `--region-url ${JSON.stringify(regionUrl)} is not a URL; use e.g. http://127.0.0.1:8080`);
  }
  const url = `${base.toString().replace(/\/+$/, '')}/api/v1/devices`;
  let response: Response;
  try {
    response = await fetch(url, {
      signal: AbortSignal.timeout(30_000),
      headers: { accept: 'application/json', ...(operatorToken ? { authorization: `Bearer ${operatorToken}` } : {}) },
    });
  } catch (err) {
    const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
    throw new CascadeError(
      'region-unreachable',
      `cannot reach the region at ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}; check --region-url and that \`cascade region\` is running`,
      { url },
    );
  }
  const body = await response.text();
  if (response.status === 401 || response.status === 403) {
    throw new CascadeError('region-operator-token-required', `${url} answered ${response.status}: the live inventory needs the region's operator token; pass --operator-token (or CASCADE_OPERATOR_TOKEN, or a context's token file)`, { url, status: response.status });
  }
  if (!response.ok) {
    throw new CascadeError('region-error', `${url} answered ${response.status} ${response.statusText}: ${body.slice(0, 300)}`, { url, status: response.status });
  }
  return (await import('../../plan/inventory.js')).parseInventory(body, url);
}
