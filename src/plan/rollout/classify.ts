import type { DeviceRolloutState, RolloutDeviceInput } from './types.js';

/**
 * Where a device stands in a rollout to `version`, in this order:
 * - new: never reported, enrolled no longer than `offlineAfterMs` ago (at `enrolledAt`, else at
 *   `since`, the rollout's start): not handed anything yet, not updating, but holding its wave;
 * - offline: silent for longer than `offlineAfterMs`, or enrolled longer ago than that without a
 *   report, whatever it said last; set aside, neither failed nor blocking its wave;
 * - healthy: reports `version`, healthy (whether or not this rollout handed it);
 * - pending: not handed `version` yet;
 * - failed: handed `version` and reports the app failed (an attempt that failed: the attempt it was
 *   handed, not an earlier one an operator's retry asked it to repeat);
 * - updating: handed `version`, not healthy at it yet, not failed.
 */
export function classifyDevice(device: RolloutDeviceInput, version: string, now: number, offlineAfterMs: number, since: number = now): DeviceRolloutState {
  if (device.lastSeen === null) return now - (device.enrolledAt ?? since) > offlineAfterMs ? 'offline' : 'new';
  if (now - device.lastSeen > offlineAfterMs) return 'offline';
  const report = device.report;
  if (report && report.version === version && report.state === 'healthy') return 'healthy';
  if (device.handedVersion !== version) return 'pending';
  // A failure of an earlier attempt is not one of this attempt: the device was asked to try again.
  return report?.state === 'failed' && (report.attempt ?? 0) >= (device.handedAttempt ?? 0) ? 'failed' : 'updating';
}

/** Handed `version` already, or running it healthy: releasing it changes nothing on the device. */
export function alreadyThere(device: RolloutDeviceInput, version: string): boolean {
  return device.handedVersion === version || (device.report?.version === version && device.report.state === 'healthy');
}
