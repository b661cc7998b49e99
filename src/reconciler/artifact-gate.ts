import type { DeviceDesired, DeviceId } from '../core/types.js';
import type { RolloutPlan } from '../plan/rollout/types.js';

/**
 * Asked per rollout before its devices are released: null when the version's artifact is ready to be
 * handed out, else why not (the region's relay is still fetching it, or it failed verification).
 */
export type ArtifactGate = (rollout: { deployment: string; app: string; version: string }) => string | null;

/**
 * Withholds the releases of rollouts whose artifact is not ready: only devices already handed the
 * version, or running it, stay released; the rollout's status says what it waits for. The engine's
 * own state is left as planned, so the rollout goes on from where it was once the artifact is ready.
 */
export function withholdUnready(
  plan: RolloutPlan,
  gate: ArtifactGate,
  handed: ReadonlyMap<DeviceId, DeviceDesired>,
  installed: ReadonlyMap<DeviceId, Record<string, string>>,
): RolloutPlan {
  let release: Map<string, Set<DeviceId>> | null = null;
  const statuses = plan.statuses.map((status) => {
    const reason = gate(status);
    if (reason === null) return status;
    release ??= new Map(plan.release);
    const kept = new Set<DeviceId>();
    for (const device of plan.release.get(status.deployment) ?? []) {
      if (handed.get(device)?.[status.app]?.version === status.version || installed.get(device)?.[status.app] === status.version) kept.add(device);
    }
    release.set(status.deployment, kept);
    return { ...status, message: `waiting for the artifact: ${reason}`, waitingForArtifact: reason };
  });
  return release ? { ...plan, release, statuses } : plan;
}
