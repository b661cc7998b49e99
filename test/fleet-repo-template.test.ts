import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { InventoryDevice } from '../src/core/types.js';
import { loadRepository } from '../src/desired/load-repository.js';
import type { LoadedFleet, RollbackSpec } from '../src/desired/model.js';
import { matchesSelector, selectorsAreDisjoint } from '../src/desired/selector.js';

const PROJECT = fileURLToPath(new URL('../', import.meta.url)).replace(/[\\/]$/, '');
const TEMPLATE = path.join(PROJECT, 'fleet-repo-template');
const INVENTORY = path.join(PROJECT, 'examples', 'inventory.json');

async function loadTemplate(): Promise<LoadedFleet> {
  const { fleet, problems } = await loadRepository(TEMPLATE);
  expect(problems).toEqual([]);
  return fleet;
}

/** The fleet documents: YAML files outside hidden files and folders (CI files like .gitlab-ci.yml are not documents). */
function yamlFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    if (entry.isDirectory()) out.push(...yamlFiles(path.join(dir, entry.name), `${prefix}${entry.name}/`));
    else if (/\.ya?ml$/.test(entry.name)) out.push(prefix + entry.name);
  }
  return out;
}

describe('fleet-repo-template', () => {
  it('loads with no problems: 1 fleet, 3 regions, 4 apps, 8 deployments', async () => {
    const fleet = await loadTemplate();
    expect(fleet.fleet?.metadata.name).toBe('example-fleet');
    expect([...fleet.regions.keys()].sort()).toEqual(['ap-south', 'eu-west', 'us-east']);
    expect([...fleet.apps.keys()].sort()).toEqual(['edge-gateway', 'ml-inference', 'sensor-agent', 'telemetry-forwarder']);
    expect(fleet.deployments.size).toBe(8);
  });

  it('has fleet-wide rollout defaults and a maintenance window in eu-west', async () => {
    const fleet = await loadTemplate();
    expect(fleet.fleet?.spec.rollout).toEqual({
      waves: [1, 10, 50, 100],
      maxUnavailable: '10%',
      failureThreshold: '5%',
      minSample: 20,
      bakeTime: '10m',
      offlineAfter: '10m',
      rollback: 'immediate',
    });
    const euWest = fleet.regions.get('eu-west')!.spec.rollout!;
    expect(euWest.window).toEqual({ schedule: '0 2 * * *', duration: '2h', timezone: 'Europe/Berlin' });
    expect((euWest.rollback as RollbackSpec).respectWindow).toBe(false);
  });

  it('pins the lab ring to an older sensor-agent with a higher priority', async () => {
    const fleet = await loadTemplate();
    const pinned = fleet.deployments.get('sensor-agent-pinned-lab')!.spec;
    const main = fleet.deployments.get('sensor-agent')!.spec;
    expect(pinned.priority).toBe(100);
    expect(pinned.selector).toEqual({ matchLabels: { ring: 'lab' } });
    expect(main.priority ?? 0).toBe(0);
    expect(pinned.version < main.version).toBe(true);
  });

  it('keeps equal-priority Deployments of one app disjoint and every version backed by an artifact', async () => {
    const fleet = await loadTemplate();
    const deployments = [...fleet.deployments.values()];
    for (const a of deployments) {
      const app = fleet.apps.get(a.spec.app);
      expect(app, `${a.metadata.name}: app ${a.spec.app}`).toBeDefined();
      if (app!.spec.artifacts) expect(app!.spec.artifacts[a.spec.version], `${a.metadata.name}@${a.spec.version}`).toBeDefined();
      for (const b of deployments) {
        if (a === b || a.spec.app !== b.spec.app || (a.spec.priority ?? 0) !== (b.spec.priority ?? 0)) continue;
        expect(selectorsAreDisjoint(a.spec.selector, b.spec.selector), `${a.metadata.name} vs ${b.metadata.name}`).toBe(true);
      }
    }
  });

  it('starts every YAML file with a modeline pointing at an existing schema in the project', () => {
    const files = yamlFiles(TEMPLATE);
    expect(files.length).toBe(16);
    for (const file of files) {
      const firstLine = fs.readFileSync(path.join(TEMPLATE, file), 'utf8').split('\n')[0]!;
      const modeline = /^# yaml-language-server: \$schema=(\S+)$/.exec(firstLine);
      expect(modeline, `${file}: ${firstLine}`).not.toBeNull();
      const schema = path.resolve(TEMPLATE, path.dirname(file), modeline![1]!);
      expect(path.dirname(schema)).toBe(path.join(PROJECT, 'schemas'));
      expect(fs.existsSync(schema), `${file} -> ${modeline![1]}`).toBe(true);
    }
  });
});

describe('examples/inventory.json', () => {
  const devices = JSON.parse(fs.readFileSync(INVENTORY, 'utf8')) as InventoryDevice[];

  it('holds 30 well-formed devices with unique ids in the template regions, running template apps', async () => {
    const fleet = await loadTemplate();
    expect(devices.length).toBe(30);
    expect(new Set(devices.map((d) => d.id)).size).toBe(30);
    for (const device of devices) {
      expect(Object.keys(device).sort()).toEqual(['apps', 'id', 'labels', 'region']);
      expect(fleet.regions.has(device.region), device.id).toBe(true);
      for (const app of Object.keys(device.apps)) expect(fleet.apps.has(app), `${device.id}: ${app}`).toBe(true);
    }
    expect(new Set(devices.map((d) => d.region))).toEqual(new Set(['eu-west', 'us-east', 'ap-south']));
  });

  it('gives every Deployment devices to act on, some converged and some behind', async () => {
    const fleet = await loadTemplate();
    let converged = 0;
    let behind = 0;
    for (const deployment of fleet.deployments.values()) {
      const selected = devices.filter((d) => matchesSelector(deployment.spec.selector, d.region, d.labels));
      expect(selected.length, `${deployment.metadata.name} selects no device`).toBeGreaterThan(0);
    }
    // The winner per device and app: highest priority among matching Deployments.
    for (const device of devices) {
      for (const app of fleet.apps.keys()) {
        const winners = [...fleet.deployments.values()]
          .filter((d) => d.spec.app === app && matchesSelector(d.spec.selector, device.region, device.labels))
          .sort((a, b) => (b.spec.priority ?? 0) - (a.spec.priority ?? 0));
        if (winners.length === 0) continue;
        if (device.apps[app] === winners[0]!.spec.version) converged++;
        else behind++;
      }
    }
    expect(converged).toBeGreaterThan(30);
    expect(behind).toBeGreaterThan(10);
    // A device running an app that no Deployment selects it for: the plan removes it.
    const strays = devices.filter((d) =>
      Object.keys(d.apps).some(
        (app) =>
          ![...fleet.deployments.values()].some(
            (dep) => dep.spec.app === app && matchesSelector(dep.spec.selector, d.region, d.labels),
          ),
      ),
    );
    expect(strays.map((d) => d.id)).toEqual(['eu-west-ams-004']);
  });
});
