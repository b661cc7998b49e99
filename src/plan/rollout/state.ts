import type { RolloutDeploymentInput, RolloutState } from './types.js';

/** Completed versions a state remembers; older ones are forgotten (a revert to them rolls out in waves). */
export const MAX_COMPLETED_VERSIONS = 20;

/**
 * The state a pass starts from: the previous one while the Deployment's fingerprint is unchanged,
 * else a fresh one (no waves done, no halt). A fresh state remembers the versions completed before,
 * adding the previous version when its rollout completed; it is a rollback when its version is one
 * of them. Only completed versions count, so re-applying a version whose rollout was reverted
 * half-way (a revert of the revert) rolls out in waves again instead of going out at once.
 */
export function startingState(
  previous: RolloutState | undefined,
  deployment: Pick<RolloutDeploymentInput, 'version' | 'fingerprint'>,
  now: number,
  revision: string,
): { state: RolloutState; fresh: boolean } {
  if (previous && previous.fingerprint === deployment.fingerprint) return { state: previous, fresh: false };
  let completedVersions: string[] = [];
  let rollback = false;
  let completedAt: number | null = null;
  if (previous) {
    if (previous.version === deployment.version) {
      // Only the selector or the rollout settings changed: same version, same kind of rollout.
      completedVersions = [...previous.completedVersions];
      rollback = previous.rollback;
      completedAt = previous.completedAt;
    } else {
      completedVersions = previous.completedAt === null ? [...previous.completedVersions] : remember(previous.completedVersions, previous.version);
      rollback = completedVersions.includes(deployment.version);
    }
  }
  return {
    fresh: true,
    state: {
      fingerprint: deployment.fingerprint,
      version: deployment.version,
      revision,
      completedVersions,
      startedAt: now,
      completedAt,
      rollback,
      currentWave: 1,
      waveCompletedAt: {},
      wavesCompleteAtStart: [],
      halted: null,
    },
  };
}

function remember(versions: readonly string[], version: string): string[] {
  const next = versions.filter((v) => v !== version);
  next.push(version);
  return next.slice(-MAX_COMPLETED_VERSIONS);
}
