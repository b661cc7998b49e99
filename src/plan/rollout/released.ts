import type { AppName, DesiredApp, DeviceId } from '../../core/types.js';
import type { RolloutPlan } from './types.js';

/**
 * The `released` predicate of computeHandOut (src/plan/hand-out.ts) for a rollout plan: a device
 * may be handed a Deployment's version when the plan released it for that very version. A
 * Deployment the plan does not know is held back rather than let through without rules: every
 * Deployment resolved in the region must go through planRollouts (collectRolloutInputs does that).
 */
export function releasedBy(plan: Pick<RolloutPlan, 'release' | 'states'>): (device: DeviceId, app: AppName, desired: DesiredApp) => boolean {
  return (device, _app, desired) => {
    const released = plan.release.get(desired.deployment);
    if (!released || !released.has(device)) return false;
    return plan.states.get(desired.deployment)?.version === desired.version;
  };
}

/**
 * The attempt computeHandOut hands with a released version: the round of the Deployment's last
 * operator retry for the devices it re-attempted, else 0 (none).
 */
export function attemptsBy(plan: Pick<RolloutPlan, 'states'>): (device: DeviceId, app: AppName, desired: DesiredApp) => number {
  const retried = new Map<string, { round: number; devices: Set<DeviceId> } | null>();
  return (device, _app, desired) => {
    let entry = retried.get(desired.deployment);
    if (entry === undefined) {
      const retry = plan.states.get(desired.deployment)?.retry;
      entry = retry ? { round: retry.round, devices: new Set(retry.devices) } : null;
      retried.set(desired.deployment, entry);
    }
    return entry && entry.devices.has(device) ? entry.round : 0;
  };
}
