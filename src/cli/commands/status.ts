import { Command, Option } from 'commander';
import { CascadeError } from '../../core/errors.js';
import type { WatchUntil } from '../render/watch-verdict.js';
import { durationFlag, urlFlag } from '../parse-flags.js';

interface StatusFlags {
  regionUrl?: string;
  hubUrl?: string;
  hubToken?: string;
  revision?: string;
  json?: boolean;
  watch?: boolean;
  interval: number;
  until: WatchUntil;
  timeout?: number;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description("show a region's revision, devices and rollout progress (--watch: live progress bars)")
    .addOption(new Option('--region-url <url>', 'URL of a running region').env('CASCADE_REGION_URL').argParser(urlFlag))
    .addOption(new Option('--hub-url <url>', 'URL of the hub: every region and the recent commits').env('CASCADE_HUB_URL').argParser(urlFlag))
    .addOption(new Option('--hub-token <token>', "the hub's read token, when it requires one").env('CASCADE_HUB_READ_TOKEN'))
    .option('--revision <sha>', 'one commit: across the fleet with --hub-url; with --watch, the commit to follow')
    .option('--json', 'print the status as JSON')
    .option('--watch', 'follow the rollout (the next one when nothing moves) until it settles; exit 0 Complete, 1 Halted or Refused, 2 error or timeout')
    .addOption(new Option('--until <state>', 'with --watch: stop at `complete` (the first halt ends the watch) or when everything has `settled`').choices(['complete', 'settled']).default('settled'))
    .addOption(new Option('--timeout <duration>', 'with --watch: give up (exit 2) after this long').argParser(durationFlag))
    .addOption(new Option('--interval <duration>', 'refresh period with --watch').default(1000, '1s').argParser(durationFlag))
    .action(async (flags: StatusFlags) => {
      const [{ showHubStatus }, { fetchRegionStatus }, { renderRegionStatus }, { watchHubRevision, watchRegionStatus }, { EXIT_CODES }, { renderRevision }] = await Promise.all([
        import('../hub/show-hub-status.js'),
        import('../render/fetch-status.js'),
        import('../render/render-status.js'),
        import('../render/watch-status.js'),
        import('../render/watch-verdict.js'),
        import('../render/render-fleet.js'),
      ]);
      const watchOptions = { intervalMs: flags.interval, until: flags.until, revision: flags.revision, timeoutMs: flags.timeout, json: Boolean(flags.json) };
      if (flags.watch && flags.hubUrl && !flags.regionUrl) {
        const { view, verdict } = await watchHubRevision({ hubUrl: flags.hubUrl, token: flags.hubToken }, watchOptions);
        if (!flags.json) process.stdout.write(`${renderRevision(view)}\n${verdict.end}: ${verdict.message}\n`);
        process.exitCode = EXIT_CODES[verdict.end];
        return;
      }
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
      const { status, verdict } = await watchRegionStatus(flags.regionUrl, watchOptions);
      if (!flags.json) process.stdout.write(`${renderRegionStatus(status)}\n${verdict.end}: ${verdict.message}\n`);
      process.exitCode = EXIT_CODES[verdict.end];
    });
}
