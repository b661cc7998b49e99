import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
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
 *
 * Then the CLI as a user runs it (issue 11, "Quick CLI"), each a real process, median of 3 with the
 * spread: `cascade plan` of the same fleet (as YAML files) and inventory (as a JSON file), output
 * included, against `node -e` reading and `JSON.parse`-ing that file; and `cascade --help` against
 * `node -e 0`. Runs the compiled dist/ (built first when stale), as the installed package does.
 */
const DEVICES = 100_000;
const RUNS = 5;
const REGIONS = ['eu-west', 'eu-north', 'us-east', 'ap-south'];
const HARDWARE = ['rpi4', 'rpi5', 'x86', 'jetson'];
const RINGS = ['stable', 'stable', 'stable', 'beta', 'canary'];
const APPS = ['agent', 'cam', 'edge', 'mon', 'web'];
const CLI_ROUNDS = 3;
const BIN = fileURLToPath(new URL('../bin/cascade.js', import.meta.url));
const BUILD = fileURLToPath(new URL('../scripts/build-dist.mjs', import.meta.url));

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

    const cli = cliTimes(fleet, text);
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
      figure(
        `\`cascade plan --inventory FILE --json\` end to end, ${DEVICES} devices (process, output to /dev/null; median of ${CLI_ROUNDS}, spread ${spread(cli.plan)})`,
        medianOf(cli.plan),
        'ms',
        '< 2x JSON.parse of the inventory, end to end',
        medianOf(cli.plan) < 2 * medianOf(cli.parse),
        { name: `\`node -e\` reading and JSON.parse-ing the inventory file (spread ${spread(cli.parse)})`, value: medianOf(cli.parse), unit: 'ms' },
      ),
      figure(
        `\`cascade --help\` (process; median of ${CLI_ROUNDS}, spread ${spread(cli.help)})`,
        medianOf(cli.help),
        'ms',
        '< 150 ms',
        medianOf(cli.help) < 150,
        { name: `\`node -e 0\` (spread ${spread(cli.bare)})`, value: medianOf(cli.bare), unit: 'ms' },
      ),
      ...(cli.helpPlain.length > 0
        ? [
            figure(
              `\`cascade --help\`, same environment without NODE_EXTRA_CA_CERTS, which this machine sets (node reads that file at every start; median of ${CLI_ROUNDS}, spread ${spread(cli.helpPlain)})`,
              medianOf(cli.helpPlain),
              'ms',
              '< 150 ms',
              medianOf(cli.helpPlain) < 150,
              { name: `\`node -e 0\` without it (spread ${spread(cli.barePlain)})`, value: medianOf(cli.barePlain), unit: 'ms' },
            ),
          ]
        : []),
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

/** Wall times (ms) of the CLI and its baselines as processes, the four interleaved round by round. */
function cliTimes(
  fleet: LoadedFleet,
  inventoryText: string,
): { plan: number[]; parse: number[]; help: number[]; bare: number[]; helpPlain: number[]; barePlain: number[] } {
  spawnSync(process.execPath, [BUILD, '--if-stale'], { stdio: 'ignore' });
  const root = mkdtempSync(join(tmpdir(), 'cascade-bench-plan-'));
  const inventory = join(root, 'inventory.json');
  writeFileSync(inventory, inventoryText);
  const docs: Array<[string, unknown]> = [['fleet.yaml', fleet.fleet]];
  for (const [name, doc] of fleet.apps) docs.push([`apps/${name}.yaml`, doc]);
  for (const [name, doc] of fleet.regions) docs.push([`regions/${name}.yaml`, doc]);
  for (const [name, doc] of fleet.deployments) docs.push([`deployments/${name}.yaml`, doc]);
  const repo = join(root, 'fleet');
  for (const [path, doc] of docs) {
    mkdirSync(dirname(join(repo, path)), { recursive: true });
    writeFileSync(join(repo, path), stringify(doc));
  }
  const devNull = openSync('/dev/null', 'w');
  // NODE_EXTRA_CA_CERTS (set on some machines, this one included) makes node read and parse that
  // certificate file at every start, before any of Cascade's code: ~45 ms here. Measured both ways.
  const plainEnv = { ...process.env };
  delete plainEnv['NODE_EXTRA_CA_CERTS'];
  const time = (args: string[], env: NodeJS.ProcessEnv = process.env): number => {
    const start = performance.now();
    const result = spawnSync(process.execPath, args, { stdio: ['ignore', devNull, 'pipe'], env });
    const ms = performance.now() - start;
    if (result.status !== 0) throw new Error(`node ${args.join(' ')} exited with ${result.status}: ${result.stderr.toString().slice(0, 500)}`);
    return ms;
  };
  const out = { plan: [] as number[], parse: [] as number[], help: [] as number[], bare: [] as number[], helpPlain: [] as number[], barePlain: [] as number[] };
  try {
    for (let round = 0; round < CLI_ROUNDS; round++) {
      out.parse.push(time(['-e', `JSON.parse(require('node:fs').readFileSync(${JSON.stringify(inventory)}, 'utf8'))`]));
      out.plan.push(time([BIN, 'plan', repo, '--inventory', inventory, '--json']));
      out.bare.push(time(['-e', '0']));
      out.help.push(time([BIN, '--help']));
      if (process.env['NODE_EXTRA_CA_CERTS']) {
        out.barePlain.push(time(['-e', '0'], plainEnv));
        out.helpPlain.push(time([BIN, '--help'], plainEnv));
      }
    }
  } finally {
    closeSync(devNull);
    rmSync(root, { recursive: true, force: true });
  }
  return out;
}

function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function spread(values: number[]): string {
  return `${Math.min(...values).toFixed(0)}-${Math.max(...values).toFixed(0)} ms`;
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
