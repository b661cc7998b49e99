import type { AppName, DeviceDesired, DeviceId, InventoryDevice, Labels } from '../core/types.js';
import type { DeploymentDoc, LoadedFleet, Selector } from './model.js';
import { matchesSelector } from './selector.js';

/**
 * Resolution: which version of which app each device should run, and which Deployment asks for it.
 * Pure: no I/O, no clock. A Deployment selects a device when its selector matches the device's region and
 * labels; of the Deployments of one app that select a device, the highest `spec.priority` (default 0) wins.
 * Two or more at the same top priority are a conflict: that device+app gets no desired entry from any of
 * them, and the conflict is reported instead.
 */

/** What one device should run. `desired` may be shared between devices and is frozen: do not mutate it. */
/** A device+app where Deployments of equal priority disagree: no step is planned for it. */
export interface PlanConflict {
  device: DeviceId;
  app: AppName;
  deployments: string[];
  priority: number;
  message: string;
}

export interface DeviceResolution {
  desired: Readonly<DeviceDesired>;
  conflicts: readonly PlanConflict[];
}

export interface FleetResolution {
  /** Per device; devices with equal region and relevant labels share one frozen DeviceDesired object. */
  desired: Map<DeviceId, DeviceDesired>;
  /** Sorted by device, then app. */
  conflicts: PlanConflict[];
}

/**
 * Resolves devices against one fleet revision. Keep one per revision and reuse it: it remembers the
 * resolution of every (region, relevant labels) combination it has seen, so resolving a fleet of devices
 * costs a few map lookups per device. The fleet must not change while the resolver is in use.
 */
export interface DesiredResolver {
  resolve(device: Pick<InventoryDevice, 'id' | 'region' | 'labels'>): DeviceResolution;
  resolveAll(devices: Iterable<Pick<InventoryDevice, 'id' | 'region' | 'labels'>>): FleetResolution;
}

/** Resolves every device with a fresh resolver. */
export function resolveDesired(fleet: LoadedFleet, devices: Iterable<InventoryDevice>): FleetResolution {
  return createResolver(fleet).resolveAll(devices);
}

/** Resolves one device, e.g. one that just enrolled. To resolve many, keep a `createResolver(fleet)`. */
export function resolveDevice(fleet: LoadedFleet, device: Pick<InventoryDevice, 'id' | 'region' | 'labels'>): DeviceResolution {
  return createResolver(fleet).resolve(device);
}

interface Candidate {
  name: string;
  version: string;
  priority: number;
  selector: Selector | undefined;
}

interface ConflictTemplate {
  app: AppName;
  deployments: string[];
  priority: number;
}

/** A resolution shared by every device with the same region and relevant labels. */
interface SharedResolution {
  /** Handed out as is when there is no conflict. */
  resolution: DeviceResolution;
  conflicts: ConflictTemplate[];
}

/** Stands for "label not set" in the resolution cache: no label value can equal it. */
const ABSENT: unique symbol = Symbol('absent');
type CacheNode = Map<string | typeof ABSENT, CacheNode | SharedResolution>;

const NO_CONFLICTS: readonly PlanConflict[] = Object.freeze([]);

export function createResolver(fleet: LoadedFleet): DesiredResolver {
  const candidatesByApp = groupCandidates(fleet.deployments.values());
  // Only the labels some selector looks at can change a resolution; the others (serial numbers, host
  // names) are left out of the cache key so that devices differing only in them share one entry.
  const relevantKeys = selectorLabelKeys(fleet.deployments.values());
  const cache: CacheNode = new Map();

  const sharedFor = (region: string, labels: Labels): SharedResolution => {
    let node = cache;
    let key: string | typeof ABSENT = region;
    for (let i = 0; i < relevantKeys.length; i++) {
      let child = node.get(key) as CacheNode | undefined;
      if (child === undefined) {
        child = new Map();
        node.set(key, child);
      }
      node = child;
      const label = relevantKeys[i]!;
      key = Object.hasOwn(labels, label) ? labels[label]! : ABSENT;
    }
    let shared = node.get(key) as SharedResolution | undefined;
    if (shared === undefined) {
      shared = resolveUncached(candidatesByApp, region, labels);
      node.set(key, shared);
    }
    return shared;
  };

  const resolve = (device: Pick<InventoryDevice, 'id' | 'region' | 'labels'>): DeviceResolution => {
    const shared = sharedFor(device.region, device.labels);
    if (shared.conflicts.length === 0) return shared.resolution;
    return { desired: shared.resolution.desired, conflicts: shared.conflicts.map((c) => conflictFor(device.id, c)) };
  };

  return {
    resolve,
    resolveAll(devices) {
      const desired = new Map<DeviceId, DeviceDesired>();
      const conflicts: PlanConflict[] = [];
      for (const device of devices) {
        const shared = sharedFor(device.region, device.labels);
        desired.set(device.id, shared.resolution.desired);
        for (const c of shared.conflicts) conflicts.push(conflictFor(device.id, c));
      }
      conflicts.sort(compareConflicts);
      return { desired, conflicts };
    },
  };
}

/** Deployments per app, highest priority first, then by name so that the result never depends on map order. */
function groupCandidates(deployments: Iterable<DeploymentDoc>): Map<AppName, Candidate[]> {
  const byApp = new Map<AppName, Candidate[]>();
  for (const doc of deployments) {
    const candidate: Candidate = {
      name: doc.metadata.name,
      version: doc.spec.version,
      priority: doc.spec.priority ?? 0,
      selector: doc.spec.selector,
    };
    const list = byApp.get(doc.spec.app);
    if (list) list.push(candidate);
    else byApp.set(doc.spec.app, [candidate]);
  }
  for (const list of byApp.values()) {
    list.sort((a, b) => b.priority - a.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  // Apps in name order, so every DeviceDesired lists its apps in the same order.
  return new Map([...byApp].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function selectorLabelKeys(deployments: Iterable<DeploymentDoc>): string[] {
  const keys = new Set<string>();
  for (const doc of deployments) {
    const selector = doc.spec.selector;
    for (const key in selector?.matchLabels ?? {}) keys.add(key);
    for (const requirement of selector?.matchExpressions ?? []) keys.add(requirement.key);
  }
  return [...keys].sort();
}

function resolveUncached(candidatesByApp: Map<AppName, Candidate[]>, region: string, labels: Labels): SharedResolution {
  const desired: DeviceDesired = {};
  const conflicts: ConflictTemplate[] = [];
  for (const [app, candidates] of candidatesByApp) {
    let winner: Candidate | undefined;
    let tied: string[] | undefined;
    for (const candidate of candidates) {
      if (winner && candidate.priority < winner.priority) break;
      if (!matchesSelector(candidate.selector, region, labels)) continue;
      if (!winner) winner = candidate;
      else (tied ??= [winner.name]).push(candidate.name);
    }
    if (!winner) continue;
    if (tied) conflicts.push({ app, deployments: tied, priority: winner.priority });
    else desired[app] = Object.freeze({ version: winner.version, deployment: winner.name });
  }
  Object.freeze(desired);
  return { resolution: Object.freeze({ desired, conflicts: NO_CONFLICTS }), conflicts };
}

function conflictFor(device: DeviceId, template: ConflictTemplate): PlanConflict {
  const names = template.deployments;
  const listed = names.length === 2 ? `${names[0]} and ${names[1]}` : `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
  return {
    device,
    app: template.app,
    deployments: [...names],
    priority: template.priority,
    message:
      `deployments ${listed} ${names.length === 2 ? 'both' : 'all'} select device ${device} for app ${template.app} at priority ${template.priority}; ` +
      `no version is planned for it until one of them gets a higher spec.priority or their selectors stop overlapping`,
  };
}

function compareConflicts(a: PlanConflict, b: PlanConflict): number {
  if (a.device !== b.device) return a.device < b.device ? -1 : 1;
  return a.app < b.app ? -1 : a.app > b.app ? 1 : 0;
}
