import type { DeviceId } from '../../core/types.js';
import { MAX_DEVICES_LIST, type DeviceSummary, type HubSummaryInput } from '../../protocol/hub-summary.js';
import type { DeviceState, RegionStatus } from '../../reconciler/region-status.js';
import { installedVersions } from '../../reconciler/reconciler.js';
import type { DeviceRecord } from '../../reconciler/state-store.js';

export interface RegionSummaryInput {
  /** The region's status, rollouts included. */
  status: RegionStatus;
  /** Every device of the region, as the state store lists them (by id). */
  devices: DeviceRecord[];
  /** The state each device is counted in (the region's index keeps it). */
  stateOf: (device: DeviceId) => DeviceState;
  now: number;
  offlineAfterMs: number;
  maxDevices?: number;
}

/** What a region tells the hub (and its own dashboard): its status, rollouts and the first devices by id. */
export function buildRegionSummary(input: RegionSummaryInput): HubSummaryInput {
  const max = input.maxDevices ?? MAX_DEVICES_LIST;
  const devicesList: DeviceSummary[] = [];
  let listed = 0;
  for (const device of input.devices) {
    if (device.revoked) continue;
    listed++;
    if (devicesList.length >= max) {
      // The total is in the status: no need to walk the rest of the fleet.
      listed = Math.max(listed, input.status.devices.total);
      break;
    }
    devicesList.push({
      id: device.id,
      state: input.stateOf(device.id),
      apps: installedVersions(device),
    });
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
