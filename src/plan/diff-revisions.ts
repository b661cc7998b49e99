import { compareStrings, plural } from '../core/text.js';
import { stableJson } from '../core/stable-json.js';
import type { AppName, DeviceId, InventoryDevice } from '../core/types.js';
import { compareVersions } from '../core/version.js';
import type { DeploymentDoc, LoadedFleet } from '../desired/model.js';
import { createResolver, type PlanConflict } from '../desired/resolve.js';
import { effectiveRollout, waveOf } from './waves.js';

/**
 * What a change to the fleet repository (a pull request: base -> head) changes, for a reviewer.
 * `cascade plan` answers "what does this revision ask of each device, given what it runs"; this
 * answers "which devices' desired versions does this change move", whatever they run now.
 *
 * Rules:
 * - A device changes when an app's desired version differs between base and head: it gets the app
 *   (`install`, newly selected), a higher or lower version (`upgrade`, `downgrade`), or loses it
 *   (`remove`: no Deployment selects it anymore). Moving a device between Deployments at the same
 *   version is not a change.
 * - Each change belongs to the Deployment that asks for the head version (for a removal, the one
 *   that asked for the base version), and to the device's region; its wave is the head wave.
 * - Deployments are also compared as documents: added, removed, and which spec fields changed, so
 *   a change that moves no device of the inventory still shows.
 * - Conflicts: device+app pairs head leaves unresolved that base resolved.
 * - Warnings: every removal, every deleted Deployment, and devices whose Deployment has no
 *   maintenance window in their region while the fleet uses windows elsewhere (they update as soon
 *   as the change is merged).
 * Pure: no I/O, no clock.
 */

export type ChangeKind = 'install' | 'upgrade' | 'downgrade' | 'remove';

export interface DeviceChange {
  device: DeviceId;
  region: string;
  app: AppName;
  kind: ChangeKind;
  /** Desired version at base; null when base did not select the app for the device. */
  from: string | null;
  /** Desired version at head; null when head does not select it. */
  to: string | null;
  /** The Deployment at head that asks for `to`; for a removal, the one at base that asked for `from`. */
  deployment: string;
  /** What the device reports it runs now (inventory), null when not installed. */
  running: string | null;
  /** 1-based wave of the head rollout; null for removals. */
  wave: number | null;
}

export interface DeploymentEdit {
  name: string;
  change: 'added' | 'removed' | 'changed';
  app: string;
  /** Version at base, null when added. */
  from: string | null;
  /** Version at head, null when removed. */
  to: string | null;
  /** Spec fields that differ (`version`, `selector`, `priority`, `rollout`, `app`), sorted. */
  fields: string[];
}

/** The changes of one Deployment in one region. */
export interface DiffGroup {
  deployment: string;
  region: string;
  app: string;
  /** Base and head versions when every change of the group agrees on them, else null. */
  from: string | null;
  to: string | null;
  counts: Record<ChangeKind, number>;
  /** Distinct devices. */
  devices: number;
  /** Changes per head wave, ascending; removals have none. */
  waves: { wave: number; devices: number }[];
  /** Whether head sets a maintenance window for this Deployment in this region. */
  window: boolean;
  changes: DeviceChange[];
}

export type DiffWarningCode = 'removes-apps' | 'deployment-removed' | 'outside-window' | 'conflicts';

export interface DiffWarning {
  code: DiffWarningCode;
  message: string;
  deployment?: string;
  region?: string;
}

export interface RevisionDiff {
  base: string | null;
  head: string | null;
  /** How many devices of the inventory were compared. */
  inventory: number;
  deployments: DeploymentEdit[];
  /** Sorted by Deployment, then region. */
  groups: DiffGroup[];
  /** Device+app pairs that head leaves unresolved (equal-priority Deployments) and base did not. */
  conflicts: PlanConflict[];
  warnings: DiffWarning[];
  totals: { devices: number; changes: number; counts: Record<ChangeKind, number>; regions: number };
}

export const CHANGE_KINDS: readonly ChangeKind[] = ['install', 'upgrade', 'downgrade', 'remove'];

export function emptyChangeCounts(): Record<ChangeKind, number> {
  return { install: 0, upgrade: 0, downgrade: 0, remove: 0 };
}

export function diffRevisions(base: LoadedFleet, head: LoadedFleet, devices: Iterable<InventoryDevice>): RevisionDiff {
  const baseResolver = createResolver(base);
  const headResolver = createResolver(head);
  const groups = new Map<string, DiffGroup>();
  const conflicts: PlanConflict[] = [];
  const waves = new Map<string, readonly number[]>();
  let inventory = 0;
  for (const device of devices) {
    inventory++;
    const before = baseResolver.resolve(device);
    const after = headResolver.resolve(device);
    // Only conflicts this change brings: one already at base is not the reviewer's news.
    for (const conflict of after.conflicts) {
      if (!before.conflicts.some((c) => c.app === conflict.app)) conflicts.push(conflict);
    }
    const apps = new Set([...Object.keys(before.desired), ...Object.keys(after.desired)]);
    for (const app of apps) {
      const was = Object.hasOwn(before.desired, app) ? before.desired[app]! : null;
      const now = Object.hasOwn(after.desired, app) ? after.desired[app]! : null;
      if (was?.version === now?.version) continue;
      // An app head leaves in conflict is not removed from the device: no change is planned for it.
      if (now === null && after.conflicts.some((c) => c.app === app)) continue;
      const kind: ChangeKind = was === null ? 'install' : now === null ? 'remove' : compareVersions(now.version, was.version) > 0 ? 'upgrade' : 'downgrade';
      const deployment = (now ?? was)!.deployment;
      let wave: number | null = null;
      if (now !== null) {
        const key = `${deployment}\0${device.region}`;
        let w = waves.get(key);
        if (w === undefined) waves.set(key, (w = effectiveRollout(head, deployment, device.region).waves));
        wave = waveOf(device.id, deployment, w);
      }
      const change: DeviceChange = {
        device: device.id,
        region: device.region,
        app,
        kind,
        from: was?.version ?? null,
        to: now?.version ?? null,
        deployment,
        running: Object.hasOwn(device.apps, app) ? device.apps[app]! : null,
        wave,
      };
      const key = `${deployment}\0${device.region}`;
      let group = groups.get(key);
      if (!group) {
        group = {
          deployment,
          region: device.region,
          app,
          from: change.from,
          to: change.to,
          counts: emptyChangeCounts(),
          devices: 0,
          waves: [],
          window: now !== null && effectiveRollout(head, deployment, device.region).window !== undefined,
          changes: [],
        };
        groups.set(key, group);
      }
      if (group.from !== change.from) group.from = null;
      if (group.to !== change.to) group.to = null;
      group.counts[kind]++;
      group.changes.push(change);
    }
  }
  const sorted = [...groups.values()].sort((a, b) => compareStrings(a.deployment, b.deployment) || compareStrings(a.region, b.region));
  const allDevices = new Set<string>();
  const regions = new Set<string>();
  const counts = emptyChangeCounts();
  let changes = 0;
  for (const group of sorted) {
    group.changes.sort((a, b) => (a.wave ?? 0) - (b.wave ?? 0) || compareStrings(a.device, b.device) || compareStrings(a.app, b.app));
    const inGroup = new Set<string>();
    const perWave = new Map<number, Set<string>>();
    for (const change of group.changes) {
      inGroup.add(change.device);
      allDevices.add(change.device);
      counts[change.kind]++;
      changes++;
      if (change.wave !== null) {
        let set = perWave.get(change.wave);
        if (!set) perWave.set(change.wave, (set = new Set()));
        set.add(change.device);
      }
    }
    regions.add(group.region);
    group.devices = inGroup.size;
    group.waves = [...perWave.entries()].sort(([a], [b]) => a - b).map(([wave, set]) => ({ wave, devices: set.size }));
  }
  conflicts.sort((a, b) => compareStrings(a.device, b.device) || compareStrings(a.app, b.app));
  const deployments = compareDeployments(base, head);
  return {
    base: base.revision,
    head: head.revision,
    inventory,
    deployments,
    groups: sorted,
    conflicts,
    warnings: warningsFor(head, deployments, sorted, conflicts),
    totals: { devices: allDevices.size, changes, counts, regions: regions.size },
  };
}

const SPEC_FIELDS = ['app', 'version', 'selector', 'priority', 'rollout'] as const;

function compareDeployments(base: LoadedFleet, head: LoadedFleet): DeploymentEdit[] {
  const edits: DeploymentEdit[] = [];
  const names = [...new Set([...base.deployments.keys(), ...head.deployments.keys()])].sort(compareStrings);
  for (const name of names) {
    const was = base.deployments.get(name);
    const now = head.deployments.get(name);
    if (!was) edits.push({ name, change: 'added', app: now!.spec.app, from: null, to: now!.spec.version, fields: [] });
    else if (!now) edits.push({ name, change: 'removed', app: was.spec.app, from: was.spec.version, to: null, fields: [] });
    else {
      const fields = changedFields(was, now);
      if (fields.length > 0) edits.push({ name, change: 'changed', app: now.spec.app, from: was.spec.version, to: now.spec.version, fields });
    }
  }
  return edits;
}

function changedFields(was: DeploymentDoc, now: DeploymentDoc): string[] {
  const fields: string[] = SPEC_FIELDS.filter((field) => stableJson(was.spec[field] ?? null) !== stableJson(now.spec[field] ?? null));
  const known = new Set<string>(SPEC_FIELDS);
  for (const field of new Set([...Object.keys(was.spec), ...Object.keys(now.spec)])) {
    if (known.has(field)) continue;
    const a = (was.spec as unknown as Record<string, unknown>)[field];
    const b = (now.spec as unknown as Record<string, unknown>)[field];
    if (stableJson(a ?? null) !== stableJson(b ?? null)) fields.push(field);
  }
  return fields.sort(compareStrings);
}

function warningsFor(head: LoadedFleet, deployments: DeploymentEdit[], groups: DiffGroup[], conflicts: PlanConflict[]): DiffWarning[] {
  const warnings: DiffWarning[] = [];
  for (const edit of deployments) {
    if (edit.change === 'removed') {
      warnings.push({ code: 'deployment-removed', deployment: edit.name, message: `Deployment ${edit.name} (${edit.app} ${edit.from}) is deleted: devices it alone selected lose ${edit.app}` });
    }
  }
  for (const [deployment, byRegion] of perDeployment(groups, (c) => c.kind === 'remove')) {
    const app = groups.find((g) => g.deployment === deployment)!.app;
    warnings.push({
      code: 'removes-apps',
      deployment,
      message: `${app} is removed from ${spread(byRegion)}: no Deployment selects it for them anymore (it was ${deployment})`,
    });
  }
  if (usesWindows(head)) {
    const outside = groups.filter((g) => !g.window);
    for (const [deployment, byRegion] of perDeployment(outside, (c) => c.kind !== 'remove')) {
      warnings.push({
        code: 'outside-window',
        deployment,
        message: `${spread(byRegion)} ${total(byRegion) === 1 ? 'changes' : 'change'} outside any maintenance window: ${deployment} has no rollout.window in ${[...byRegion.keys()].join(', ')}, so they update as soon as this is merged`,
      });
    }
  }
  if (conflicts.length > 0) {
    warnings.push({
      code: 'conflicts',
      message: `${plural(conflicts.length, 'device/app pair')} ${conflicts.length === 1 ? 'is' : 'are'} left unresolved: Deployments of equal priority select ${conflicts.length === 1 ? 'it' : 'them'}; give one a higher spec.priority or make their selectors disjoint`,
    });
  }
  return warnings;
}

/** Per Deployment, the devices of each region whose changes pass `keep`; Deployments and regions in order. */
function perDeployment(groups: DiffGroup[], keep: (change: DeviceChange) => boolean): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const group of groups) {
    const devices = new Set(group.changes.filter(keep).map((c) => c.device)).size;
    if (devices === 0) continue;
    let byRegion = out.get(group.deployment);
    if (!byRegion) out.set(group.deployment, (byRegion = new Map()));
    byRegion.set(group.region, devices);
  }
  return out;
}

/** "3 devices (1 in eu-west, 2 in us-east)", or "2 devices in us-east". */
function spread(byRegion: Map<string, number>): string {
  if (byRegion.size === 1) return `${plural(total(byRegion), 'device')} in ${[...byRegion.keys()][0]}`;
  return `${plural(total(byRegion), 'device')} (${[...byRegion.entries()].map(([region, n]) => `${n} in ${region}`).join(', ')})`;
}

function total(byRegion: Map<string, number>): number {
  return [...byRegion.values()].reduce((a, b) => a + b, 0);
}

/** Whether the fleet sets a maintenance window anywhere: only then is a change without one worth a warning. */
function usesWindows(fleet: LoadedFleet): boolean {
  if (fleet.fleet?.spec.rollout?.window) return true;
  for (const region of fleet.regions.values()) if (region.spec.rollout?.window) return true;
  for (const deployment of fleet.deployments.values()) if (deployment.spec.rollout?.window) return true;
  return false;
}
