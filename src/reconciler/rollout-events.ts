import type { CascadeEvent } from '../protocol/events.js';
import type { DeploymentRolloutStatus } from '../protocol/rollout-status.js';

/**
 * What changed in one rollout since the previous pass: a wave started, baking began, it halted or
 * completed. A rollout first seen after a restart but started before it (`bootAt`; Infinity: any rollout
 * seen for the first time) announces nothing: the stream says what happens, not what was. Pure.
 */
export function rolloutEvents(region: string, status: DeploymentRolloutStatus, previous: DeploymentRolloutStatus | null, bootAt: number): Array<Omit<CascadeEvent, 'id' | 'at'>> {
  const same = previous !== null && previous.version === status.version && previous.revision === status.revision;
  if (!previous && status.startedAt < bootAt) return [];
  const base = { region, revision: status.revision, deployment: status.deployment, app: status.app, version: status.version };
  const name = `${status.deployment} ${status.version}`;
  const events: Array<Omit<CascadeEvent, 'id' | 'at'>> = [];
  const waveBefore = same ? previous.currentWave : 0;
  if (status.currentWave > waveBefore && status.state !== 'Stalled') {
    const wave = status.waves[status.currentWave - 1];
    events.push({ ...base, type: 'rollout.wave-started', wave: status.currentWave, message: `${name}: wave ${status.currentWave}${wave ? ` (${wave.percent}%, ${wave.devices} devices)` : ''} started` });
  }
  const stateBefore = same ? previous.state : null;
  if (status.state !== stateBefore) {
    if (status.state === 'Baking') events.push({ ...base, type: 'rollout.baking', wave: status.currentWave, message: `${name}: baking after wave ${status.currentWave}: ${status.message}` });
    else if (status.state === 'Halted') events.push({ ...base, type: 'rollout.halted', message: `${name} halted: ${status.halted?.reason ?? status.message}` });
    else if (status.state === 'Complete') events.push({ ...base, type: 'rollout.complete', message: `${name} complete` });
  }
  return events;
}
