import { plural } from '../core/text.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { CascadeError } from '../core/errors.js';
import { sumWaves } from '../plan/rollout/totals.js';
import type { DeploymentRolloutStatus } from '../plan/rollout/types.js';
import type { RegionStatus } from '../reconciler/region-status.js';
import type { Simulation } from '../simulate/simulation.js';
import type { ProgressPrinter } from './progress-printer.js';
import { getRollouts, getStatus } from './region-api.js';

export interface ConvergenceTarget {
  /** For messages, e.g. "the rollout of sensor-agent 2.6.0". */
  what: string;
  /** The revision the region must have applied. */
  revision: string;
  /** app -> version every simulated device must run. */
  versions: Record<string, string>;
  /** Deployments whose rollout is shown; every Deployment when absent. */
  deployments?: string[];
}

export interface ConvergenceContext {
  regionUrl: string;
  simulation: Simulation;
  printer: ProgressPrinter;
  timeoutMs: number;
  /** updatesSent before the step: progress shows the growth. */
  updatesBefore: number;
  pollMs?: number;
  signal?: AbortSignal;
  /** Set by the caller when a device stopped on an error no retry fixes. */
  fatal?: () => Error | null;
}

export interface Convergence {
  status: RegionStatus;
  /** Null when the region has no rollout engine (no GET /api/v1/rollouts). */
  rollouts: DeploymentRolloutStatus[] | null;
}

/**
 * Polls the region (status, and rollouts when it has them) and the simulated devices until every
 * device runs the target versions under the target revision, every watched rollout is Complete and
 * no update is in flight; shows progress meanwhile. Throws `demo-step-timeout` after `timeoutMs`.
 */
export async function waitForConvergence(ctx: ConvergenceContext, target: ConvergenceTarget): Promise<Convergence> {
  const devices = ctx.simulation.deviceIds.length;
  const deadline = Date.now() + ctx.timeoutMs;
  const milestones = new Map<string, string>();
  let lastLine = '';
  for (;;) {
    ctx.signal?.throwIfAborted();
    const fatal = ctx.fatal?.();
    if (fatal) throw fatal;
    const [status, rollouts] = await Promise.all([getStatus(ctx.regionUrl, ctx.signal), getRollouts(ctx.regionUrl, ctx.signal)]);
    const watched = (rollouts ?? []).filter((r) => !target.deployments || target.deployments.includes(r.deployment));
    const delta = status.updatesSent - ctx.updatesBefore;

    // A rollout's phase or wave changing is a milestone: printed at once, and named when several run.
    let milestone = false;
    for (const rollout of watched) {
      const key = `${rollout.version} ${rollout.state} ${rollout.currentWave}`;
      if (milestones.get(rollout.deployment) === key) continue;
      milestones.set(rollout.deployment, key);
      milestone = true;
      if (watched.length > 1) ctx.printer.line(`  ${rollout.deployment} ${rollout.version}: ${describeRollout(rollout)}`);
    }
    const single = watched.length === 1 ? watched[0]! : null;
    const line = single
      ? `  ${describeRollout(single)}   ${plural(delta, 'update')} handed out`
      : `  ${describeDevices(status, devices, target.revision)}   ${plural(delta, 'update')} handed out`;
    const key = single ? line.replace(/ \(next wave in \d+s\)/, '') : line;
    ctx.printer.live(line, { key, milestone: milestone && single !== null, terminalOnly: watched.length > 1 });
    lastLine = line;

    if (isConverged(status, watched, rollouts !== null, ctx.simulation, target, devices)) {
      ctx.printer.settle();
      return { status, rollouts };
    }
    if (Date.now() > deadline) {
      ctx.printer.settle();
      throw new CascadeError(
        'demo-step-timeout',
        `${target.what} did not converge within ${Math.round(ctx.timeoutMs / 1000)} s. Last progress: "${lastLine.trim()}"; ` +
          `region: revision applied ${short(status.revision.applied)} (expected ${short(target.revision)}), ` +
          `${status.devices.converged}/${devices} converged, ${status.devices.updating} updating, ${status.devices.failed} failed, ${status.devices.offline} offline; ` +
          `devices: ${ctx.simulation.statsLine()}. Run \`cascade demo --verbose\` to see the region's logs.`,
      );
    }
    await sleep(ctx.pollMs ?? 250, undefined, { signal: ctx.signal });
  }
}

function isConverged(
  status: RegionStatus,
  watched: DeploymentRolloutStatus[],
  hasEngine: boolean,
  simulation: Simulation,
  target: ConvergenceTarget,
  devices: number,
): boolean {
  if (status.revision.applied !== target.revision) return false;
  if (status.devices.total !== devices || status.devices.converged !== devices) return false;
  const stats = simulation.stats();
  if (stats.applying > 0) return false;
  for (const [app, version] of Object.entries(target.versions)) {
    if (stats.versions[app]?.[version] !== devices) return false;
  }
  if (hasEngine) {
    for (const rollout of watched) {
      const wanted = target.versions[rollout.app];
      if (wanted !== undefined && rollout.version !== wanted) return false;
      if (rollout.state !== 'Complete') return false;
    }
  }
  return true;
}

/** `wave 1/3  5 healthy, 0 updating, 45 pending   Progressing` */
export function describeRollout(rollout: DeploymentRolloutStatus): string {
  const total = sumWaves(rollout.waves);
  const counts = [`${total.healthy} healthy`, `${total.updating} updating`, `${total.pending} pending`];
  if (total.failed) counts.push(`${total.failed} failed`);
  if (total.offline) counts.push(`${total.offline} offline`);
  let phase: string = rollout.state;
  if (rollout.rollback) phase += ' (rollback)';
  if (rollout.state === 'Baking' && rollout.nextWaveAt) phase += ` (next wave in ${Math.max(0, Math.ceil((rollout.nextWaveAt - Date.now()) / 1000))}s)`;
  if (rollout.state === 'Halted' || rollout.state === 'WaitingForWindow') phase += `: ${rollout.message}`;
  return `wave ${rollout.currentWave}/${rollout.waves.length}  ${counts.join(', ')}   ${phase}`;
}

function describeDevices(status: RegionStatus, devices: number, revision: string): string {
  const d = status.devices;
  // Before the region applies the target revision, "converged" would be measured against the old one.
  if (status.revision.applied !== revision) return `${d.total}/${devices} enrolled, region applying revision ${short(revision)}`;
  const parts = [`${d.converged}/${devices} converged`, `${d.updating} updating`];
  if (d.total < devices) parts.unshift(`${d.total}/${devices} enrolled`);
  if (d.failed) parts.push(`${d.failed} failed`);
  if (d.offline) parts.push(`${d.offline} offline`);
  return parts.join(', ');
}



export function short(sha: string | null): string {
  return sha ? sha.slice(0, 8) : '-';
}
