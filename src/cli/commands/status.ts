import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { fetchRegionStatus } from '../../status/fetch-status.js';
import { isSettled, renderRegionStatus } from '../../status/render-status.js';
import { durationFlag } from '../parse-flags.js';

interface StatusFlags {
  regionUrl: string;
  json?: boolean;
  watch?: boolean;
  interval: number;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description("show a region's revision, devices and rollout progress (--watch: live progress bars)")
    .addOption(new Option('--region-url <url>', 'URL of a running region').env('CASCADE_REGION_URL').makeOptionMandatory())
    .option('--json', 'print the status as JSON')
    .option('--watch', 'redraw a live progress bar until the rollout settles')
    .addOption(new Option('--interval <duration>', 'refresh period with --watch').default(1000, '1s').argParser(durationFlag))
    .action(async (flags: StatusFlags) => {
      if (!flags.watch) {
        const status = await fetchRegionStatus(flags.regionUrl);
        process.stdout.write(flags.json ? JSON.stringify(status, null, 2) + '\n' : renderRegionStatus(status) + '\n');
        return;
      }
      await watchStatus(flags.regionUrl, flags.interval);
    });
}

async function watchStatus(regionUrl: string, intervalMs: number): Promise<void> {
  const bars = new cliProgress.MultiBar(
    {
      format: ' {region} |{bar}| {value}/{total} converged  {updating} updating  {failed} failed  {offline} offline  rev {rev}',
      hideCursor: true,
      clearOnComplete: false,
      noTTYOutput: true,
      notTTYSchedule: 2000,
    },
    cliProgress.Presets.shades_classic,
  );
  let bar: cliProgress.SingleBar | null = null;
  for (;;) {
    const status = await fetchRegionStatus(regionUrl);
    const d = status.devices;
    const payload = { region: status.region, updating: d.updating, failed: d.failed, offline: d.offline, rev: (status.revision.applied ?? '-').slice(0, 8) };
    if (!bar) bar = bars.create(Math.max(d.total, 1), d.converged, payload);
    bar.setTotal(Math.max(d.total, 1));
    bar.update(d.converged, payload);
    if (isSettled(status) && d.total > 0) break;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  bars.stop();
}
