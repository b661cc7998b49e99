import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { durationFlag } from '../parse-flags.js';

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
    .addOption(new Option('--region-url <url>', 'URL of a running region').env('CASCADE_REGION_URL'))
    .addOption(new Option('--hub-url <url>', 'URL of the hub: every region and the recent commits').env('CASCADE_HUB_URL'))
    .addOption(new Option('--hub-token <token>', "the hub's read token, when it requires one").env('CASCADE_HUB_READ_TOKEN'))
    .option('--revision <sha>', 'with --hub-url: one commit across the fleet')
    .option('--json', 'print the status as JSON')
    .option('--watch', 'redraw a live progress bar until the rollout settles')
    .addOption(new Option('--interval <duration>', 'refresh period with --watch').default(1000, '1s').argParser(durationFlag))
    .action(async (flags: StatusFlags) => {
      const [{ showHubStatus }, { fetchRegionStatus }, { renderRegionStatus }, { watchRegionStatus }] = await Promise.all([
        import('../hub/show-hub-status.js'),
        import('../render/fetch-status.js'),
        import('../render/render-status.js'),
        import('../render/watch-status.js'),
      ]);
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
      const settled = await watchRegionStatus(flags.regionUrl, flags.interval);
      process.stdout.write(renderRegionStatus(settled) + '\n');
    });
}
