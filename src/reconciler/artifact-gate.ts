import type { DeviceDesired, DeviceId } from '../core/types.js';
import type { RolloutPlan } from '../plan/rollout/types.js';

/**
 * Asked per rollout before its devices are released: null when the version's artifact is ready to be
 * handed out, else why not (the region's relay is still fetching it, or it failed verification).
 */
export type ArtifactGate = ((rollout: { deployment: string; app: string; version: string; from: readonly string[] }) => string | null) & {
  /** Whether the version has an artifact to wait for at all: without one, its releases are not walked (O(devices) per pass). */
  relays?: (app: string, version: string) => boolean;
};

/** Versions of the app the newly released devices run, most common first (the bases worth a delta). */
const MAX_FROM = 3;

/**
 * Withholds the releases of rollouts whose artifact is not ready: only devices already handed the
 * version, or running it, stay released; the rollout's status says what it waits for. The engine's
 * own state is left as planned, so the rollout goes on from where it was once the artifact is ready.
 */
export function withholdUnready(
  plan: RolloutPlan,
  gate: ArtifactGate,
  handed: Pick<ReadonlyMap<DeviceId, DeviceDesired>, 'get'>,
  installed: Pick<ReadonlyMap<DeviceId, Record<string, string>>, 'get'>,
): RolloutPlan {
  let release: Map<string, Set<DeviceId>> | null = null;
  const statuses = plan.statuses.map((status) => {
    if (gate.relays && !gate.relays(status.app, status.version)) return status;
    const kept = new Set<DeviceId>();
    let newcomers = 0;
    const running = new Map<string, number>();
    for (const device of plan.release.get(status.deployment) ?? []) {
      const current = installed.get(device)?.[status.app];
      if (handed.get(device)?.[status.app]?.version === status.version || current === status.version) {
        kept.add(device);
        continue;
      }
      newcomers++;
      if (current !== undefined) running.set(current, (running.get(current) ?? 0) + 1);
    }
    // Only a rollout about to hand the version to someone new needs the artifact now: a finished one
    // whose artifact left the cache is not fetched again until a device needs it.
    if (newcomers === 0) return status;
    const from = [...running].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, MAX_FROM).map(([version]) => version);
    const reason = gate({ deployment: status.deployment, app: status.app, version: status.version, from });
    if (reason === null) return status;
    release ??= new Map(plan.release);
    release.set(status.deployment, kept);
    return { ...status, message: `waiting for the artifact: ${reason}`, waitingForArtifact: reason };
  });
  return release ? { ...plan, release, statuses } : plan;
}
