import type { WaveStatus } from './types.js';

export type RolloutTotals = Omit<WaveStatus, 'wave' | 'percent'>;

/** A rollout's device counts over all its waves, for the status views (CLI, demo, hub). */
export function sumWaves(waves: readonly WaveStatus[]): RolloutTotals {
  const total: RolloutTotals = { devices: 0, new: 0, pending: 0, updating: 0, healthy: 0, failed: 0, offline: 0 };
  for (const wave of waves) {
    total.devices += wave.devices;
    total.new += wave.new ?? 0; // summaries from regions that predate `new`
    total.pending += wave.pending;
    total.updating += wave.updating;
    total.healthy += wave.healthy;
    total.failed += wave.failed;
    total.offline += wave.offline;
  }
  return total;
}
