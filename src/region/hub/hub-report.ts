import type { DeviceDesired, DeviceId } from '../../core/types.js';
import { MAX_DEVICES_LIST, type DeviceSummary, type HubSummaryInput } from '../../protocol/hub-summary.js';
import { deviceState, type RegionStatus } from '../../reconciler/region-status.js';
import { installedVersions } from '../../reconciler/reconciler.js';
import type { DeviceRecord } from '../../reconciler/state-store.js';

export interface RegionSummaryInput {
  /** The region's status, rollouts included. */
  status: RegionStatus;
  /** Every device of the region, as the state store lists them (by id). */
  devices: DeviceRecord[];
  desired: ReadonlyMap<DeviceId, DeviceDesired>;
  /** What each device was last handed: a device running it while behind git is pending, not updating. */
  handed?: ReadonlyMap<DeviceId, { apps: DeviceDesired }>;
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
    if (devicesList.length >= max) continue;
    devicesList.push({
      id: device.id,
      state: deviceState(device, input.desired.get(device.id), input.now, input.offlineAfterMs, input.handed?.get(device.id)?.apps),
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
