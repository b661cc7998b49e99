import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import type { RegionStatus } from '../src/reconciler/region-status.js';
import { commitFiles, makeLocalRepo } from '../test/support/git-fixtures.js';
import { startMosquitto, type Mosquitto } from '../test/support/mosquitto.js';
import { smallFleet, webDeployment } from '../test/support/small-fleet.js';
import { cpuSeconds, median, memoryMb, metricValue, startRegionChild, until, type RegionChild } from './support/region-child.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * The growth of a region's cost with its fleet, over MQTT: for each size N (CASCADE_BENCH_SCALE_SIZES,
 * e.g. `1000,5000,10000`), a fresh broker and region process, N simulated devices split over simulator
 * processes of at most 5,000 devices each (each device holds its own MQTT connection), then:
 * idle region CPU with nothing changing, `GET /api/v1/status` and `/metrics` latency, and after a
 * commit the time until the last desired state reaches the broker and until 100% converged, with the
 * region's CPU seconds per device. Baseline of the same run: one bare MQTT.js client publishing N
 * retained QoS 1 messages of the same size to the same broker.
 */
const SIZES = (process.env['CASCADE_BENCH_SCALE_SIZES'] ?? '1000,5000,10000').split(',').map(Number);
const PER_SIMULATOR = 5_000;
const REGION = 'us-east';
const TOKEN = 'bench-enrolment-token';
const REGION_USER = { username: 'cascade-region', password: 'bench-region-secret' };
const BASELINE_USER = { username: 'bench-baseline', password: 'bench-baseline-secret' };
const SIM_CHILD = fileURLToPath(new URL('./support/sim-child.ts', import.meta.url));

export interface ScaleResult {
  devices: number;
  enrolSeconds: number;
  idleCpuPercent: number;
  statusMs: number;
  metricsMs: number;
  lastPublishSeconds: number;
  convergedSeconds: number;
  rolloutCpuSeconds: number;
  baselinePublishSeconds: number;
  published: number;
  updates: number;
  rssMb: number;
  baseRssMb: number;
  passes: number;
  passSeconds: number;
  eventLoopP99Ms: number;
}

interface SimChild {
  child: ChildProcess;
  stats: { enrolled: number; applied: number; versions: Record<string, Record<string, number>> } | null;
}

function startSimulator(options: object): SimChild {
  const child = spawn(process.execPath, ['--import', 'tsx', SIM_CHILD, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const sim: SimChild = { child, stats: null };
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const lines = buffer.split('\n');
    buffer = lines.pop()!;
    if (lines.length) sim.stats = JSON.parse(lines[lines.length - 1]!) as SimChild['stats'];
  });
  return sim;
}

async function stopSimulator(sim: SimChild): Promise<void> {
  if (sim.child.exitCode !== null) return;
  const exited = new Promise((resolve) => sim.child.once('exit', resolve));
  sim.child.kill('SIGTERM');
  await exited;
}

async function timed(url: string): Promise<number> {
  const started = performance.now();
  const response = await fetch(url);
  await response.arrayBuffer();
  return performance.now() - started;
}

async function status(url: string): Promise<RegionStatus> {
  return (await (await fetch(`${url}/api/v1/status`)).json()) as RegionStatus;
}

async function baselinePublish(broker: Mosquitto, count: number, payload: string): Promise<number> {
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, ...BASELINE_USER, reconnectPeriod: 0 });
  const started = performance.now();
  await Promise.all(Array.from({ length: count }, (_, i) => client.publishAsync(`baseline/${i}/desired`, payload, { qos: 1, retain: true })));
  const elapsed = performance.now() - started;
  await client.endAsync();
  return elapsed / 1000;
}

export async function measureScale(devices: number, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<ScaleResult> {
  const root = await mkdtemp(join(tmpdir(), 'cascade-bench-scale-'));
  let broker: Mosquitto | undefined;
  let region: RegionChild | undefined;
  const sims: SimChild[] = [];
  try {
    broker = await startMosquitto({
      users: { [REGION_USER.username]: REGION_USER.password, [BASELINE_USER.username]: BASELINE_USER.password },
      acl: [
        `user ${REGION_USER.username}`,
        `topic readwrite cascade/${REGION}/#`,
        `user ${BASELINE_USER.username}`,
        'topic readwrite baseline/#',
        `topic read cascade/${REGION}/+/desired`,
        'pattern read cascade/+/%u/desired',
        'pattern write cascade/+/%u/reported',
        'pattern write cascade/+/%u/status',
        '',
      ].join('\n'),
      maxOpenFiles: devices + 1000,
    });
    const repo = join(root, 'fleet');
    await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: null }));
    region = await startRegionChild([
      '--repo', repo, '--region', REGION, '--data', join(root, 'region'), '--interval', '1h',
      '--enrollment-token', TOKEN,
      '--mqtt-url', broker.url, '--mqtt-username', REGION_USER.username, '--mqtt-password', REGION_USER.password,
      '--mqtt-device-passwords', broker.passwordFile, '--mqtt-broker-pid-file', broker.pidFile,
    ]);
    const url = region.url;
    const pid = region.child.pid!;
    await until(async () => ((await status(url)).revision.applied ? true : undefined), 60_000, () => 'the first revision');
    const baseRssMb = memoryMb(pid, 'VmRSS');

    const enrolStarted = performance.now();
    for (let i = 0, from = 0; from < devices; i++, from += PER_SIMULATOR) {
      sims.push(startSimulator({
        regionUrl: url, devices: Math.min(PER_SIMULATOR, devices - from), prefix: `s${i}`, enrollmentToken: TOKEN,
        mqttUrl: broker.url, initial: { web: '1.0.0' }, applyMs: 200, enrollConcurrency: 100,
      }));
    }
    const convergedOn = (s: RegionStatus, revision: string | null) => s.devices.converged === devices && (revision === null || s.revision.applied === revision);
    await until(async () => (convergedOn(await status(url), null) ? true : undefined), 900_000, async () => `enrolment of ${devices}: ${JSON.stringify((await status(url)).devices)}`);
    const enrolSeconds = (performance.now() - enrolStarted) / 1000;
    log(`scale ${devices}: enrolled and converged in ${enrolSeconds.toFixed(1)} s`);

    // Idle: nothing changes; every device stays connected.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const idleStart = cpuSeconds(pid);
    const idleStarted = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 15_000));
    const idleCpuPercent = ((cpuSeconds(pid) - idleStart) / ((performance.now() - idleStarted) / 1000)) * 100;
    const statusTimes: number[] = [];
    const metricsTimes: number[] = [];
    for (let i = 0; i < 5; i++) {
      statusTimes.push(await timed(`${url}/api/v1/status`));
      metricsTimes.push(await timed(`${url}/metrics`));
    }
    log(`scale ${devices}: idle CPU ${idleCpuPercent.toFixed(1)}%, status ${median(statusTimes).toFixed(1)} ms, metrics ${median(metricsTimes).toFixed(1)} ms`);

    const watcher = await mqtt.connectAsync(broker.url, { protocolVersion: 5, ...BASELINE_USER, reconnectPeriod: 0, clean: true });
    let lastSeen = 0;
    await watcher.subscribeAsync(`cascade/${REGION}/+/desired`, { qos: 0, rh: 2 });
    watcher.on('message', () => (lastSeen = performance.now()));
    const before = await status(url);
    const metricsBefore = await (await fetch(`${url}/metrics`)).text();
    const cpuBefore = cpuSeconds(pid);
    const started = performance.now();
    const head = await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    await fetch(`${url}/api/v1/reconcile`, { method: 'POST' });
    await until(async () => (convergedOn(await status(url), head) ? true : undefined), 900_000, async () => `convergence: ${JSON.stringify((await status(url)).devices)}`);
    const convergedSeconds = (performance.now() - started) / 1000;
    const rolloutCpuSeconds = cpuSeconds(pid) - cpuBefore;
    const after = await status(url);
    const metricsAfter = await (await fetch(`${url}/metrics`)).text();
    await watcher.endAsync();
    const published = metricValue(metricsAfter, 'cascade_mqtt_desired_published_total') - metricValue(metricsBefore, 'cascade_mqtt_desired_published_total');
    const payload = JSON.stringify({ device: 's0-00001', region: REGION, revision: head, generation: 2, apps: { web: { version: '2.0.0', deployment: 'web' } } });
    const baselinePublishSeconds = await baselinePublish(broker, devices, payload);
    const result: ScaleResult = {
      devices,
      enrolSeconds,
      idleCpuPercent,
      statusMs: median(statusTimes),
      metricsMs: median(metricsTimes),
      lastPublishSeconds: lastSeen ? (lastSeen - started) / 1000 : NaN,
      convergedSeconds,
      rolloutCpuSeconds,
      baselinePublishSeconds,
      published,
      updates: after.updatesSent - before.updatesSent,
      rssMb: memoryMb(pid, 'VmRSS'),
      baseRssMb,
      passes: metricValue(metricsAfter, 'cascade_reconcile_pass_duration_seconds_count'),
      passSeconds: metricValue(metricsAfter, 'cascade_reconcile_pass_duration_seconds_sum'),
      eventLoopP99Ms: metricValue(metricsAfter, 'cascade_event_loop_delay_seconds', 'quantile="0.99"') * 1000,
    };
    log(`scale ${devices}: ${JSON.stringify(result)}`);
    return result;
  } finally {
    await Promise.all(sims.map(stopSimulator));
    await region?.stop();
    await broker?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

export const suite: BenchSuite = {
  name: 'scale',
  async run(): Promise<BenchFigure[]> {
    const figures: BenchFigure[] = [];
    for (const n of SIZES) {
      const r = await measureScale(n);
      figures.push(
        figure(`${n} devices: commit to last desired state at the broker`, r.lastPublishSeconds, 's', '< 2x bare MQTT.js', r.lastPublishSeconds < 2 * r.baselinePublishSeconds, {
          name: `bare MQTT.js client, ${n} retained QoS 1 publishes`, value: r.baselinePublishSeconds, unit: 's',
        }),
        figure(`${n} devices: commit to 100% converged (200 ms installs)`, r.convergedSeconds, 's', 'informational', true),
        figure(`${n} devices: region CPU per device for the rollout`, (r.rolloutCpuSeconds / n) * 1e6, 'µs', 'flat in N', true),
        figure(`${n} devices: idle region CPU`, r.idleCpuPercent, '% of a core', '< 2%', r.idleCpuPercent < 2),
        figure(`${n} devices: GET /api/v1/status`, r.statusMs, 'ms', '< 5 ms', r.statusMs < 5),
        figure(`${n} devices: GET /metrics`, r.metricsMs, 'ms', 'informational', true),
        figure(`${n} devices: desired-state messages published`, r.published, 'messages', 'equal to updates needed', r.published === r.updates, { name: 'updatesSent', value: r.updates, unit: 'updates' }),
        figure(`${n} devices: region RSS above its base`, ((r.rssMb - r.baseRssMb) * 1024) / n, 'KB/device', '< 1 KB per device', ((r.rssMb - r.baseRssMb) * 1024) / n < 1, { name: 'region after start', value: r.baseRssMb, unit: 'MB' }),
      );
    }
    return figures;
  },
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const results: ScaleResult[] = [];
  for (const n of SIZES) results.push(await measureScale(n));
  process.stdout.write(`${JSON.stringify(results, null, 1)}\n`);
}
