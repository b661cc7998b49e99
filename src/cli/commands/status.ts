import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { showHubStatus } from '../hub/show-hub-status.js';
import { fetchRegionStatus } from '../render/fetch-status.js';
import { renderRegionStatus } from '../render/render-status.js';
import { watchRegionStatus } from '../render/watch-status.js';
import { durationFlag, urlFlag } from '../parse-flags.js';

interface StatusFlags {
  regionUrl?: string;
  hubUrl?: string;
  hubToken?: string;
  revision?: string;
  json?: boolean;
  watch?: boolean;
  interval: number;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description("show a region's revision, devices and rollout progress (--watch: live progress bars)")
    .addOption(new Option('--region-url <url>', 'URL of a running region').env('CASCADE_REGION_URL').argParser(urlFlag))
    .addOption(new Option('--hub-url <url>', 'URL of the hub: every region and the recent commits').env('CASCADE_HUB_URL').argParser(urlFlag))
    .addOption(new Option('--hub-token <token>', "the hub's read token, when it requires one").env('CASCADE_HUB_READ_TOKEN'))
    .option('--revision <sha>', 'with --hub-url: one commit across the fleet')
    .option('--json', 'print the status as JSON')
    .option('--watch', 'redraw a live progress bar until the rollout settles')
    .addOption(new Option('--interval <duration>', 'refresh period with --watch').default(1000, '1s').argParser(durationFlag))
    .action(async (flags: StatusFlags) => {
      if (flags.hubUrl && !flags.regionUrl) {
        await showHubStatus({ hubUrl: flags.hubUrl, token: flags.hubToken, revision: flags.revision, json: flags.json });
        return;
      }
      if (!flags.regionUrl) throw new CascadeError('status-url-required', 'say what to ask: --region-url URL (one region) or --hub-url URL (the fleet)');
      if (!flags.watch) {
        const status = await fetchRegionStatus(flags.regionUrl);
        process.stdout.write(flags.json ? JSON.stringify(status, null, 2) + '\n' : renderRegionStatus(status) + '\n');
        return;
      }
      const first = await fetchRegionStatus(flags.regionUrl);
      if (first.revision.applied === null && !first.source.reachable) {
        // Nothing will move until the region can read its repository: say why instead of watching forever.
        throw new CascadeError(
          'no-revision-yet',
          `region ${first.region} has applied no revision yet and cannot read its repository: ${first.source.error ?? 'unknown error'}; check its --repo and git credentials`,
        );
      }
      const settled = await watchRegionStatus(flags.regionUrl, flags.interval);
      process.stdout.write(renderRegionStatus(settled) + '\n');
    });
}
