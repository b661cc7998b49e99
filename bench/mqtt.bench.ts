import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { pino } from 'pino';
import type { RegionStatus } from '../src/reconciler/region-status.js';
import { startSimulation, type Simulation } from '../src/simulate/simulation.js';
import { commitFiles, makeLocalRepo } from '../test/support/git-fixtures.js';
import { freePort } from '../test/support/free-port.js';
import { startMosquitto, waitForPort, type Mosquitto } from '../test/support/mosquitto.js';
import { smallFleet, webDeployment } from '../test/support/small-fleet.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * A rollout to 10,000 simulated devices over MQTT through a private Mosquitto with per-device
 * credentials and the ACL of docs/mqtt.md. The region runs as its own process (`cascade region
 * --mqtt-url ...`), the devices in this one, each with its own MQTT connection.
 *
 * Figures: time from the commit to 100% converged; desired-state messages the region published
 * against the updates the rollout needed (goal: equal); the region's peak RSS. Baselines from the
 * same run: the broker alone taking the same number of retained QoS 1 messages from one client, and
 * the region's RSS once it has started, before any device.
 */
const DEVICES = Number(process.env['CASCADE_BENCH_MQTT_DEVICES'] ?? 10_000);
const REGION = 'us-east';
const TOKEN = 'bench-enrolment-token';
const REGION_USER = { username: 'cascade-region', password: 'bench-region-secret' };
const BASELINE_USER = { username: 'bench-baseline', password: 'bench-baseline-secret' };
const BIN = fileURLToPath(new URL('../bin/cascade.js', import.meta.url));

interface RegionChild {
  url: string;
  child: ChildProcess;
  stderr(): string;
  stop(): Promise<void>;
}

async function startRegionChild(args: string[]): Promise<RegionChild> {
  const port = await freePort();
  const child = spawn(process.execPath, [BIN, 'region', '--listen', `127.0.0.1:${port}`, ...args], {
    env: { ...process.env, CASCADE_LOG_FORMAT: 'json', CASCADE_LOG_LEVEL: process.env['CASCADE_BENCH_REGION_LOG_LEVEL'] ?? 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  // CASCADE_BENCH_REGION_LOG=<file> keeps the region's whole log, e.g. with CASCADE_BENCH_REGION_LOG_LEVEL=debug.
  const logFile = process.env['CASCADE_BENCH_REGION_LOG'];
  if (logFile) writeFileSync(logFile, '');
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-20_000);
    if (logFile) appendFileSync(logFile, chunk);
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) => child.once('exit', (code) => ((exitCode = code), resolve())));
  await waitForPort(port, 60_000, () => (exitCode !== undefined ? `region exited with ${exitCode}:\n${stderr}` : null));
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    stderr: () => stderr,
    async stop() {
      if (exitCode === undefined) child.kill('SIGTERM');
      await exited;
    },
  };
}

function memoryMb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

async function status(url: string): Promise<RegionStatus> {
  return (await (await fetch(`${url}/api/v1/status`)).json()) as RegionStatus;
}

/** The value of a counter in the region's /metrics (0 before its first increment). */
async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

async function until<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: () => Promise<string> | string): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${await what()}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The broker alone: one client publishes `count` retained QoS 1 messages and waits for every PUBACK. */
async function brokerBaselineMs(broker: Mosquitto, count: number, payload: string): Promise<number> {
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, ...BASELINE_USER, reconnectPeriod: 0 });
  const started = performance.now();
  await Promise.all(Array.from({ length: count }, (_, i) => client.publishAsync(`baseline/${i}/desired`, payload, { qos: 1, retain: true })));
  const elapsed = performance.now() - started;
  await client.endAsync();
  return elapsed;
}

export const suite: BenchSuite = {
  name: 'mqtt',
  async run(): Promise<BenchFigure[]> {
    const root = await mkdtemp(join(tmpdir(), 'cascade-bench-mqtt-'));
    let broker: Mosquitto | undefined;
    let region: RegionChild | undefined;
    let simulation: Simulation | undefined;
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
        maxOpenFiles: DEVICES * 2 + 1000,
      });
      const repo = join(root, 'fleet');
      await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: null }));
      region = await startRegionChild([
        '--repo', repo,
        '--region', REGION,
        '--data', join(root, 'region'),
        '--interval', '1h',
        '--enrollment-token', TOKEN,
        '--mqtt-url', broker.url,
        '--mqtt-username', REGION_USER.username,
        '--mqtt-password', REGION_USER.password,
        '--mqtt-device-passwords', broker.passwordFile,
        '--mqtt-broker-pid-file', broker.pidFile,
      ]);
      const regionUrl = region.url;
      await until(async () => ((await status(regionUrl)).revision.applied ? true : undefined), 60_000, () => 'the first revision');
      const startRss = memoryMb(region.child.pid!, 'VmRSS');

      const enrolStarted = performance.now();
      simulation = await startSimulation({
        regionUrl,
        devices: DEVICES,
        enrollmentToken: TOKEN,
        prefix: 'mq',
        applyMs: 200,
        initial: { web: '1.0.0' },
        statsIntervalMs: 0,
        enrollConcurrency: 200,
        log: pino({ level: 'warn' }, pino.destination(2)),
        mqtt: { url: broker.url },
      });
      const sim = simulation;
      const converged = (s: RegionStatus, revision: string | null) => s.devices.converged === DEVICES && (revision === null || s.revision.applied === revision);
      // Settled: every device converged on 1.0.0, and its hand-out of 1.0.0 published (one message per update).
      const settled = async () => {
        const s = await status(regionUrl);
        return converged(s, null) && s.updatesSent === DEVICES && (await metric(regionUrl, 'cascade_mqtt_desired_published_total')) === DEVICES ? true : undefined;
      };
      await until(settled, 600_000, async () => `enrolment: ${sim.statsLine()} ${JSON.stringify(await status(regionUrl))}`);
      const enrolSeconds = (performance.now() - enrolStarted) / 1000;
      process.stderr.write(`mqtt bench: ${DEVICES} devices enrolled and converged on 1.0.0 in ${enrolSeconds.toFixed(1)} s\n`);

      // Watches the region's publications from outside: when the first and the last arrive.
      const watcher = await mqtt.connectAsync(broker.url, { protocolVersion: 5, ...BASELINE_USER, reconnectPeriod: 0, clean: true });
      let seen = 0;
      let firstSeen = 0;
      let lastSeen = 0;
      await watcher.subscribeAsync(`cascade/${REGION}/+/desired`, { qos: 0, rh: 2 });
      watcher.on('message', () => {
        lastSeen = performance.now();
        if (seen++ === 0) firstSeen = lastSeen;
      });
      let devicesDone = 0;
      const deviceWatch = setInterval(() => {
        if (!devicesDone && sim.stats().versions['web']?.['2.0.0'] === DEVICES) devicesDone = performance.now();
      }, 50);
      const updatesBefore = (await status(regionUrl)).updatesSent;
      const publishedBefore = await metric(regionUrl, 'cascade_mqtt_desired_published_total');
      const started = performance.now();
      const head = await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
      await fetch(`${regionUrl}/api/v1/reconcile`, { method: 'POST' });
      await until(async () => (converged(await status(regionUrl), head) ? true : undefined), 300_000, async () => `convergence: ${sim.statsLine()} ${JSON.stringify((await status(regionUrl)).devices)}`);
      const convergedSeconds = (performance.now() - started) / 1000;
      const updates = (await status(regionUrl)).updatesSent - updatesBefore;
      const published = (await metric(regionUrl, 'cascade_mqtt_desired_published_total')) - publishedBefore;
      const peakRss = memoryMb(region.child.pid!, 'VmHWM');
      const stats = sim.stats();
      clearInterval(deviceWatch);
      const statusStarted = performance.now();
      await status(regionUrl);
      const statusMs = performance.now() - statusStarted;
      const passes = await metric(regionUrl, 'cascade_reconcile_pass_duration_seconds_count');
      const passSeconds = await metric(regionUrl, 'cascade_reconcile_pass_duration_seconds_sum');
      process.stderr.write(`mqtt bench: region: ${passes} passes, ${passSeconds.toFixed(1)} s in passes in total; one status request ${statusMs.toFixed(0)} ms; its warnings:\n${region.stderr().slice(-3000)}\n`);
      await watcher.endAsync();
      const at = (t: number) => (t ? `${((t - started) / 1000).toFixed(1)} s` : 'never');
      process.stderr.write(
        `mqtt bench: after the commit: first desired state at the broker ${at(firstSeen)}, last (${seen}) ${at(lastSeen)}, ` +
          `every device running 2.0.0 ${at(devicesDone)}, the region seeing 100% converged ${convergedSeconds.toFixed(1)} s\n` +
          `mqtt bench: ${sim.statsLine()}\n`,
      );

      const payload = JSON.stringify({ device: 'mq-00001', region: REGION, revision: head, generation: 2, apps: { web: { version: '2.0.0', deployment: 'web' } } });
      const baselineMs = await brokerBaselineMs(broker, DEVICES, payload);
      return [
        figure(
          `commit to 100% converged, ${DEVICES} devices over MQTT (200 ms installs)`,
          convergedSeconds,
          's',
          '< 30 s',
          convergedSeconds < 30 && stats.failed === 0,
          { name: `broker alone: ${DEVICES} retained QoS 1 publishes from one client`, value: baselineMs / 1000, unit: 's' },
        ),
        figure('desired-state messages the region published', published, 'messages', 'equal to the updates needed', published === updates, {
          name: 'updates needed (updatesSent)',
          value: updates,
          unit: 'updates',
        }),
        figure(`region peak RSS with ${DEVICES} devices over MQTT`, peakRss, 'MB', '< 400 MB', peakRss < 400, { name: 'region after start, no device', value: startRss, unit: 'MB' }),
      ];
    } finally {
      await simulation?.stop();
      await region?.stop();
      await broker?.stop();
      await rm(root, { recursive: true, force: true });
    }
  },
};
