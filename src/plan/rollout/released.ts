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
