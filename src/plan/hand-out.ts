import type { AppName, DesiredApp, DeviceDesired, DeviceId } from '../core/types.js';

export interface HandOutInput {
  /** What git asks of each device (resolved from the applied revision). */
  resolved: ReadonlyMap<DeviceId, DeviceDesired>;
  /** What each device was last handed. */
  handed: ReadonlyMap<DeviceId, DeviceDesired>;
  /** Installed versions each device reports. */
  installed: ReadonlyMap<DeviceId, Record<AppName, string>>;
  /**
   * May this device be handed the resolved version of this app now? The rollout rules
   * (waves, maxUnavailable, halts, windows) answer this; without rules every update is released.
   */
  released?: (device: DeviceId, app: AppName, desired: DesiredApp) => boolean;
  /** The attempt to hand with a released version (an operator's retry); 0 or absent: none. */
  attempt?: (device: DeviceId, app: AppName, desired: DesiredApp) => number;
}

/**
 * The desired state each device should be handed next, for the devices where it differs from
 * what they were last handed. An update that is held back leaves the device on what it was handed
 * before, or on what it runs; an app no Deployment selects is dropped from the handed set.
 */
export function computeHandOut(input: HandOutInput): Map<DeviceId, DeviceDesired> {
  const changes = new Map<DeviceId, DeviceDesired>();
  const devices = new Set<DeviceId>([...input.resolved.keys(), ...input.handed.keys()]);
  for (const device of devices) {
    const desired = input.resolved.get(device) ?? {};
    const before = input.handed.get(device) ?? {};
    const installed = input.installed.get(device) ?? {};
    const next: DeviceDesired = {};
    for (const app in desired) {
      const wanted = desired[app]!;
      if (!input.released || input.released(device, app, wanted)) {
        const attempt = input.attempt?.(device, app, wanted) ?? 0;
        next[app] = attempt > 0 ? { ...wanted, attempt } : wanted;
      } else if (before[app]) {
        next[app] = before[app]!;
      } else if (installed[app] !== undefined) {
        next[app] = { version: installed[app]!, deployment: wanted.deployment };
      }
    }
    if (!sameDesired(before, next)) changes.set(device, next);
  }
  return changes;
}

export function sameDesired(a: DeviceDesired, b: DeviceDesired): boolean {
  const aKeys = Object.keys(a);
  if (aKeys.length !== Object.keys(b).length) return false;
  for (const app of aKeys) {
    const y = b[app];
    if (!y || y.version !== a[app]!.version || y.deployment !== a[app]!.deployment || (y.attempt ?? 0) !== (a[app]!.attempt ?? 0)) return false;
  }
  return true;
}
