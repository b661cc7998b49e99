import type { DeviceDesired, DeviceId } from '../core/types.js';
import type { DeploymentRolloutStatus } from '../plan/rollout/types.js';

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
 * Withholds the releases of a rollout whose artifact is not ready: of the devices the pass chose
 * (those not there yet), only the ones already handed the version, or running it, stay chosen; the
 * rollout's status says what it waits for. The engine's own state is left as planned, so the rollout
 * goes on from where it was once the artifact is ready. Costs the devices chosen, not the rollout's.
 */
export function withholdUnready(
  status: DeploymentRolloutStatus,
  chosen: ReadonlySet<DeviceId>,
  gate: ArtifactGate,
  handed: Pick<ReadonlyMap<DeviceId, DeviceDesired>, 'get'>,
  installed: Pick<ReadonlyMap<DeviceId, Record<string, string>>, 'get'>,
): { status: DeploymentRolloutStatus; chosen: ReadonlySet<DeviceId> } {
  if (chosen.size === 0 || (gate.relays && !gate.relays(status.app, status.version))) return { status, chosen };
  const kept = new Set<DeviceId>();
  let newcomers = 0;
  const running = new Map<string, number>();
  for (const device of chosen) {
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
  if (newcomers === 0) return { status, chosen };
  const from = [...running].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, MAX_FROM).map(([version]) => version);
  const reason = gate({ deployment: status.deployment, app: status.app, version: status.version, from });
  if (reason === null) return { status, chosen };
  return { status: { ...status, message: `waiting for the artifact: ${reason}`, waitingForArtifact: reason }, chosen: kept };
}
