import { describeHalt } from '../../plan/rollout/totals.js';
import type { RegionStatus } from '../../protocol/region-status.js';
import type { DeploymentRolloutStatus } from '../../protocol/rollout-status.js';
import type { RevisionState } from '../../hub/views.js';

/**
 * When `cascade status --watch` stops, and with what exit code. Pure: a snapshot and what the watch
 * saw first go in, a verdict comes out.
 * - With `revision`: that commit must be applied (or refused) and its rollouts settle.
 * - Without: a region that is settled when the watch starts is waited on until something moves (a
 *   new revision applied or refused, a new rollout), so the watch can start before the commit.
 * - `until: 'complete'` stops at the first halt; `until: 'settled'` waits for every rollout to be
 *   Complete or Halted. Exit 0 when everything completed, 1 when a rollout halted or the revision was
 *   refused (timeouts and errors exit 2 elsewhere). A Paused rollout does not move either: it ends the
 *   watch like a halt (end Paused, exit 1) until a commit resumes it.
 */

export type WatchUntil = 'complete' | 'settled';
export type WatchEnd = 'Complete' | 'Halted' | 'Paused' | 'Refused';

export interface WatchVerdict {
  end: WatchEnd;
  message: string;
}

export const EXIT_CODES: Record<WatchEnd, number> = { Complete: 0, Halted: 1, Paused: 1, Refused: 1 };

export interface RegionWatch {
  until: WatchUntil;
  /** A commit id or its prefix: follow that revision. */
  revision?: string;
  /** The first status the watch read. */
  first: RegionStatus;
}

/** Halted, Paused, or Stalled on a problem with its settings: it will not move until a commit (or an operator) changes it. */
const isStuck = (r: DeploymentRolloutStatus) => r.state === 'Halted' || r.state === 'Stalled' || r.state === 'Paused';

const rolloutKey = (r: DeploymentRolloutStatus) => `${r.deployment}@${r.version}@${r.revision}`;
const matches = (sha: string | null, prefix: string) => sha !== null && sha.startsWith(prefix.toLowerCase());

/** True when nothing moves: no device updating and every rollout Complete or Halted. */
export function isRegionSettled(status: RegionStatus): boolean {
  return status.devices.updating === 0 && (status.rollouts ?? []).every((r) => r.state === 'Complete' || isStuck(r));
}

/** Something happened since the watch began: another revision applied or refused, or a new rollout. */
function movedSince(first: RegionStatus, now: RegionStatus): boolean {
  if (now.revision.applied !== first.revision.applied || now.revision.attempted !== first.revision.attempted) return true;
  const before = new Set((first.rollouts ?? []).map(rolloutKey));
  return (now.rollouts ?? []).some((r) => !before.has(rolloutKey(r)));
}

export function regionVerdict(status: RegionStatus, watch: RegionWatch): WatchVerdict | null {
  const { until, revision, first } = watch;
  let rollouts = status.rollouts ?? [];
  if (revision) {
    if (matches(status.revision.attempted, revision) && status.revision.error && !matches(status.revision.applied, revision)) {
      return { end: 'Refused', message: `revision ${revision} was refused: ${status.revision.error[0] ?? 'see cascade status'}` };
    }
    const own = rollouts.filter((r) => matches(r.revision, revision));
    if (!matches(status.revision.applied, revision) && own.length === 0) return null;
    rollouts = own;
  } else if (isRegionSettled(first) && !movedSince(first, status)) {
    return null;
  } else if (status.revision.error && status.revision.attempted !== first.revision.attempted) {
    return { end: 'Refused', message: `revision ${(status.revision.attempted ?? '').slice(0, 8)} was refused: ${status.revision.error[0] ?? 'see cascade status'}` };
  }
  const stuck = rollouts.filter(isStuck);
  if (stuck.length > 0 && (until === 'complete' || rollouts.every((r) => r.state === 'Complete' || isStuck(r)))) {
    const end: WatchEnd = stuck.every((r) => r.state === 'Paused') ? 'Paused' : 'Halted';
    return { end, message: stuck.map((r) => `${r.deployment} ${r.version} ${r.state}: ${r.halted ? `halted ${describeHalt(r)}` : r.message}`).join('; ') };
  }
  if (rollouts.every((r) => r.state === 'Complete') && status.devices.updating === 0) {
    return { end: 'Complete', message: rollouts.length ? rollouts.map((r) => `${r.deployment} ${r.version} Complete`).join('; ') : 'nothing to roll out' };
  }
  return null;
}

/** The hub's view of one commit across regions: its overall state decides. */
export function revisionStateVerdict(state: RevisionState, until: WatchUntil, sha: string): WatchVerdict | null {
  if (state === 'Complete') return { end: 'Complete', message: `${sha.slice(0, 8)} Complete in every region` };
  if (state === 'Refused') return { end: 'Refused', message: `${sha.slice(0, 8)} was refused` };
  // The hub calls a commit Halted once any region halted it: the same end for both --until.
  if (state === 'Halted') return { end: 'Halted', message: `${sha.slice(0, 8)} Halted${until === 'settled' ? ' in at least one region' : ''}` };
  return null;
}
