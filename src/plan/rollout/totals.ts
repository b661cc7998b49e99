import type { HaltRecord, WaveStatus } from './types.js';

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

/**
 * A halted rollout's halt line, for every view that draws one (CLI status and watch, hub, dashboard).
 * It says which figures are from the moment of the halt (the engine's judgement, frozen in the
 * HaltRecord) and which are now; the "now" figures are sumWaves of the very wave rows the views draw
 * beside it, so the line and the rows cannot contradict each other. Null when the rollout is not halted.
 */
export function describeHalt(rollout: { halted?: HaltRecord | null; waves: readonly WaveStatus[] }): string | null {
  const halt = rollout.halted;
  if (!halt) return null;
  const now = sumWaves(rollout.waves);
  const at = new Date(halt.at).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const parts = [`${now.failed} failed`, `${now.updating} updating`, `${now.healthy} healthy`];
  if (now.pending) parts.push(`${now.pending} waiting`);
  if (now.new) parts.push(`${now.new} new`);
  if (now.offline) parts.push(`${now.offline} offline`);
  return `at the halt (${at}): ${halt.reason}; now: ${parts.join(', ')} of ${now.devices}`;
}
