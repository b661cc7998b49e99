import type { InventoryDevice, Labels } from '../../src/core/types.js';
import type { AppDoc, DeploymentDoc, LoadedFleet, RegionDoc, RolloutSpec, Selector } from '../../src/desired/model.js';

/** Small fleets built in code for the resolve and plan tests. */

export function deployment(
  name: string,
  app: string,
  version: string,
  options: { selector?: Selector; priority?: number; rollout?: RolloutSpec } = {},
): DeploymentDoc {
  return { apiVersion: 'cascade/v1', kind: 'Deployment', metadata: { name }, spec: { app, version, ...options } };
}

export function region(name: string, rollout?: RolloutSpec): RegionDoc {
  return { apiVersion: 'cascade/v1', kind: 'Region', metadata: { name }, spec: rollout ? { rollout } : {} };
}

export function makeFleet(options: {
  deployments: DeploymentDoc[];
  regions?: RegionDoc[];
  fleetRollout?: RolloutSpec;
  revision?: string | null;
}): LoadedFleet {
  const apps = new Map<string, AppDoc>();
  for (const d of options.deployments) {
    apps.set(d.spec.app, { apiVersion: 'cascade/v1', kind: 'App', metadata: { name: d.spec.app }, spec: {} });
  }
  return {
    revision: options.revision === undefined ? 'rev-1' : options.revision,
    apps,
    deployments: new Map(options.deployments.map((d) => [d.metadata.name, d])),
    regions: new Map((options.regions ?? []).map((r) => [r.metadata.name, r])),
    fleet: options.fleetRollout
      ? { apiVersion: 'cascade/v1', kind: 'Fleet', metadata: { name: 'fleet' }, spec: { rollout: options.fleetRollout } }
      : null,
    sources: new Map(),
  };
}

export function device(id: string, regionName: string, labels: Labels = {}, apps: Record<string, string> = {}): InventoryDevice {
  return { id, region: regionName, labels, apps };
}
