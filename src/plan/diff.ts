import { compareStrings } from '../core/text.js';
import type { AppName, DeviceDesired, InventoryDevice } from '../core/types.js';
import { compareVersions } from '../core/version.js';
import type { LoadedFleet } from '../desired/model.js';
import { createResolver, type DesiredResolver } from '../desired/resolve.js';
import type { Plan, PlanAction, PlanConflict, PlanStep } from './types.js';
import { effectiveRollout, mergeRollouts, waveOf } from './waves.js';

/**
 * The plan: only the steps that are needed to bring devices from what they run to what the fleet
 * repository asks for. Pure: no I/O, no clock.
 *
 * Steps are sorted by region, Deployment (removals, which have none, last), wave, device, app.
 */
export function buildPlan(fleet: LoadedFleet, devices: Iterable<InventoryDevice>): Plan {
  return planWith(createResolver(fleet), createPlanContext(fleet), devices);
}

/** `buildPlan` with a resolver and context kept across calls, e.g. by a region reconciler for one revision. */
export function planWith(resolver: DesiredResolver, context: PlanContext, devices: Iterable<InventoryDevice>): Plan {
  const buckets = new StepBuckets();
  const conflicts: PlanConflict[] = [];
  for (const device of devices) {
    const resolution = resolver.resolve(device);
    emitSteps(device, resolution.desired, resolution.conflicts, context, buckets);
    if (resolution.conflicts.length > 0) conflicts.push(...resolution.conflicts);
  }
  conflicts.sort((a, b) => compareStrings(a.device, b.device) || compareStrings(a.app, b.app));
  return { revision: context.revision, steps: buckets.sortedSteps(), conflicts };
}

/**
 * The steps one device needs, in app order. `conflicts` are the device's unresolved apps: they are
 * selected (so never removed) but get no step.
 */
export function diffDevice(
  device: InventoryDevice,
  resolution: { desired: Readonly<DeviceDesired>; conflicts?: readonly PlanConflict[] },
  context: PlanContext,
): PlanStep[] {
  const steps: PlanStep[] = [];
  emitSteps(device, resolution.desired, resolution.conflicts ?? [], context, { add: (step) => steps.push(step) });
  return steps.sort((a, b) => compareStrings(a.app, b.app));
}

export interface Transition {
  action: PlanAction;
  reason: string;
}

export interface DeploymentPlanInfo {
  name: string;
  version: string;
  install: Transition;
  /** Upgrade or downgrade from each installed version seen so far: compared and phrased once, not per device. */
  fromVersion: Map<string, Transition>;
  describe: string;
  wavesByRegion: Map<string, readonly number[]>;
}

/**
 * What the diff needs to know about a fleet revision beyond the resolution: priorities for reasons and
 * the waves of each Deployment in each region. It remembers what it computed, so keep one per revision.
 */
export class PlanContext {
  readonly revision: string | null;
  private readonly fleet: LoadedFleet;
  private readonly deployments = new Map<string, DeploymentPlanInfo>();
  private readonly removals = new Map<AppName, Map<string, Transition>>();

  constructor(fleet: LoadedFleet) {
    this.fleet = fleet;
    this.revision = fleet.revision;
  }

  deploymentInfo(name: string, version: string): DeploymentPlanInfo {
    const known = this.deployments.get(name);
    if (known && known.version === version) return known;
    const doc = this.fleet.deployments.get(name);
    const priority = doc ? ` (priority ${doc.spec.priority ?? 0})` : '';
    const describe = `deployment ${name} asks for ${version}${priority}`;
    const info: DeploymentPlanInfo = {
      name,
      version,
      describe,
      install: { action: 'install', reason: `${describe}, app not installed` },
      fromVersion: new Map(),
      wavesByRegion: new Map(),
    };
    // A desired entry whose version differs from its Deployment's (built by hand) is not remembered.
    if (!doc || doc.spec.version === version) this.deployments.set(name, info);
    return info;
  }

  transition(info: DeploymentPlanInfo, from: string): Transition {
    let transition = info.fromVersion.get(from);
    if (transition === undefined) {
      transition = {
        action: compareVersions(info.version, from) > 0 ? 'upgrade' : 'downgrade',
        reason: `${info.describe}, device runs ${from}`,
      };
      info.fromVersion.set(from, transition);
    }
    return transition;
  }

  waves(info: DeploymentPlanInfo, region: string): readonly number[] {
    let waves = info.wavesByRegion.get(region);
    if (waves === undefined) {
      waves = this.fleet.deployments.has(info.name)
        ? effectiveRollout(this.fleet, info.name, region).waves
        : mergeRollouts(this.fleet.regions.get(region)?.spec.rollout, this.fleet.fleet?.spec.rollout).waves;
      info.wavesByRegion.set(region, waves);
    }
    return waves;
  }

  removal(app: AppName, from: string): Transition {
    let byVersion = this.removals.get(app);
    if (byVersion === undefined) {
      byVersion = new Map();
      this.removals.set(app, byVersion);
    }
    let transition = byVersion.get(from);
    if (transition === undefined) {
      transition = { action: 'remove', reason: `no deployment selects ${app} for this device anymore, device runs ${from}` };
      byVersion.set(from, transition);
    }
    return transition;
  }
}

export function createPlanContext(fleet: LoadedFleet): PlanContext {
  return new PlanContext(fleet);
}

interface StepSink {
  add(step: PlanStep): void;
}

function emitSteps(
  device: InventoryDevice,
  desired: Readonly<DeviceDesired>,
  conflicts: readonly PlanConflict[],
  context: PlanContext,
  sink: StepSink,
): void {
  const installed = device.apps;
  for (const app in desired) {
    const want = desired[app]!;
    const from = Object.hasOwn(installed, app) ? installed[app]! : null;
    if (from === want.version) continue;
    const info = context.deploymentInfo(want.deployment, want.version);
    const transition = from === null ? info.install : context.transition(info, from);
    sink.add({
      device: device.id,
      region: device.region,
      app,
      action: transition.action,
      from,
      to: want.version,
      deployment: want.deployment,
      wave: waveOf(device.id, want.deployment, context.waves(info, device.region)),
      reason: transition.reason,
    });
  }
  let removed: AppName[] | undefined;
  for (const app in installed) {
    if (Object.hasOwn(desired, app)) continue;
    if (conflicts.length > 0 && conflicts.some((c) => c.app === app)) continue;
    (removed ??= []).push(app);
  }
  if (removed === undefined) return;
  if (removed.length > 1) removed.sort(compareStrings);
  for (const app of removed) {
    const from = installed[app]!;
    sink.add({
      device: device.id,
      region: device.region,
      app,
      action: 'remove',
      from,
      to: null,
      deployment: null,
      wave: null,
      reason: context.removal(app, from).reason,
    });
  }
}

/**
 * Steps grouped by region, Deployment and wave as they are produced; the plan is the groups in key order,
 * each sorted by device and app. Sorting groups rather than devices costs in proportion to the steps (few,
 * once a fleet converges), and a group from an inventory listed in id order is already sorted.
 */
class StepBuckets implements StepSink {
  private readonly regions = new Map<string, Map<string | null, PlanStep[][]>>();
  private lastRegion: string | undefined;
  private lastGroups: Map<string | null, PlanStep[][]> | undefined;

  add(step: PlanStep): void {
    let groups = step.region === this.lastRegion ? this.lastGroups : this.regions.get(step.region);
    if (groups === undefined) {
      groups = new Map();
      this.regions.set(step.region, groups);
    }
    this.lastRegion = step.region;
    this.lastGroups = groups;
    let waves = groups.get(step.deployment);
    if (waves === undefined) {
      waves = [];
      groups.set(step.deployment, waves);
    }
    const index = step.wave ?? 0;
    (waves[index] ??= []).push(step);
  }

  sortedSteps(): PlanStep[] {
    const steps: PlanStep[] = [];
    for (const region of [...this.regions.keys()].sort(compareStrings)) {
      const groups = this.regions.get(region)!;
      const deployments = [...groups.keys()].sort((a, b) => (a === null ? 1 : b === null ? -1 : compareStrings(a, b)));
      for (const deployment of deployments) {
        for (const wave of groups.get(deployment)!) {
          if (!wave) continue;
          if (!isSortedByDeviceAndApp(wave)) wave.sort(compareDeviceAndApp);
          for (let i = 0; i < wave.length; i++) steps.push(wave[i]!);
        }
      }
    }
    return steps;
  }
}

function isSortedByDeviceAndApp(steps: PlanStep[]): boolean {
  for (let i = 1; i < steps.length; i++) {
    if (compareDeviceAndApp(steps[i - 1]!, steps[i]!) > 0) return false;
  }
  return true;
}

function compareDeviceAndApp(a: PlanStep, b: PlanStep): number {
  return a.device < b.device ? -1 : a.device > b.device ? 1 : a.app < b.app ? -1 : a.app > b.app ? 1 : 0;
}

