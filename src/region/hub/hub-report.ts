import type { DeviceDesired, DeviceId } from '../../core/types.js';
import { MAX_DEVICES_LIST, type DeviceSummary, type HubSummaryInput } from '../../protocol/hub-summary.js';
import type { DeviceState, RegionStatus } from '../../reconciler/region-status.js';
import { installedVersions } from '../../reconciler/reconciler.js';
import type { DeviceRecord } from '../../reconciler/state-store.js';
import { attemptedVersion } from '../../reconciler/failed-version.js';

export interface RegionSummaryInput {
  /** The region's status, rollouts included. */
  status: RegionStatus;
  /** Every device of the region, as the state store lists them (by id). */
  devices: DeviceRecord[];
  /** The state each device is counted in (the region's index keeps it). */
  stateOf: (device: DeviceId) => DeviceState;
  /** What git asks of a device, and what it was last handed (the index keeps both). */
  desiredOf?: (device: DeviceId) => DeviceDesired | undefined;
  handedOf?: (device: DeviceId) => DeviceDesired | undefined;
  now: number;
  offlineAfterMs: number;
  maxDevices?: number;
}

/**
 * What a region tells the hub (and its own dashboard): its status, rollouts and the first devices by
 * id, each with the version of an app that failed (not the one it went back to) and, when a halt
 * holds it back, the Deployment that halted.
 */
export function buildRegionSummary(input: RegionSummaryInput): HubSummaryInput {
  const max = input.maxDevices ?? MAX_DEVICES_LIST;
  const devicesList: DeviceSummary[] = [];
  const halted = new Set(input.status.rollouts.filter((r) => r.state === 'Halted').map((r) => r.deployment));
  let listed = 0;
  for (const device of input.devices) {
    if (device.revoked) continue;
    listed++;
    if (devicesList.length >= max) {
      // The total is in the status: no need to walk the rest of the fleet.
      listed = Math.max(listed, input.status.devices.total);
      break;
    }
    const handed = input.handedOf?.(device.id);
    const row: DeviceSummary = { id: device.id, state: input.stateOf(device.id), apps: installedVersions(device) };
    for (const app in device.apps) {
      const report = device.apps[app]!;
      if (report.state !== 'failed') continue;
      const version = attemptedVersion(report, handed?.[app]);
      if (version !== null) (row.failed ??= {})[app] = version;
    }
    const desired = row.state === 'pending' && halted.size > 0 ? input.desiredOf?.(device.id) : undefined;
    if (desired) {
      // Behind git on an app whose rollout halted: it will not move until the halt is resolved.
      for (const app in desired) {
        const wanted = desired[app]!;
        if (halted.has(wanted.deployment) && row.apps[app] !== wanted.version) {
          row.heldBy = wanted.deployment;
          break;
        }
      }
    }
    devicesList.push(row);
  }
  return {
    region: input.status.region,
    revision: input.status.revision,
    source: { reachable: input.status.source.reachable },
    devices: input.status.devices,
    updatesSent: input.status.updatesSent,
    rollouts: input.status.rollouts,
    devicesList,
    devicesTruncated: listed > devicesList.length,
  };
}
