import cliProgress from 'cli-progress';
import type { RegionStatus } from '../../reconciler/region-status.js';
import { sumWaves } from '../../plan/rollout/totals.js';
import { fetchRegionStatus } from './fetch-status.js';
import { isSettled } from './render-status.js';

/**
 * `cascade status --watch`: one progress bar for the region's devices and one per Deployment's
 * rollout (healthy devices at the new version), redrawn until every rollout is Complete or Halted.
 */
export async function watchRegionStatus(regionUrl: string, intervalMs: number, out: NodeJS.WriteStream = process.stderr): Promise<RegionStatus> {
  const bars = new cliProgress.MultiBar(
    {
      format: ' {name} |{bar}| {value}/{total} {label}',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      noTTYOutput: true,
      notTTYSchedule: 2000,
      stream: out,
    },
    cliProgress.Presets.shades_classic,
  );
  const byName = new Map<string, cliProgress.SingleBar>();
  const draw = (name: string, value: number, total: number, label: string) => {
    let bar = byName.get(name);
    if (!bar) {
      bar = bars.create(Math.max(total, 1), value, { name: name.padEnd(24), label });
      byName.set(name, bar);
    }
    bar.setTotal(Math.max(total, 1));
    bar.update(value, { name: name.padEnd(24), label });
  };
  try {
    for (;;) {
      const status = await fetchRegionStatus(regionUrl);
      const d = status.devices;
      draw(`region ${status.region}`, d.converged, d.total, `converged  ${d.updating} updating  ${d.pending ?? 0} pending  ${d.failed} failed  ${d.offline} offline  rev ${(status.revision.applied ?? '-').slice(0, 8)}`);
      for (const rollout of status.rollouts ?? []) {
        const { devices: total, healthy, failed } = sumWaves(rollout.waves);
        const halt = rollout.halted ? `  HALTED: ${rollout.halted.reason}` : '';
        draw(rollout.deployment, healthy, total, `at ${rollout.version}  ${rollout.state}  wave ${rollout.currentWave}/${rollout.waves.length}  ${failed} failed${halt}`);
      }
      if (isSettled(status) && d.total > 0) return status;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  } finally {
    bars.stop();
  }
}
