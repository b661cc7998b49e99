import { performance } from 'node:perf_hooks';
import type { InventoryDevice } from '../src/core/types.js';
import type { DeploymentDoc, LoadedFleet, RegionDoc } from '../src/desired/model.js';
import { createResolver, resolveDesired } from '../src/desired/resolve.js';
import { buildPlan } from '../src/plan/diff.js';
import type { Plan } from '../src/plan/types.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * Resolve + plan for 100,000 devices x 5 apps against 20 Deployments, against the time a plain
 * `JSON.parse` of the same inventory takes in the same run. Heap growth is measured with `global.gc`
 * when available: run `node --expose-gc --import tsx bench/run.ts plan`.
 */
const DEVICES = 100_000;
const RUNS = 5;
const REGIONS = ['eu-west', 'eu-north', 'us-east', 'ap-south'];
const HARDWARE = ['rpi4', 'rpi5', 'x86', 'jetson'];
const RINGS = ['stable', 'stable', 'stable', 'beta', 'canary'];
const APPS = ['agent', 'cam', 'edge', 'mon', 'web'];

export const suite: BenchSuite = {
  name: 'plan',
  async run(): Promise<BenchFigure[]> {
    const fleet = benchFleet();
    const devices = benchInventory();
    const text = JSON.stringify(devices);
    const parse = median(RUNS, () => JSON.parse(text));
    const parsed = JSON.parse(text) as InventoryDevice[];
    const shuffled = shuffle(parsed);

    let plan: Plan | undefined;
    const planTime = median(RUNS, () => (plan = buildPlan(fleet, parsed)));
    const shuffledTime = median(RUNS, () => buildPlan(fleet, shuffled));
    const resolveTime = median(RUNS, () => resolveDesired(fleet, parsed));
    const resolver = createResolver(fleet);
    const warmResolve = median(RUNS, () => {
      for (let i = 0; i < parsed.length; i++) resolver.resolve(parsed[i]!);
    });
    const heap = heapPerDevice(() => buildPlan(fleet, parsed), parsed.length);
    const inventoryHeap = heapPerDevice(() => JSON.parse(text), parsed.length);

    const baseline = { name: `JSON.parse of the inventory (${(text.length / 1e6).toFixed(1)} MB)`, value: parse, unit: 'ms' };
    const steps = plan!.steps.length;
    process.stderr.write(`plan: ${steps} steps, ${plan!.conflicts.length} conflicts for ${DEVICES} devices; heap ${heap.measured}\n`);
    return [
      figure(`resolve+plan, ${DEVICES} devices x 5 apps, 20 Deployments (${steps} steps)`, planTime, 'ms', 'faster than JSON.parse', planTime < parse, baseline),
      figure('resolve+plan, same inventory shuffled (plan sorts its steps)', shuffledTime, 'ms', 'faster than JSON.parse', shuffledTime < parse, baseline),
      figure('resolveDesired alone (Map of every device)', resolveTime, 'ms', 'faster than JSON.parse', resolveTime < parse, baseline),
      figure('resolver.resolve per device, warm cache (region pass)', warmResolve, 'ms', 'faster than JSON.parse', warmResolve < parse, baseline),
      figure(`plan heap growth per device (${heap.measured})`, heap.bytes, 'B', '< 1 KB per device', heap.bytes < 1024, {
        name: 'parsed inventory heap per device',
        value: inventoryHeap.bytes,
        unit: 'B',
      }),
    ];
  },
};

/** Four regions, 5 apps x 4 Deployments with layered priorities and every selector kind. */
export function benchFleet(): LoadedFleet {
  const deployments: DeploymentDoc[] = [];
  const add = (name: string, app: string, version: string, spec: Partial<DeploymentDoc['spec']>) =>
    deployments.push({ apiVersion: 'cascade/v1', kind: 'Deployment', metadata: { name }, spec: { app, version, ...spec } });
  for (const app of APPS) {
    add(`${app}-base`, app, '2.0.0', { rollout: { waves: [1, 10, 50, 100] } });
    add(`${app}-eu`, app, '2.1.0', { priority: 5, selector: { regions: ['eu-west', 'eu-north'] } });
    add(`${app}-jetson`, app, '2.0.5', { priority: 10, selector: { matchLabels: { hw: 'jetson' } } });
    add(`${app}-canary`, app, '2.2.0-rc.1', {
      priority: 20,
      selector: { matchExpressions: [{ key: 'ring', operator: 'In', values: ['canary'] }, { key: 'hold', operator: 'DoesNotExist' }] },
    });
  }
  const regions: RegionDoc[] = REGIONS.map((name, i) => ({
    apiVersion: 'cascade/v1',
    kind: 'Region',
    metadata: { name },
    spec: { rollout: { waves: i % 2 ? [5, 100] : [1, 20, 100] } },
  }));
  return {
    revision: 'bench',
    apps: new Map(APPS.map((name) => [name, { apiVersion: 'cascade/v1', kind: 'App', metadata: { name }, spec: {} }])),
    deployments: new Map(deployments.map((d) => [d.metadata.name, d])),
    regions: new Map(regions.map((r) => [r.metadata.name, r])),
    fleet: { apiVersion: 'cascade/v1', kind: 'Fleet', metadata: { name: 'fleet' }, spec: { rollout: { waves: [10, 100] } } },
    sources: new Map(),
  };
}

/**
 * Devices in id order (as a region lists them), each with a unique serial label no selector reads.
 * Most apps already run their desired version; about a fifth need an upgrade, and a few a downgrade,
 * an install or a removal.
 */
export function benchInventory(): InventoryDevice[] {
  let state = 42;
  const random = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 4294967296;
  };
  const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)]!;
  const devices: InventoryDevice[] = [];
  for (let i = 0; i < DEVICES; i++) {
    const region = pick(REGIONS);
    const labels: Record<string, string> = { hw: pick(HARDWARE), ring: pick(RINGS), site: `site-${Math.floor(random() * 50)}`, serial: `SN${(i * 7919) % 1_000_003}` };
    if (random() < 0.02) labels['hold'] = 'true';
    const target = targetVersion(region, labels);
    const apps: Record<string, string> = {};
    for (const app of APPS) {
      const roll = random();
      if (roll < 0.02) continue; // not installed yet
      apps[app] = roll < 0.2 ? '1.9.7' : roll < 0.23 ? '3.0.0' : target;
    }
    if (random() < 0.02) apps['legacy'] = '0.4.1';
    devices.push({ id: `dev-${String(i).padStart(6, '0')}`, region, labels, apps });
  }
  return devices;
}

function targetVersion(region: string, labels: Record<string, string>): string {
  if (labels['ring'] === 'canary' && !labels['hold']) return '2.2.0-rc.1';
  if (labels['hw'] === 'jetson') return '2.0.5';
  if (region.startsWith('eu-')) return '2.1.0';
  return '2.0.0';
}

function median(runs: number, fn: () => unknown): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    fn();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(runs / 2)]!;
}

/** Bytes of heap the result of `fn` keeps alive, per device. */
function heapPerDevice(fn: () => unknown, devices: number): { bytes: number; measured: string } {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage().heapUsed;
  retained.push(fn()); // alive through the second collection, whatever the compiler thinks of locals
  gc?.();
  const after = process.memoryUsage().heapUsed;
  retained.length = 0;
  return { bytes: (after - before) / devices, measured: gc ? 'after gc' : 'no --expose-gc: includes garbage' };
}

const retained: unknown[] = [];

function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  let state = 7;
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
