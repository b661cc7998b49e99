import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import type { RegionStatus } from '../src/reconciler/region-status.js';
import { commitFiles, makeLocalRepo } from '../test/support/git-fixtures.js';
import { bridgeConfig, startMosquitto, type Mosquitto } from '../test/support/mosquitto.js';
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
const SIZES = (process.env['CASCADE_BENCH_SCALE_SIZES'] ?? '1000,5000,10000,25000').split(',').map(Number).filter((n) => n > 0);
/** Site brokers bridged to the region broker (docs/mqtt.md); devices are spread over them. 0: devices on the region broker. */
const SITES = Number(process.env['CASCADE_BENCH_SCALE_SITES'] ?? 3);
/** Devices of the HTTP long-poll run (0: none). */
const HTTP_DEVICES = Number(process.env['CASCADE_BENCH_SCALE_HTTP'] ?? 15_000);
/** Long-poll wait of the simulated devices over HTTP, in seconds (unset: the simulator's default). */
const HTTP_WAIT = Number(process.env['CASCADE_BENCH_SCALE_HTTP_WAIT'] ?? 0);
/** The simulator's long-poll wait when none is given (simulation.ts). */
const SIMULATOR_WAIT_SECONDS = 30;
const BRIDGE_USER = { username: 'cascade-bridge', password: 'bench-bridge-secret' };
const PER_SIMULATOR = 5_000;
const REGION = 'us-east';
const TOKEN = 'bench-enrolment-token';
const REGION_USER = { username: 'cascade-region', password: 'bench-region-secret' };
const BASELINE_USER = { username: 'bench-baseline', password: 'bench-baseline-secret' };
const SIM_CHILD = fileURLToPath(new URL('./support/sim-child.ts', import.meta.url));

export interface ScaleResult {
  devices: number;
  transport: 'mqtt' | 'http';
  sites: number;
  /** Commit to every hand-out counted (updatesSent up by the fleet). */
  handedOutSeconds: number;
  failedRequests: number;
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

/** The simulators' failed requests by kind (device-loop.ts errorKind), summed. */
function errorKindsOf(sims: SimChild[]): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const sim of sims) {
    for (const [kind, n] of Object.entries((sim.stats as { errorKinds?: Record<string, number> } | null)?.errorKinds ?? {})) kinds[kind] = (kinds[kind] ?? 0) + n;
  }
  return kinds;
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

async function baselinePublish(broker: Mosquitto, count: number, payload: string, topic: (i: number) => string): Promise<number> {
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, ...BASELINE_USER, reconnectPeriod: 0 });
  const started = performance.now();
  await Promise.all(Array.from({ length: count }, (_, i) => client.publishAsync(topic(i), payload, { qos: 1, retain: true })));
  const elapsed = performance.now() - started;
  await client.endAsync();
  return elapsed / 1000;
}

export async function measureScale(
  devices: number,
  opts: { transport: 'mqtt' | 'http'; sites: number } = { transport: 'mqtt', sites: SITES },
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<ScaleResult> {
  const root = await mkdtemp(join(tmpdir(), 'cascade-bench-scale-'));
  const useMqtt = opts.transport === 'mqtt';
  const siteBrokers: Mosquitto[] = [];
  let broker: Mosquitto | undefined;
  let region: RegionChild | undefined;
  const sims: SimChild[] = [];
  try {
    broker = await startMosquitto({
      users: { [REGION_USER.username]: REGION_USER.password, [BASELINE_USER.username]: BASELINE_USER.password, [BRIDGE_USER.username]: BRIDGE_USER.password },
      acl: [
        `user ${REGION_USER.username}`,
        `topic readwrite cascade/${REGION}/#`,
        `user ${BRIDGE_USER.username}`,
        `topic readwrite cascade/${REGION}/#`,
        `user ${BASELINE_USER.username}`,
        'topic readwrite baseline/#',
        `topic readwrite cascade/${REGION}/+/desired`,
        'pattern read cascade/+/%u/desired',
        'pattern write cascade/+/%u/reported',
        'pattern write cascade/+/%u/status',
        '',
      ].join('\n'),
      maxOpenFiles: opts.sites > 0 ? 2000 : devices + 1000,
    });
    for (let i = 0; useMqtt && i < opts.sites; i++) {
      siteBrokers.push(await startMosquitto({
        allowAnonymous: false,
        extraConfig: [`password_file ${broker.passwordFile}`, `acl_file ${broker.aclFile}`, ...bridgeConfig(`region-${i}`, broker.port, { username: BRIDGE_USER.username, password: BRIDGE_USER.password }, REGION).map((l) => (l.startsWith('remote_clientid') ? `${l}-${i}` : l))],
        maxOpenFiles: Math.ceil(devices / opts.sites) + 1000,
      }));
    }
    const deviceBrokers = siteBrokers.length > 0 ? siteBrokers : [broker];
    const repo = join(root, 'fleet');
    await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: null }));
    region = await startRegionChild([
      '--repo', repo, '--region', REGION, '--data', join(root, 'region'), '--interval', '1h',
      '--enrollment-token', TOKEN,
      ...(useMqtt
        ? ['--mqtt-url', broker.url, '--mqtt-username', REGION_USER.username, '--mqtt-password', REGION_USER.password,
          '--mqtt-device-passwords', broker.passwordFile, '--mqtt-broker-pid-file', [broker, ...siteBrokers].map((b) => b.pidFile).join(',')]
        : []),
    ]);
    const url = region.url;
    const pid = region.child.pid!;
    await until(async () => ((await status(url)).revision.applied ? true : undefined), 60_000, () => 'the first revision');
    const baseRssMb = memoryMb(pid, 'VmRSS');

    const enrolStarted = performance.now();
    for (let i = 0, from = 0; from < devices; i++, from += PER_SIMULATOR) {
      sims.push(startSimulator({
        regionUrl: url, devices: Math.min(PER_SIMULATOR, devices - from), prefix: `s${i}`, enrollmentToken: TOKEN,
        mqttUrl: useMqtt ? deviceBrokers[i % deviceBrokers.length]!.url : undefined, initial: { web: '1.0.0' }, applyMs: 200, enrollConcurrency: 100,
        ...(!useMqtt && HTTP_WAIT > 0 ? { waitSeconds: HTTP_WAIT } : {}),
      }));
    }
    const convergedOn = (s: RegionStatus, revision: string | null) => s.devices.converged === devices && (revision === null || s.revision.applied === revision);
    await until(async () => (convergedOn(await status(url), null) ? true : undefined), 900_000, async () => `enrolment of ${devices}: ${JSON.stringify((await status(url)).devices)}`);
    const enrolSeconds = (performance.now() - enrolStarted) / 1000;
    log(`scale ${devices}: enrolled and converged in ${enrolSeconds.toFixed(1)} s; failed requests so far by kind: ${JSON.stringify(errorKindsOf(sims))}`);

    // Idle: nothing changes; every device stays connected.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const idleStart = cpuSeconds(pid);
    const idleStarted = performance.now();
    // Over HTTP, a whole long-poll period at least, so every device's poll expires (and is answered) in it once.
    const idleMs = useMqtt ? 15_000 : Math.max(15_000, (HTTP_WAIT > 0 ? HTTP_WAIT : SIMULATOR_WAIT_SECONDS) * 1000 + 2_000);
    await new Promise((resolve) => setTimeout(resolve, idleMs));
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
    let handedOut = 0;
    const handedWatch = (async () => {
      while (!handedOut) {
        if ((await status(url)).updatesSent - before.updatesSent >= devices) handedOut = performance.now();
        else await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    await until(async () => (convergedOn(await status(url), head) ? true : undefined), 900_000, async () => `convergence: ${JSON.stringify((await status(url)).devices)}`);
    const convergedSeconds = (performance.now() - started) / 1000;
    await handedWatch;
    const rolloutCpuSeconds = cpuSeconds(pid) - cpuBefore;
    const after = await status(url);
    const metricsAfter = await (await fetch(`${url}/metrics`)).text();
    await watcher.endAsync();
    const published = metricValue(metricsAfter, 'cascade_mqtt_desired_published_total') - metricValue(metricsBefore, 'cascade_mqtt_desired_published_total');
    const payload = JSON.stringify({ device: 's0-00001', region: REGION, revision: head, generation: 2, apps: { web: { version: '2.0.0', deployment: 'web' } } });
    // The same messages through the same brokers: retained desired states the bridges carry down.
    const baselinePublishSeconds = useMqtt ? await baselinePublish(broker, devices, payload, (i) => `cascade/${REGION}/baseline-${i}/desired`) : NaN;
    const failedRequests = sims.reduce((n, sim) => n + ((sim.stats as { connectionErrors?: number } | null)?.connectionErrors ?? 0), 0);
    const throttled = sims.reduce((n, sim) => n + ((sim.stats as { throttled?: number } | null)?.throttled ?? 0), 0);
    log(`scale ${devices}: failed requests by kind: ${JSON.stringify(errorKindsOf(sims))}; throttled (429/503 with Retry-After, retried): ${throttled}`);
    const result: ScaleResult = {
      devices,
      transport: opts.transport,
      sites: siteBrokers.length,
      handedOutSeconds: (handedOut - started) / 1000,
      failedRequests,
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
    for (const site of siteBrokers) await site.stop();
    await broker?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

export const suite: BenchSuite = {
  name: 'scale',
  async run(): Promise<BenchFigure[]> {
    const figures: BenchFigure[] = [];
    const results: ScaleResult[] = [];
    for (const n of SIZES) {
      const r = await measureScale(n);
      results.push(r);
      const via = r.sites ? `MQTT via ${r.sites} site brokers` : 'MQTT';
      figures.push(
        figure(`${n} devices (${via}): commit to last desired state at the region broker`, r.lastPublishSeconds, 's', '< 2x bare MQTT.js', r.lastPublishSeconds < 2 * r.baselinePublishSeconds, {
          name: `bare MQTT.js client, ${n} retained QoS 1 publishes, same brokers`, value: r.baselinePublishSeconds, unit: 's',
        }),
        figure(`${n} devices (${via}): commit to 100% converged (200 ms installs)`, r.convergedSeconds, 's', 'converged', true),
        figure(`${n} devices (${via}): region CPU for the rollout, per device`, (r.rolloutCpuSeconds / n) * 1e6, 'µs', 'flat in N', true),
        figure(`${n} devices (${via}): idle region CPU, all connected, nothing changing`, r.idleCpuPercent, '% of a core', '< 2%', r.idleCpuPercent < 2),
        figure(`${n} devices (${via}): GET /api/v1/status`, r.statusMs, 'ms', '< 5 ms', r.statusMs < 5),
        figure(`${n} devices (${via}): GET /metrics`, r.metricsMs, 'ms', 'informational', true),
        figure(`${n} devices (${via}): desired-state messages published`, r.published, 'messages', 'equal to updates needed', r.published === r.updates, { name: 'updatesSent', value: r.updates, unit: 'updates' }),
        figure(`${n} devices (${via}): region RSS above its base, per device`, ((r.rssMb - r.baseRssMb) * 1024) / n, 'KB', '< 1 KB', ((r.rssMb - r.baseRssMb) * 1024) / n < 1, { name: 'region after start', value: r.baseRssMb, unit: 'MB' }),
      );
    }
    if (HTTP_DEVICES > 0) {
      const r = await measureScale(HTTP_DEVICES, { transport: 'http', sites: 0 });
      results.push(r);
      figures.push(
        figure(`${r.devices} devices (HTTP long poll): commit to every update handed out`, r.handedOutSeconds, 's', '< 2 s', r.handedOutSeconds < 2),
        figure(`${r.devices} devices (HTTP long poll): commit to 100% converged`, r.convergedSeconds, 's', 'converged, zero failed requests', r.failedRequests === 0, { name: 'failed requests (simulators)', value: r.failedRequests, unit: 'requests' }),
        figure(`${r.devices} devices (HTTP long poll): GET /api/v1/status`, r.statusMs, 'ms', '< 5 ms', r.statusMs < 5),
        figure(`${r.devices} devices (HTTP long poll): idle region CPU`, r.idleCpuPercent, '% of a core', '< 2%', r.idleCpuPercent < 2),
      );
    }
    writeFileSync(new URL('./results/scale.json', import.meta.url), `${JSON.stringify(results, null, 1)}\n`);
    return figures;
  },
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const results: ScaleResult[] = [];
  for (const n of SIZES) results.push(await measureScale(n));
  if (HTTP_DEVICES > 0) results.push(await measureScale(HTTP_DEVICES, { transport: 'http', sites: 0 }));
  process.stdout.write(`${JSON.stringify(results, null, 1)}\n`);
}
