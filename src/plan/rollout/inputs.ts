import type { AppName, AppReport, DeviceDesired, DeviceId } from '../../core/types.js';
import type { LoadedFleet } from '../../desired/model.js';
import { effectiveRollout, waveOf, type EffectiveRollout } from '../waves.js';
import { deploymentFingerprint } from './fingerprint.js';
import type { RolloutDeploymentInput, RolloutDeviceInput, RolloutState } from './types.js';

/** What the engine needs of a device record (src/region/state-store.ts DeviceRecord fits). */
export interface RolloutDeviceRecord {
  id: DeviceId;
  lastSeen: number | null;
  /** When the device enrolled: a device that never reported is `new` for offlineAfter after it. */
  enrolledAt?: number;
  apps: Record<AppName, AppReport>;
  revoked?: boolean;
}

export interface CollectRolloutInputs {
  fleet: LoadedFleet;
  /** The region running the engine. */
  region: string;
  /** What git asks of each device of the region (resolveDesired). */
  resolved: ReadonlyMap<DeviceId, DeviceDesired>;
  /** What each device was last handed. */
  handed: ReadonlyMap<DeviceId, DeviceDesired>;
  /** The region's devices; revoked ones are left out. */
  devices: Iterable<RolloutDeviceRecord>;
  /**
   * States of the previous pass: a Deployment that still exists but has no device here right now is
   * passed with no devices, so that its memory (completed versions, halt) survives.
   */
  previous?: ReadonlyMap<string, RolloutState>;
}

/** One device as the engine sees it in the Deployment of `app`: its wave, last report of the app, and what it was last handed of it. */
export function rolloutDeviceInput(record: RolloutDeviceRecord, app: string, handed: DeviceDesired | undefined, wave: number): RolloutDeviceInput {
  const device: RolloutDeviceInput = { id: record.id, wave, lastSeen: record.lastSeen };
  if (record.enrolledAt !== undefined) device.enrolledAt = record.enrolledAt;
  const report = record.apps[app];
  if (report) device.report = report;
  const handedVersion = handed?.[app]?.version;
  if (handedVersion !== undefined) device.handedVersion = handedVersion;
  const handedAttempt = handed?.[app]?.attempt;
  if (handedAttempt) device.handedAttempt = handedAttempt;
  return device;
}

/** A Deployment of the fleet as the engine plans it in `region` (everything but its devices); undefined when the fleet has none of that name. */
export function trackedDeployment(fleet: LoadedFleet, name: string, region: string): (Omit<RolloutDeploymentInput, 'devices' | 'rollout'> & { rollout: EffectiveRollout }) | undefined {
  const doc = fleet.deployments.get(name);
  if (!doc) return undefined;
  return { deployment: name, app: doc.spec.app, version: doc.spec.version, fingerprint: deploymentFingerprint(doc.spec), rollout: effectiveRollout(fleet, name, region) };
}

/**
 * The planRollouts input of one region: per Deployment resolved to one of its devices, the
 * Deployment's effective rollout, fingerprint, and per device its wave, last report of the app and
 * the version it was last handed. Sorted by Deployment name, devices in the order given.
 */
export function collectRolloutInputs(input: CollectRolloutInputs): RolloutDeploymentInput[] {
  const { fleet, region } = input;
  const byName = new Map<string, RolloutDeploymentInput & { rollout: EffectiveRollout }>();
  const entry = (name: string): (RolloutDeploymentInput & { rollout: EffectiveRollout }) | undefined => {
    let found = byName.get(name);
    if (found) return found;
    const tracked = trackedDeployment(fleet, name, region);
    if (!tracked) return undefined;
    found = { ...tracked, devices: [] };
    byName.set(name, found);
    return found;
  };
  for (const record of input.devices) {
    if (record.revoked) continue;
    const desired = input.resolved.get(record.id);
    if (!desired) continue;
    const handed = input.handed.get(record.id);
    for (const app in desired) {
      const deployment = entry(desired[app]!.deployment);
      if (!deployment) continue;
      deployment.devices.push(rolloutDeviceInput(record, app, handed, waveOf(record.id, deployment.deployment, deployment.rollout.waves)));
    }
  }
  if (input.previous) for (const name of input.previous.keys()) entry(name);
  return [...byName.values()].sort((a, b) => (a.deployment < b.deployment ? -1 : a.deployment > b.deployment ? 1 : 0));
}
