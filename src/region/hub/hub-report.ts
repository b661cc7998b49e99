import type { DeviceDesired, DeviceId } from '../../core/types.js';
import { MAX_DEVICES_LIST, type DeviceSummary, type HubSummaryInput } from '../../protocol/hub-summary.js';
import { deviceState, type RegionStatus } from '../../reconciler/region-status.js';
import { installedVersions } from '../../reconciler/reconciler.js';
import type { DeviceRecord } from '../../reconciler/state-store.js';
import { attemptedVersion } from '../../reconciler/failed-version.js';

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
  const halted = new Set(input.status.rollouts.filter((r) => r.state === 'Halted').map((r) => r.deployment));
  let listed = 0;
  for (const device of input.devices) {
    if (device.revoked) continue;
    listed++;
    if (devicesList.length >= max) continue;
    const handed = input.handed?.get(device.id)?.apps;
    const desired = input.desired.get(device.id);
    const row: DeviceSummary = {
      id: device.id,
      state: deviceState(device, desired, input.now, input.offlineAfterMs, handed),
      apps: installedVersions(device),
    };
    for (const app in device.apps) {
      const report = device.apps[app]!;
      if (report.state !== 'failed') continue;
      const version = attemptedVersion(report, handed?.[app]);
      if (version !== null) (row.failed ??= {})[app] = version;
    }
    if (row.state === 'pending' && desired && halted.size > 0) {
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
