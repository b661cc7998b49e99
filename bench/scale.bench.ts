import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, setPriority, tmpdir } from 'node:os';
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
/**
 * Each site broker's bridge has its own account at the region broker: the region broker takes the
 * username as client id (use_username_as_clientid), so bridges sharing one account took over each
 * other's session again and again (reports redelivered, desired states queued for one site handed to another).
 */
const bridgeUser = (site: number) => ({ username: `cascade-bridge-site-${site}`, password: `bench-bridge-secret-${site}` });
const siteName = (site: number) => `site-${site}`;
/**
 * CASCADE_BENCH_SCALE_SITE_PREFIX=0 bridges the site brokers without their site's prefix (every topic as it is,
 * as before 2026-12-01): every site broker then receives every desired state of the region. Default: prefixed.
 */
const SITE_PREFIX = process.env['CASCADE_BENCH_SCALE_SITE_PREFIX'] !== '0';
const PER_SIMULATOR = 5_000;
/** How long enrolment, and then the rollout, may take to converge. */
/** The simulators' nice value (CASCADE_BENCH_SCALE_SIM_NICE; 0: same priority as the region). */
const SIM_NICE = Number(process.env['CASCADE_BENCH_SCALE_SIM_NICE'] ?? 10);
/**
 * The site brokers' nice value (CASCADE_BENCH_SCALE_SITE_NICE; 0: same priority as the region). Like the
 * simulated devices, the site brokers stand for machines of their own (a gateway at each site); the
 * region broker, the region's own, keeps the region's priority.
 */
const SITE_NICE = Number(process.env['CASCADE_BENCH_SCALE_SITE_NICE'] ?? 10);
/**
 * CASCADE_BENCH_SCALE_REGION_CPU=0 gives the region a core of its own (CPU 0; taskset, every thread) and
 * puts the bench, the brokers and the simulators on the other cores: as deployed, where the region runs in
 * its own container and the brokers and devices are other machines. Unset: all share every core.
 */
const REGION_CPU = process.env['CASCADE_BENCH_SCALE_REGION_CPU'] ?? '';
/** The size (MQTT) at which the region is also killed with SIGKILL mid-rollout and restarted (0: none). */
/**
 * The monitoring client of the rollout (/metrics every second, a status read beside it): by default in a
 * process of its own, so its timings are not delayed by the bench's own event loop, which takes every
 * desired-state message of the rollout meanwhile; `bench`: in the bench's process, as before 2026-12-01 21:00.
 */
const SCRAPER_PROCESS = process.env['CASCADE_BENCH_SCALE_SCRAPER'] !== 'bench';
/** How long the region holds the converged fleet, nothing changing, before its settled memory is read (0: not read). */
const SETTLE_MS = Number(process.env['CASCADE_BENCH_SCALE_SETTLE_MS'] ?? 60_000);
const KILL_AT = Number(process.env['CASCADE_BENCH_SCALE_KILL_AT'] ?? 10_000);
const CONVERGE_TIMEOUT_MS = Number(process.env['CASCADE_BENCH_SCALE_TIMEOUT_MS'] ?? 900_000);
const REGION = 'us-east';
/** Where the region publishes desired states at the region broker: device topics, and each site's prefix. */
const DESIRED_FILTERS = [`cascade/${REGION}/+/desired`, `cascade/${REGION}/sites/+/+/desired`];
const TOKEN = 'bench-enrolment-token';
const REGION_USER = { username: 'cascade-region', password: 'bench-region-secret' };
const BASELINE_USER = { username: 'bench-baseline', password: 'bench-baseline-secret' };
const SIM_CHILD = fileURLToPath(new URL('./support/sim-child.ts', import.meta.url));

export interface ScaleResult {
  devices: number;
  transport: 'mqtt' | 'http';
  sites: number;
  /** Site brokers bridged under their site's prefix (only their devices' desired states come down), or every topic as it is. */
  sitePrefix?: boolean;
  /** Commit to every hand-out counted (updatesSent up by the fleet). */
  handedOutSeconds: number;
  failedRequests: number;
  enrolSeconds: number;
  idleCpuPercent: number;
  /** Main-thread GC pauses in the idle window, % of the window (prom-client's nodejs_gc_duration_seconds). */
  idleGcPercent?: number;
  /** The SIGKILL mid-rollout run (CASCADE_BENCH_SCALE_KILL_AT), when made at this size. */
  kill?: { killedAtPublished: number; restartToConvergedSeconds: number; updates: number; devicesHandedTwice: number; repeatedMessages: number; devicesWithDesired: number };
  /** MQTT reports and presence messages that reached the region in the idle window. */
  idleMessages?: number;
  statusMs: number;
  metricsMs: number;
  lastPublishSeconds: number;
  convergedSeconds: number;
  rolloutCpuSeconds: number;
  /**
   * A bare MQTT.js client publishing the very messages the region published (same topics, same
   * payloads, retained, QoS 1) through the same brokers: the bridges carry them down and every device
   * receives its own again (and ignores it: same generation).
   */
  baselinePublishSeconds: number;
  /** The same number of messages of the same size to topics no device subscribes to (the baseline of earlier runs). */
  baselineOtherTopicsSeconds: number;
  published: number;
  updates: number;
  rssMb: number;
  baseRssMb: number;
  /**
   * RSS and V8 heap used once the region has held the converged fleet for SETTLE_MS with nothing
   * changing (the steady state of holding N devices; V8 shrinks its young generation and compacts
   * once allocation stays low), beside rssMb, taken the moment the rollout converged.
   */
  settledRssMb?: number;
  settledHeapMb?: number;
  settledNewSpaceMb?: number;
  settleGc?: Record<string, { seconds: number; pauses: number; over10ms: number; over100ms: number }>;
  /** The settler's collections so far (cascade_memory_settle_collections_total). */
  settleCollections?: { minor: number; major: number };
  passes: number;
  passSeconds: number;
  /** Event-loop delay during the rollout: the worst p99 and max of the per-second scrapes. */
  eventLoopP99Ms: number;
  eventLoopMaxMs: number;
  /** Over the whole rollout (cascade_event_loop_lag_seconds, cumulative): p99 interpolated in its buckets, and the share of samples over 50 ms. */
  eventLoopRolloutP99Ms: number;
  eventLoopOver50msShare: number;
  /** GET /api/v1/status during the rollout, with /metrics scraped every second (median, max). */
  statusRolloutMs: number;
  statusRolloutMaxMs: number;
  metricsRolloutMs: number;
  enrolCpuSeconds: number;
  /** Seconds the region's main thread was ready to run but waited for a core during the rollout (/proc/<pid>/schedstat). */
  rolloutRunQueueSeconds?: number;
  /** CPU seconds of all brokers (region and sites) during enrolment: they re-read the password file. */
  enrolBrokerCpuSeconds: number;
  /** CPU seconds of the region broker and of the site brokers together during the rollout (MQTT). */
  rolloutBrokerCpuSeconds?: { region: number; sites: number };
  /** V8 heap used (cascade_process_nodejs_heap_size_used_bytes) after start and after the rollout. */
  baseHeapMb: number;
  heapMb: number;
  /** Main-thread GC pauses during the rollout, by kind: seconds in all, and how many took over 10 ms and over 100 ms. */
  rolloutGc?: Record<string, { seconds: number; pauses: number; over10ms: number; over100ms: number }>;
  /** The CPU the region had to itself (CASCADE_BENCH_SCALE_REGION_CPU), if any. */
  regionCpu?: string;
  memory?: { heapTotalMb: number; newSpaceMb: number; oldSpaceMb: number; externalMb: number; rssAnonMb: number; rssFileMb: number };
}

interface SimChild {
  child: ChildProcess;
  stats: { enrolled: number; applied: number; versions: Record<string, Record<string, number>> } | null;
}

function startSimulator(options: object): SimChild {
  const child = spawn(process.execPath, ['--import', 'tsx', SIM_CHILD, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
  // The simulated devices stand for machines of their own: on this 2-core machine they yield the CPU to
  // the region and the brokers (nice 10), else a rollout measures how the two cores are shared among the
  // region, four brokers and the simulators reacting to it as much as the region itself.
  if (SIM_NICE !== 0 && child.pid !== undefined) setPriority(child.pid, SIM_NICE);
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

const LAG_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** The event-loop lag between two scrapes of the cumulative histogram: p99 (linear within a bucket) and the share over 50 ms. */
function lagOverRollout(before: string, after: string): { eventLoopRolloutP99Ms: number; eventLoopOver50msShare: number } {
  const name = 'cascade_event_loop_lag_seconds';
  const count = metricValue(after, `${name}_count`) - metricValue(before, `${name}_count`);
  const within = (le: number) => metricValue(after, `${name}_bucket`, `le="${le}"`) - metricValue(before, `${name}_bucket`, `le="${le}"`);
  if (count <= 0) return { eventLoopRolloutP99Ms: NaN, eventLoopOver50msShare: NaN };
  let lower = 0;
  let below = 0;
  let p99 = Infinity;
  for (const le of LAG_BUCKETS) {
    const n = within(le);
    if (n >= 0.99 * count) {
      p99 = lower + ((0.99 * count - below) / Math.max(1, n - below)) * (le - lower);
      break;
    }
    lower = le;
    below = n;
  }
  return { eventLoopRolloutP99Ms: p99 * 1000, eventLoopOver50msShare: 1 - within(0.05) / count };
}

/** The simulators' failed requests by kind (device-loop.ts errorKind), summed. */
function errorKindsOf(sims: SimChild[]): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const sim of sims) {
    for (const [kind, n] of Object.entries((sim.stats as { errorKinds?: Record<string, number> } | null)?.errorKinds ?? {})) kinds[kind] = (kinds[kind] ?? 0) + n;
  }
  return kinds;
}

/** The monitoring client in a process of its own (bench/support/scrape-child.ts): started, and stopped with what it measured. */
async function startScraper(url: string): Promise<{ stop(): Promise<{ metricsMs: number[]; statusMs: number[]; loopP99Ms: number[]; loopMaxMs: number[] }> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./support/scrape-child.ts', import.meta.url)), url], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.startsWith('ready\n')) resolve();
    });
    void exited.then(() => reject(new Error(`the scraper exited before it was ready: ${out}`)));
  });
  return {
    async stop() {
      child.kill('SIGTERM');
      await exited;
      return JSON.parse(out.slice('ready\n'.length).trim()) as { metricsMs: number[]; statusMs: number[]; loopP99Ms: number[]; loopMaxMs: number[] };
    },
  };
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

async function baselinePublish(broker: Mosquitto, messages: [topic: string, payload: string | Buffer][]): Promise<number> {
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, ...BASELINE_USER, reconnectPeriod: 0 });
  const started = performance.now();
  await Promise.all(messages.map(([topic, payload]) => client.publishAsync(topic, payload, { qos: 1, retain: true })));
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
  // The bench itself, and so the brokers and simulators it starts, on the cores the region does not use.
  if (REGION_CPU) execFileSync('taskset', ['-a', '-p', '-c', otherCpus(REGION_CPU), String(process.pid)], { stdio: 'ignore' });
  const useMqtt = opts.transport === 'mqtt';
  const siteBrokers: Mosquitto[] = [];
  let broker: Mosquitto | undefined;
  let region: RegionChild | undefined;
  const sims: SimChild[] = [];
  try {
    broker = await startMosquitto({
      users: {
        [REGION_USER.username]: REGION_USER.password,
        [BASELINE_USER.username]: BASELINE_USER.password,
        ...Object.fromEntries(Array.from({ length: opts.sites }, (_, i) => [bridgeUser(i).username, bridgeUser(i).password])),
      },
      acl: [
        `user ${REGION_USER.username}`,
        `topic readwrite cascade/${REGION}/#`,
        // Each site's bridge carries its devices' topics under its own prefix (docs/mqtt.md), and may use that prefix only.
        ...Array.from({ length: opts.sites }, (_, i) => [`user ${bridgeUser(i).username}`, `topic readwrite cascade/${REGION}/${SITE_PREFIX ? `sites/${siteName(i)}/` : ''}#`]).flat(),
        `user ${BASELINE_USER.username}`,
        'topic readwrite baseline/#',
        ...DESIRED_FILTERS.map((filter) => `topic readwrite ${filter}`),
        'pattern read cascade/+/%u/desired',
        'pattern write cascade/+/%u/reported',
        'pattern write cascade/+/%u/status',
        '',
      ].join('\n'),
      maxOpenFiles: opts.sites > 0 ? 2000 : devices + 1000,
    });
    // Simulator processes of at most PER_SIMULATOR devices, at least one per site broker; each
    // simulator's devices all connect to one broker, whose open-file limit must cover them all
    // (a limit of devices / sites left a site broker refusing the devices of a 5,000-device simulator).
    const perSite = useMqtt && opts.sites > 0 ? opts.sites : 1;
    // A multiple of the site count, so the sites carry equal shares (50,000 devices: 16,667 a site, within the open-file limit).
    const simulators = Math.min(devices, Math.ceil(Math.ceil(devices / PER_SIMULATOR) / perSite) * perSite);
    const simSizes = Array.from({ length: simulators }, (_, i) => Math.floor(devices / simulators) + (i < devices % simulators ? 1 : 0));
    const siteLoad = (site: number) => simSizes.reduce((n, size, i) => n + (i % opts.sites === site ? size : 0), 0);
    for (let i = 0; useMqtt && i < opts.sites; i++) {
      const site = await startMosquitto({
        allowAnonymous: false,
        extraConfig: [`password_file ${broker.passwordFile}`, `acl_file ${broker.aclFile}`, ...bridgeConfig(`region-${i}`, broker.port, bridgeUser(i), REGION, SITE_PREFIX ? siteName(i) : undefined)],
        maxOpenFiles: siteLoad(i) + 1000,
      });
      if (SITE_NICE !== 0 && site.child.pid !== undefined) setPriority(site.child.pid, SITE_NICE);
      siteBrokers.push(site);
    }
    const deviceBrokers = siteBrokers.length > 0 ? siteBrokers : [broker];
    const repo = join(root, 'fleet');
    await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: null }));
    const regionArgs = [
      '--repo', repo, '--region', REGION, '--data', join(root, 'region'), '--interval', '1h',
      '--enrollment-token', TOKEN,
      ...(useMqtt
        ? ['--mqtt-url', broker.url, '--mqtt-username', REGION_USER.username, '--mqtt-password', REGION_USER.password,
          '--mqtt-device-passwords', broker.passwordFile, '--mqtt-broker-pid-file', [broker, ...siteBrokers].map((b) => b.pidFile).join(',')]
        : []),
    ];
    region = pinned(await startRegionChild(regionArgs));
    const url = region.url;
    const pid = region.child.pid!;
    await until(async () => ((await status(url)).revision.applied ? true : undefined), 60_000, () => 'the first revision');
    const baseRssMb = memoryMb(pid, 'VmRSS');
    const baseHeapMb = metricValue(await (await fetch(`${url}/metrics`)).text(), 'cascade_process_nodejs_heap_size_used_bytes') / 2 ** 20;
    const enrolCpuBefore = cpuSeconds(pid);
    const brokerPids = [broker, ...siteBrokers].map((b) => b.child.pid!);
    const brokerCpu = (): number => brokerPids.reduce((sum, p) => sum + cpuSeconds(p), 0);
    const enrolBrokerCpuBefore = brokerCpu();

    const enrolStarted = performance.now();
    for (let i = 0; i < simSizes.length; i++) {
      sims.push(startSimulator({
        regionUrl: url, devices: simSizes[i], prefix: `s${i}`, enrollmentToken: TOKEN,
        mqttUrl: useMqtt ? deviceBrokers[i % deviceBrokers.length]!.url : undefined, initial: { web: '1.0.0' }, applyMs: 200, enrollConcurrency: 100,
        ...(!useMqtt && HTTP_WAIT > 0 ? { waitSeconds: HTTP_WAIT } : {}),
      }));
    }
    const convergedOn = (s: RegionStatus, revision: string | null) => s.devices.converged === devices && (revision === null || s.revision.applied === revision);
    await until(async () => (convergedOn(await status(url), null) ? true : undefined), CONVERGE_TIMEOUT_MS, async () => `enrolment of ${devices}: ${JSON.stringify((await status(url)).devices)}; simulators: ${JSON.stringify(sims.map((sim) => ({ ...(sim.stats ?? {}), versions: undefined })))}`);
    const enrolSeconds = (performance.now() - enrolStarted) / 1000;
    const enrolCpuSeconds = cpuSeconds(pid) - enrolCpuBefore;
    const enrolBrokerCpuSeconds = brokerCpu() - enrolBrokerCpuBefore;
    log(`scale ${devices}: enrolled and converged in ${enrolSeconds.toFixed(1)} s; failed requests so far by kind: ${JSON.stringify(errorKindsOf(sims))}`);

    // Idle: nothing changes; every device stays connected.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const idleMetricsBefore = await (await fetch(`${url}/metrics`)).text();
    const gcBefore = gcSeconds(idleMetricsBefore);
    const idleStart = cpuSeconds(pid);
    const idleStarted = performance.now();
    // Over HTTP, a whole long-poll period at least, so every device's poll expires (and is answered) in it once.
    const idleMs = useMqtt ? 15_000 : Math.max(15_000, (HTTP_WAIT > 0 ? HTTP_WAIT : SIMULATOR_WAIT_SECONDS) * 1000 + 2_000);
    await new Promise((resolve) => setTimeout(resolve, idleMs));
    const idleCpuPercent = ((cpuSeconds(pid) - idleStart) / ((performance.now() - idleStarted) / 1000)) * 100;
    // What of it was garbage collection on the main thread (V8's pauses; its helper threads are not counted).
    const idleMetricsAfter = await (await fetch(`${url}/metrics`)).text();
    const idleGcPercent = ((gcSeconds(idleMetricsAfter) - gcBefore) / ((performance.now() - idleStarted) / 1000)) * 100;
    // Messages that reached the region while nothing changed (devices re-reporting or reconnecting).
    const idleMessages = sumOf(idleMetricsAfter, 'cascade_mqtt_reports_total') + sumOf(idleMetricsAfter, 'cascade_mqtt_presence_messages_total') - sumOf(idleMetricsBefore, 'cascade_mqtt_reports_total') - sumOf(idleMetricsBefore, 'cascade_mqtt_presence_messages_total');
    const statusTimes: number[] = [];
    const metricsTimes: number[] = [];
    for (let i = 0; i < 5; i++) {
      statusTimes.push(await timed(`${url}/api/v1/status`));
      metricsTimes.push(await timed(`${url}/metrics`));
    }
    log(`scale ${devices}: idle CPU ${idleCpuPercent.toFixed(1)}%, status ${median(statusTimes).toFixed(1)} ms, metrics ${median(metricsTimes).toFixed(1)} ms`);

    const watcher = await mqtt.connectAsync(broker.url, { protocolVersion: 5, ...BASELINE_USER, reconnectPeriod: 0, clean: true });
    let lastSeen = 0;
    const seen = new Map<string, Buffer>();
    await watcher.subscribeAsync(DESIRED_FILTERS, { qos: 0, rh: 2 });
    watcher.on('message', (topic, message) => {
      lastSeen = performance.now();
      seen.set(topic, message);
    });
    const before = await status(url);
    const metricsBefore = await (await fetch(`${url}/metrics`)).text();
    // During the rollout, as a monitoring system would: /metrics scraped every second, and a status read beside it.
    const loopP99: number[] = [];
    const loopMax: number[] = [];
    const statusRollout: number[] = [];
    const metricsRollout: number[] = [];
    let stopScraping: () => Promise<void>;
    if (SCRAPER_PROCESS) {
      const scraper = await startScraper(url);
      stopScraping = async () => {
        const measured = await scraper.stop();
        metricsRollout.push(...measured.metricsMs);
        statusRollout.push(...measured.statusMs);
        loopP99.push(...measured.loopP99Ms);
        loopMax.push(...measured.loopMaxMs);
      };
    } else {
      let rolling = true;
      const scraping = (async () => {
        while (rolling) {
          const t0 = performance.now();
          const text = await (await fetch(`${url}/metrics`)).text();
          metricsRollout.push(performance.now() - t0);
          loopP99.push(metricValue(text, 'cascade_event_loop_delay_seconds', 'quantile="0.99"') * 1000);
          loopMax.push(metricValue(text, 'cascade_event_loop_delay_seconds', 'quantile="max"') * 1000);
          statusRollout.push(await timed(`${url}/api/v1/status`));
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1000 - (performance.now() - t0))));
        }
      })();
      stopScraping = async () => {
        rolling = false;
        await scraping;
      };
    }
    const cpuBefore = cpuSeconds(pid);
    const waitBefore = runQueueSeconds(pid);
    const regionBrokerCpu = (): number => (broker ? cpuSeconds(broker.child.pid!) : 0);
    const siteBrokersCpu = (): number => siteBrokers.reduce((sum, b) => sum + cpuSeconds(b.child.pid!), 0);
    const brokersBefore = { region: regionBrokerCpu(), sites: siteBrokersCpu() };
    // The clock starts once the commit exists (as after a push): making it in the bench's own
    // repository (git add, commit: tens of ms) is not the region's work.
    const commitStarted = performance.now();
    const head = await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    const started = performance.now();
    const startedAt = Date.now();
    await fetch(`${url}/api/v1/reconcile`, { method: 'POST' });
    let handedOut = 0;
    const handedWatch = (async () => {
      while (!handedOut) {
        if ((await status(url)).updatesSent - before.updatesSent >= devices) handedOut = performance.now();
        else await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    await until(async () => (convergedOn(await status(url), head) ? true : undefined), CONVERGE_TIMEOUT_MS, async () => `convergence: ${JSON.stringify((await status(url)).devices)}`);
    const convergedSeconds = (performance.now() - started) / 1000;
    log(`scale ${devices}: making the commit took ${Math.round(started - commitStarted)} ms; clock started at ${startedAt} (epoch ms), last desired state seen at ${Math.round(startedAt + lastSeen - started)}`);
    await handedWatch;
    await stopScraping();
    const rolloutCpuSeconds = cpuSeconds(pid) - cpuBefore;
    const rolloutBrokerCpuSeconds = useMqtt ? { region: regionBrokerCpu() - brokersBefore.region, sites: siteBrokersCpu() - brokersBefore.sites } : undefined;
    const rolloutRunQueueSeconds = runQueueSeconds(pid) - waitBefore;
    const after = await status(url);
    const metricsAfter = await (await fetch(`${url}/metrics`)).text();
    await watcher.endAsync();
    const published = metricValue(metricsAfter, 'cascade_mqtt_desired_published_total') - metricValue(metricsBefore, 'cascade_mqtt_desired_published_total');
    const payload = JSON.stringify({ device: 's0-00001', region: REGION, revision: head, generation: 2, apps: { web: { version: '2.0.0', deployment: 'web' } } });
    // The same messages through the same brokers: retained desired states the bridges carry down.
    const baselineOtherTopicsSeconds = useMqtt ? await baselinePublish(broker, Array.from({ length: devices }, (_, i) => [`cascade/${REGION}/baseline-${i}/desired`, payload])) : NaN;
    const baselinePublishSeconds = useMqtt ? await baselinePublish(broker, [...seen]) : NaN;
    const failedRequests = sims.reduce((n, sim) => n + ((sim.stats as { connectionErrors?: number } | null)?.connectionErrors ?? 0), 0);
    const throttled = sims.reduce((n, sim) => n + ((sim.stats as { throttled?: number } | null)?.throttled ?? 0), 0);
    log(`scale ${devices}: failed requests by kind: ${JSON.stringify(errorKindsOf(sims))}; throttled (429/503 with Retry-After, retried): ${throttled}`);
    const result: ScaleResult = {
      devices,
      transport: opts.transport,
      sites: siteBrokers.length,
      ...(siteBrokers.length > 0 ? { sitePrefix: SITE_PREFIX } : {}),
      handedOutSeconds: (handedOut - started) / 1000,
      failedRequests,
      enrolSeconds,
      idleCpuPercent,
      idleGcPercent,
      idleMessages,
      statusMs: median(statusTimes),
      metricsMs: median(metricsTimes),
      lastPublishSeconds: lastSeen ? (lastSeen - started) / 1000 : NaN,
      convergedSeconds,
      rolloutCpuSeconds,
      ...(rolloutBrokerCpuSeconds ? { rolloutBrokerCpuSeconds } : {}),
      rolloutRunQueueSeconds,
      baselinePublishSeconds,
      baselineOtherTopicsSeconds,
      published,
      updates: after.updatesSent - before.updatesSent,
      rssMb: memoryMb(pid, 'VmRSS'),
      baseRssMb,
      passes: metricValue(metricsAfter, 'cascade_reconcile_pass_duration_seconds_count'),
      passSeconds: metricValue(metricsAfter, 'cascade_reconcile_pass_duration_seconds_sum'),
      eventLoopP99Ms: Math.max(...loopP99, metricValue(metricsAfter, 'cascade_event_loop_delay_seconds', 'quantile="0.99"') * 1000),
      ...lagOverRollout(metricsBefore, metricsAfter),
      eventLoopMaxMs: Math.max(...loopMax, metricValue(metricsAfter, 'cascade_event_loop_delay_seconds', 'quantile="max"') * 1000),
      statusRolloutMs: median(statusRollout),
      statusRolloutMaxMs: Math.max(...statusRollout),
      metricsRolloutMs: median(metricsRollout),
      enrolCpuSeconds,
      enrolBrokerCpuSeconds,
      baseHeapMb,
      heapMb: metricValue(metricsAfter, 'cascade_process_nodejs_heap_size_used_bytes') / 2 ** 20,
      // Where the RSS goes (informational): V8's heap as reserved, its young generation, memory outside it
      // (buffers), and the process's anonymous and file-backed resident pages.
      rolloutGc: gcOver(metricsBefore, metricsAfter),
      ...(REGION_CPU ? { regionCpu: REGION_CPU } : {}),
      memory: {
        heapTotalMb: metricValue(metricsAfter, 'cascade_process_nodejs_heap_size_total_bytes') / 2 ** 20,
        newSpaceMb: metricValue(metricsAfter, 'cascade_process_nodejs_heap_space_size_total_bytes', 'space="new"') / 2 ** 20,
        oldSpaceMb: metricValue(metricsAfter, 'cascade_process_nodejs_heap_space_size_total_bytes', 'space="old"') / 2 ** 20,
        externalMb: metricValue(metricsAfter, 'cascade_process_nodejs_external_memory_bytes') / 2 ** 20,
        rssAnonMb: memoryMb(pid, 'RssAnon'),
        rssFileMb: memoryMb(pid, 'RssFile'),
      },
    };
    if (SETTLE_MS > 0) {
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const settled = await (await fetch(`${url}/metrics`)).text();
      result.settledRssMb = memoryMb(pid, 'VmRSS');
      result.settledHeapMb = metricValue(settled, 'cascade_process_nodejs_heap_size_used_bytes') / 2 ** 20;
      result.settledNewSpaceMb = metricValue(settled, 'cascade_process_nodejs_heap_space_size_total_bytes', 'space="new"') / 2 ** 20;
      // What giving memory back cost: the GC pauses of the settle window (the settler's own collections, by kind).
      result.settleGc = gcOver(metricsAfter, settled);
      result.settleCollections = { minor: metricValue(settled, 'cascade_memory_settle_collections_total', 'kind="minor"'), major: metricValue(settled, 'cascade_memory_settle_collections_total', 'kind="major"') };
    }
    if (useMqtt && KILL_AT === devices) {
      region = await killMidRollout({ region, regionArgs, repo, brokerUrl: broker.url, devices, result, log });
    }
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

/**
 * Item 9 of issue 11: a SIGKILL mid-rollout resumes with no double hand-out. Commits web 3.0.0, kills the
 * region with SIGKILL once a third of the fleet's new desired states are at the broker, starts it again on
 * the same data directory, and waits for convergence. Then every device must have been handed 3.0.0 once:
 * updatesSent up by exactly the fleet, and at the broker one desired generation per device for the
 * commit, none handed twice. Throws when that does not hold.
 */
async function killMidRollout(opts: { region: RegionChild; regionArgs: string[]; repo: string; brokerUrl: string; devices: number; result: ScaleResult; log: (line: string) => void }): Promise<RegionChild> {
  const { devices, log } = opts;
  const before = await status(opts.region.url);
  const watcher = await mqtt.connectAsync(opts.brokerUrl, { protocolVersion: 5, ...BASELINE_USER, reconnectPeriod: 0, clean: true });
  let head = '';
  /** Per device, the generations of desired states for the commit that reached the broker (repeats included). */
  const generations = new Map<string, number[]>();
  let atBroker = 0;
  await watcher.subscribeAsync(DESIRED_FILTERS, { qos: 0, rh: 2 });
  watcher.on('message', (topic, message) => {
    if (message.length === 0) return; // a cleared retained state (a device that moved site): none here
    const desired = JSON.parse(message.toString('utf8')) as { revision?: string; generation?: number };
    if (!head || desired.revision !== head) return;
    const list = generations.get(topic) ?? [];
    if (list.length === 0) atBroker++;
    list.push(desired.generation ?? -1);
    generations.set(topic, list);
  });
  head = await commitFiles(opts.repo, { 'deployments/web.yaml': webDeployment('3.0.0') }, 'web 3.0.0');
  await fetch(`${opts.region.url}/api/v1/reconcile`, { method: 'POST' });
  await until(async () => (atBroker >= devices / 3 ? true : undefined), 120_000, () => `a third of the desired states of ${head.slice(0, 8)} at the broker (${atBroker})`);
  const killedAt = atBroker;
  opts.region.child.kill('SIGKILL');
  await opts.region.stop();
  const restarted = performance.now();
  const region = pinned(await startRegionChild(opts.regionArgs));
  await until(async () => {
    const s = await status(region.url);
    return s.revision.applied === head && s.devices.converged === devices ? true : undefined;
  }, CONVERGE_TIMEOUT_MS, async () => `convergence after the restart: ${JSON.stringify((await status(region.url)).devices)}`);
  const restartSeconds = (performance.now() - restarted) / 1000;
  const after = await status(region.url);
  await watcher.endAsync();
  let handedTwice = 0;
  let repeated = 0;
  for (const list of generations.values()) {
    if (new Set(list).size > 1) handedTwice++;
    repeated += list.length - 1;
  }
  const kill = { killedAtPublished: killedAt, restartToConvergedSeconds: restartSeconds, updates: after.updatesSent - before.updatesSent, devicesHandedTwice: handedTwice, repeatedMessages: repeated, devicesWithDesired: generations.size };
  log(`scale ${devices}: SIGKILL mid-rollout: ${JSON.stringify(kill)}`);
  opts.result.kill = kill;
  if (kill.updates !== devices || handedTwice > 0 || generations.size !== devices) {
    throw new Error(`after a SIGKILL mid-rollout: ${JSON.stringify(kill)} (expected ${devices} updates, every device handed 3.0.0 once)`);
  }
  return region;
}

/** Seconds the process's main thread spent ready to run, waiting for a core (the second field of /proc/<pid>/schedstat). */
function runQueueSeconds(pid: number): number {
  try {
    return readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map(Number)[1]! / 1e9;
  } catch {
    return NaN;
  }
}

/** Seconds of GC pauses so far, every kind (prom-client's nodejs_gc_duration_seconds histogram). */
function gcSeconds(metrics: string): number {
  return sumOf(metrics, 'cascade_process_nodejs_gc_duration_seconds_sum');
}

/** GC pauses between two scrapes, by kind (prom-client's buckets: 1 ms, 10 ms, 100 ms, 1 s...). */
function gcOver(before: string, after: string): Record<string, { seconds: number; pauses: number; over10ms: number; over100ms: number }> {
  const name = 'cascade_process_nodejs_gc_duration_seconds';
  const out: Record<string, { seconds: number; pauses: number; over10ms: number; over100ms: number }> = {};
  for (const kind of ['minor', 'major', 'incremental', 'weakcb']) {
    // A bucket's labels are {le="...",region="...",kind="..."}: each is looked for on its own.
    const d = (suffix: string, le?: string) => {
      const labels = [`kind="${kind}"`, ...(le ? [`le="${le}"`] : [])];
      return metricValue(after, `${name}${suffix}`, labels) - metricValue(before, `${name}${suffix}`, labels);
    };
    const pauses = d('_count');
    out[kind] = { seconds: d('_sum'), pauses, over10ms: pauses - d('_bucket', '0.01'), over100ms: pauses - d('_bucket', '0.1') };
  }
  return out;
}

/** The sum of a metric's samples over all its label sets. */
function sumOf(metrics: string, name: string): number {
  let sum = 0;
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Every CPU of this machine but `cpu`, as taskset's list. */
function otherCpus(cpu: string): string {
  const others = Array.from({ length: availableParallelism() }, (_, i) => String(i)).filter((c) => c !== cpu);
  if (others.length === 0) throw new Error(`CASCADE_BENCH_SCALE_REGION_CPU=${cpu} leaves no core for the brokers and simulators`);
  return others.join(',');
}

/** The region on its own core (CASCADE_BENCH_SCALE_REGION_CPU), every thread of it. */
function pinned(region: RegionChild): RegionChild {
  if (REGION_CPU && region.child.pid !== undefined) execFileSync('taskset', ['-a', '-p', '-c', REGION_CPU, String(region.child.pid)], { stdio: 'ignore' });
  return region;
}

/** The figures of one run (one size, one transport). */
export function scaleFigures(r: ScaleResult): BenchFigure[] {
  const figures: BenchFigure[] = [];
  const n = r.devices;
  if (r.transport === 'mqtt') {
    const via = `${r.sites ? `MQTT via ${r.sites} site brokers` : 'MQTT'}${r.regionCpu ? ', region on a core of its own' : ''}`;
    figures.push(
      figure(`${n} devices (${via}): commit to last desired state at the region broker`, r.lastPublishSeconds, 's', '< 2x bare MQTT.js', r.lastPublishSeconds < 2 * r.baselinePublishSeconds, {
        name: `bare MQTT.js client publishing the same ${n} retained QoS 1 messages (same topics and payloads), same brokers`, value: r.baselinePublishSeconds, unit: 's',
      }),
      figure(`${n} devices (${via}): commit to 100% converged (200 ms installs)`, r.convergedSeconds, 's', 'converged', true),
      figure(`${n} devices (${via}): region CPU for the rollout, per device`, (r.rolloutCpuSeconds / n) * 1e6, 'µs', 'flat in N', true),
      figure(`${n} devices (${via}): idle region CPU, all connected, nothing changing`, r.idleCpuPercent, '% of a core', '< 2%', r.idleCpuPercent < 2),
      ...(r.rolloutRunQueueSeconds !== undefined ? [figure(`${n} devices (${via}): the region's main thread waiting for a core during the rollout (run queue)`, r.rolloutRunQueueSeconds, 's', 'informational', true, { name: 'its CPU in the rollout', value: r.rolloutCpuSeconds, unit: 's' })] : []),
      ...(r.idleGcPercent !== undefined ? [figure(`${n} devices (${via}): idle, of which main-thread garbage collection`, r.idleGcPercent, '% of a core', 'informational', true)] : []),
      ...(r.idleMessages !== undefined ? [figure(`${n} devices (${via}): idle, reports and presence messages that reached the region`, r.idleMessages, 'messages', 'informational', true)] : []),
      figure(`${n} devices (${via}): GET /api/v1/status`, r.statusMs, 'ms', '< 5 ms', r.statusMs < 5),
      figure(`${n} devices (${via}): GET /metrics`, r.metricsMs, 'ms', 'informational', true),
      figure(`${n} devices (${via}): desired-state messages published`, r.published, 'messages', 'equal to updates needed', r.published === r.updates, { name: 'updatesSent', value: r.updates, unit: 'updates' }),
      ...(r.kill
        ? [
            figure(`${n} devices (${via}): SIGKILL mid-rollout (${r.kill.killedAtPublished} desired states out), restarted: devices handed the new version twice`, r.kill.devicesHandedTwice, 'devices', '0', r.kill.devicesHandedTwice === 0),
            figure(`${n} devices (${via}): SIGKILL mid-rollout, restarted: updatesSent for the commit`, r.kill.updates, 'updates', `= ${n}`, r.kill.updates === n),
            figure(`${n} devices (${via}): SIGKILL mid-rollout: restart to converged`, r.kill.restartToConvergedSeconds, 's', 'converged', true),
          ]
        : []),
      figure(`${n} devices (${via}): enrolment, all enrolled and converged`, r.enrolSeconds, 's', 'informational', true),
      figure(`${n} devices (${via}): enrolment, region CPU per device`, (r.enrolCpuSeconds / n) * 1e6, 'µs', 'flat in N', true),
      figure(`${n} devices (${via}): enrolment, brokers' CPU per device`, (r.enrolBrokerCpuSeconds / n) * 1e6, 'µs', 'informational', true),
      ...(r.rolloutBrokerCpuSeconds
        ? [figure(`${n} devices (${via}): rollout, site brokers' CPU per device (each site gets its own devices' desired states)`, (r.rolloutBrokerCpuSeconds.sites / n) * 1e6, 'µs', 'informational', true, { name: "the region broker's", value: (r.rolloutBrokerCpuSeconds.region / n) * 1e6, unit: 'µs' })]
        : []),
      figure(`${n} devices (${via}): GET /api/v1/status during the rollout, /metrics scraped every second (median)`, r.statusRolloutMs, 'ms', '< 5 ms', r.statusRolloutMs < 5),
      figure(`${n} devices (${via}): GET /api/v1/status during the rollout (slowest)`, r.statusRolloutMaxMs, 'ms', 'informational', true),
      figure(`${n} devices (${via}): event-loop delay p99 over the rollout`, r.eventLoopRolloutP99Ms, 'ms', '< 50 ms', r.eventLoopRolloutP99Ms < 50),
      figure(`${n} devices (${via}): event-loop delay, share of samples over 50 ms during the rollout`, r.eventLoopOver50msShare * 100, '%', '< 1%', r.eventLoopOver50msShare < 0.01),
      figure(`${n} devices (${via}): event-loop delay p99 in the worst second of the rollout`, r.eventLoopP99Ms, 'ms', 'informational', true),
      figure(`${n} devices (${via}): event-loop delay max during the rollout`, r.eventLoopMaxMs, 'ms', 'informational', true),
      figure(`${n} devices (${via}): region V8 heap used above its base, per device`, ((r.heapMb - r.baseHeapMb) * 1024) / n, 'KB', 'informational', true),
      figure(`${n} devices (${via}): region RSS above its base, per device`, ((r.rssMb - r.baseRssMb) * 1024) / n, 'KB', '< 1 KB', ((r.rssMb - r.baseRssMb) * 1024) / n < 1, { name: 'region after start', value: r.baseRssMb, unit: 'MB' }),
      ...(r.settledRssMb !== undefined
        ? [figure(`${n} devices (${via}): region RSS above its base, per device, holding the converged fleet ${SETTLE_MS / 1000} s after the rollout`, ((r.settledRssMb - r.baseRssMb) * 1024) / n, 'KB', '< 1 KB', ((r.settledRssMb - r.baseRssMb) * 1024) / n < 1, { name: 'V8 heap used above its base, per device', value: (((r.settledHeapMb ?? 0) - r.baseHeapMb) * 1024) / n, unit: 'KB' })]
        : []),
    );
    return figures;
  }
  figures.push(
    figure(`${r.devices} devices (HTTP long poll): commit to every update handed out`, r.handedOutSeconds, 's', '< 2 s', r.handedOutSeconds < 2),
    figure(`${r.devices} devices (HTTP long poll): commit to 100% converged`, r.convergedSeconds, 's', 'converged, zero failed requests', r.failedRequests === 0, { name: 'failed requests (simulators)', value: r.failedRequests, unit: 'requests' }),
    figure(`${r.devices} devices (HTTP long poll): GET /api/v1/status`, r.statusMs, 'ms', '< 5 ms', r.statusMs < 5),
    figure(`${r.devices} devices (HTTP long poll): idle region CPU`, r.idleCpuPercent, '% of a core', 'informational (< 2% is the MQTT goal; 30 s polls expire 500 a second at 15,000)', true),
  );
  return figures;
}

export const suite: BenchSuite = {
  name: 'scale',
  async run(): Promise<BenchFigure[]> {
    const results: ScaleResult[] = [];
    for (const n of SIZES) results.push(await measureScale(n));
    if (HTTP_DEVICES > 0) results.push(await measureScale(HTTP_DEVICES, { transport: 'http', sites: 0 }));
    writeFileSync(new URL('./results/scale.json', import.meta.url), `${JSON.stringify(results, null, 1)}\n`);
    return results.flatMap(scaleFigures);
  },
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const results: ScaleResult[] = [];
  for (const n of SIZES) results.push(await measureScale(n));
  if (HTTP_DEVICES > 0) results.push(await measureScale(HTTP_DEVICES, { transport: 'http', sites: 0 }));
  process.stdout.write(`${JSON.stringify(results, null, 1)}\n`);
}
