import type { DeviceDesired, DeviceId } from '../core/types.js';
import type { DeviceCounts, DeviceState, RegionStatus } from '../protocol/region-status.js';

export type { DeviceCounts, DeviceState, RegionStatus } from '../protocol/region-status.js';
import type { DeviceRecord, RevisionRecord } from './state-store.js';

/**
 * Where a device stands against the applied revision, by the same clock as the rollout engine: a
 * device that never reported is `new` until `offlineAfterMs` has passed since it enrolled, then
 * offline; one that has not reported for `offlineAfterMs` is offline, whatever it said last; otherwise
 * any failed app makes it failed; otherwise it is converged when it reports exactly its desired
 * versions, all healthy.
 */
export function deviceState(
  device: DeviceRecord,
  desired: DeviceDesired | undefined,
  now: number,
  offlineAfterMs: number,
  handed?: DeviceDesired,
): DeviceState {
  if (device.lastSeen === null) return now - device.enrolledAt > offlineAfterMs ? 'offline' : 'new';
  if (now - device.lastSeen > offlineAfterMs) return 'offline';
  for (const app in device.apps) if (device.apps[app]!.state === 'failed') return 'failed';
  if (isConverged(device, desired ?? {})) return 'converged';
  // Running what it was handed, yet behind git: its rollout holds it back.
  return handed && isConverged(device, handed) ? 'pending' : 'updating';
}

export function isConverged(device: DeviceRecord, desired: DeviceDesired): boolean {
  for (const app in desired) {
    const report = device.apps[app];
    if (!report || report.version !== desired[app]!.version || report.state !== 'healthy') return false;
  }
  for (const app in device.apps) {
    if (!(app in desired) && device.apps[app]!.version !== null) return false;
  }
  return true;
}

export function countDevices(
  devices: DeviceRecord[],
  desired: ReadonlyMap<DeviceId, DeviceDesired>,
  handed: ReadonlyMap<DeviceId, { apps: DeviceDesired }>,
  now: number,
  offlineAfterMs: number,
): DeviceCounts {
  const counts: DeviceCounts = { total: 0, converged: 0, new: 0, updating: 0, pending: 0, failed: 0, offline: 0 };
  for (const device of devices) {
    if (device.revoked) continue;
    counts.total++;
    counts[deviceState(device, desired.get(device.id), now, offlineAfterMs, handed.get(device.id)?.apps)]!++;
  }
  return counts;
}

export function revisionStatus(record: RevisionRecord): RegionStatus['revision'] {
  const refused = record.attempted !== null && record.attempted !== record.applied;
  return { attempted: record.attempted, applied: record.applied, error: refused ? record.errors : null };
}
