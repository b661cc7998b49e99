import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import type { RegionStatus } from '../../protocol/region-status.js';
import { durationFlag, urlFlag } from '../parse-flags.js';
import { callRegion } from '../region-api.js';
import { secretFrom } from '../secrets.js';

interface ReconcileFlags {
  regionUrl: string;
  operatorToken?: string;
  wait?: boolean;
  timeout: number;
  json?: boolean;
}

/**
 * `cascade reconcile [--wait]`: ask a region for a pass now (fetch, validate, apply), as a git host's
 * webhook does; with --wait, wait for it and report its outcome. Exit 0 when the region applied the
 * head of its branch, 1 when it refused it (its problems on stderr), 2 when it cannot read the repository.
 */
export function registerReconcile(program: Command): void {
  program
    .command('reconcile')
    .description('ask a region for a pass now (POST /api/v1/reconcile); --wait reports whether it applied or refused the head of its branch')
    .addOption(new Option('--region-url <url>', 'URL of the region').env('CASCADE_REGION_URL').argParser(urlFlag).makeOptionMandatory())
    .addOption(new Option('--operator-token <token>', "the region's operator token").env('CASCADE_OPERATOR_TOKEN'))
    .option('--wait', 'wait for the pass to finish and report its outcome')
    .addOption(new Option('--timeout <duration>', 'with --wait: give up after this long').default(300_000, '5m').argParser(durationFlag))
    .option('--json', 'print the region\'s revision and source after the pass as JSON')
    .action(async (flags: ReconcileFlags) => {
      const token = secretFrom(flags.operatorToken, 'CASCADE_OPERATOR_TOKEN');
      await callRegion(flags.regionUrl, 'POST', `/api/v1/reconcile${flags.wait ? '?wait=1' : ''}`, { token, timeoutMs: flags.wait ? flags.timeout : 15_000 });
      if (!flags.wait) {
        if (flags.json) process.stdout.write(JSON.stringify({ requested: true }) + '\n');
        else process.stdout.write(`asked the region at ${flags.regionUrl} for a pass (\`cascade reconcile --wait\` waits for its outcome)\n`);
        return;
      }
      const status = await callRegion<RegionStatus>(flags.regionUrl, 'GET', '/api/v1/status', { token });
      const { revision, source } = status;
      if (flags.json) process.stdout.write(JSON.stringify({ region: status.region, revision, source }, null, 2) + '\n');
      const short = (sha: string | null) => (sha ? sha.slice(0, 8) : '-');
      if (!source.reachable) {
        throw new CascadeError(
          'region-source-unreachable',
          `region ${status.region} could not read its repository: ${source.error ?? 'unknown error'}; ${revision.applied ? `it keeps serving ${short(revision.applied)}` : 'it has applied no revision yet'} (check its --repo and git credentials)`,
        );
      }
      const refused = revision.error !== null && revision.attempted !== null && revision.attempted !== revision.applied && revision.attempted === source.head;
      if (refused) {
        for (const line of revision.error ?? []) process.stderr.write(`${line}\n`);
        if (!flags.json) {
          process.stdout.write(`region ${status.region} refused ${short(revision.attempted)}, the head of its branch; it keeps serving ${revision.applied ? short(revision.applied) : 'nothing (no revision applied yet)'}\n`);
        }
        process.exitCode = 1;
        return;
      }
      if (!flags.json) process.stdout.write(`region ${status.region} applied ${short(revision.applied)}, the head of its branch\n`);
    });
}
