import { compareStrings } from '../core/text.js';
import http from 'node:http';
import https from 'node:https';
import { pino, type Logger } from 'pino';
import { MemoryAgentState, type InstalledApp } from '../agent/agent-state.js';
import { runDeviceLoop, type DeviceEvent } from '../agent/device-loop.js';
import { SimulatedRuntime, type SimulatedContainerTimings, type SimulatedPhase } from '../agent/runtime-simulated.js';
import type { ArtifactUrlPolicy } from '../core/artifact-url.js';
import type { Labels } from '../core/types.js';
import { deviceAgentOptions, RegionClient } from '../agent/http/region-client.js';
import { brokerClientOptions, readCaFile } from '../protocol/mqtt-connection.js';
import { MqttDeviceChannel } from '../agent/mqtt/device-channel.js';
import { seededRandom, unitHash } from './seeded.js';
import { lazyDeviceKey } from '../agent/device-key.js';

export interface SimulationOptions {
  regionUrl: string;
  /** How many devices to simulate. */
  devices: number;
  enrollmentToken: string | null;
  /** Labels of every device. */
  labels?: Labels;
  /** Extra labels per device (index from 1), merged over `labels`; for in-process callers such as the demo. */
  labelsFor?: (index: number, deviceId: string) => Labels;
  /** Device ids are `<prefix>-0001`, `<prefix>-0002`, ... */
  prefix?: string;
  /** Typical install time; each install takes 0.5x to 1.5x of it. */
  applyMs?: number;
  /**
   * Container apps go through pull, start and health check with these typical times (the pull is
   * skipped when the image is still on the device); otherwise they take applyMs like any app.
   */
  container?: SimulatedContainerTimings;
  /** Fraction of updates that fail their health check (decided per device and version, from the seed). */
  failRate?: number;
  /** Every update to this version fails. */
  failVersion?: string | null;
  /** Fraction of devices that enrol, report once and then go silent. */
  offlineRate?: number;
  /** Apps installed on every device before it starts: app -> version. */
  initial?: Record<string, string>;
  seed?: string | number;
  /** Long-poll wait of each device. */
  waitSeconds?: number;
  /** Devices enrolling at the same time. */
  enrollConcurrency?: number;
  /** Logger of the simulation; each device logs only errors through it. */
  log?: Logger;
  /** Writes a stats line this often (0: never). */
  statsIntervalMs?: number;
  /** Where stats lines go; standard error by default. */
  out?: (line: string) => void;
  /** Called once per device whose loop stopped on an error no retry can fix (e.g. a wrong enrollment token). */
  onFatal?: (deviceId: string, err: Error) => void;
  /**
   * Report and take desired state over MQTT through this broker (after enrolling over HTTP),
   * each device with its own connection, username = device id, password = device token.
   */
  mqtt?: { url: string; caFile?: string };
  /** Artifact origins the simulated agents accept beyond the default (--allow-artifact-origin). */
  artifactPolicy?: ArtifactUrlPolicy;
  /**
   * Each device enrols with its own Ed25519 key, as a real agent does (made when it first enrols,
   * kept in memory); true by default. False enrols without keys, as agents before keys did.
   */
  deviceKeys?: boolean;
}

export interface SimulationStats {
  devices: number;
  /** Devices that enrolled at least once. */
  enrolled: number;
  /** Devices that went silent on purpose (--offline-rate). */
  offline: number;
  /** Installs in progress now. */
  applying: number;
  /** Updates that succeeded, in total. */
  applied: number;
  /** Updates that failed (and were rolled back), in total. */
  failed: number;
  /** Devices whose state of some app is failed now. */
  failing: number;
  connectionErrors: number;
  /** Requests the region answered with 429 or 503 and a Retry-After: retried as asked, not failures. */
  throttled: number;
  /** The connection errors by kind (device-loop.ts errorKind), e.g. `region-unreachable ECONNRESET`. */
  errorKinds: Record<string, number>;
  /** Devices stopped by an unrecoverable error. */
  fatal: number;
  /** Installed versions: app -> version -> number of devices. */
  versions: Record<string, Record<string, number>>;
  /** Container apps (with `container` timings): steps in progress now, and image pulls so far. */
  containers?: { pulling: number; starting: number; checking: number; pulled: number; cached: number };
}

export interface Simulation {
  readonly deviceIds: readonly string[];
  stats(): SimulationStats;
  /** The stats as one line, as printed every interval. */
  statsLine(): string;
  /** Stops every device and closes their connections. */
  stop(): Promise<void>;
}

interface SimulatedDevice {
  id: string;
  state: MemoryAgentState;
  enrolled: boolean;
  offline: boolean;
  applying: number;
  fatal: boolean;
  done: Promise<void>;
  /** Container step of each app in progress. */
  phases: Map<string, Exclude<SimulatedPhase, null>>;
}

/** A counting semaphore: at most `limit` holders at once. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.free = limit;
  }

  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

export function deviceIdOf(prefix: string, index: number): string {
  return `${prefix}-${String(index).padStart(4, '0')}`;
}

/**
 * Runs `devices` simulated agents in this process. Each speaks the real protocol over real HTTP
 * (enrol, report, long-poll its own desired state) and applies with the simulated runtime.
 * Returns once every device is started; they enrol a few at a time.
 */
export async function startSimulation(opts: SimulationOptions): Promise<Simulation> {
  const prefix = opts.prefix ?? 'sim';
  const seed = String(opts.seed ?? 1);
  const applyMs = opts.applyMs ?? 1000;
  const failRate = opts.failRate ?? 0;
  const offlineRate = opts.offlineRate ?? 0;
  const log = opts.log ?? pino({ level: 'info' }, pino.destination(2));
  const deviceLog = log.child({}, { level: 'error' });
  const out = opts.out ?? ((line: string) => process.stderr.write(`${line}\n`));
  const isHttps = opts.regionUrl.startsWith('https:');
  // One pool of keep-alive sockets for the whole simulation, closed on stop: a socket per device, kept between requests.
  const agent = isHttps ? new https.Agent(deviceAgentOptions(opts.devices)) : new http.Agent(deviceAgentOptions(opts.devices));
  const enrolling = new Slots(opts.enrollConcurrency ?? 25);
  const mqttCa = opts.mqtt?.caFile ? readCaFile(opts.mqtt.caFile) : undefined;
  // Checks the URL (and CA file) once, before any device starts.
  if (opts.mqtt) brokerClientOptions(opts.mqtt, mqttCa);
  const stop = new AbortController();
  const devices: SimulatedDevice[] = [];
  let applied = 0;
  let failed = 0;
  let connectionErrors = 0;
  const errorKinds: Record<string, number> = {};
  let throttled = 0;
  let pulled = 0;
  let cached = 0;

  const initialInstalled: Record<string, InstalledApp> = {};
  for (const [app, version] of Object.entries(opts.initial ?? {})) initialInstalled[app] = { version };

  for (let index = 1; index <= opts.devices; index++) {
    const id = deviceIdOf(prefix, index);
    const labels = { ...opts.labels, ...opts.labelsFor?.(index, id) };
    const device: SimulatedDevice = {
      id,
      state: new MemoryAgentState({ installed: structuredClone(initialInstalled) }),
      enrolled: false,
      offline: unitHash(seed, id, 'offline') < offlineRate,
      applying: 0,
      fatal: false,
      done: Promise.resolve(),
      phases: new Map(),
    };
    const runtime = new SimulatedRuntime({
      applyMs,
      container: opts.container,
      onPhase: (app, phase) => {
        if (phase) device.phases.set(app, phase);
        else device.phases.delete(app);
      },
      onPull: (_app, downloaded) => {
        if (downloaded) pulled++;
        else cached++;
      },
      random: seededRandom(Math.floor(unitHash(seed, id, 'jitter') * 2 ** 32)),
      failure: (app, version) => {
        if (opts.failVersion && version === opts.failVersion) return `version ${version} is set to fail (--fail-version)`;
        if (failRate > 0 && unitHash(seed, id, app, version) < failRate) return `simulated failure of ${app} ${version} (--fail-rate ${failRate})`;
        return null;
      },
      artifactPolicy: opts.artifactPolicy,
    });
    // Offline devices stop after their first report; the others run until the simulation stops.
    const own = new AbortController();
    const signal = AbortSignal.any([stop.signal, own.signal]);
    let holdsSlot = true;
    const releaseSlot = () => {
      if (holdsSlot) {
        holdsSlot = false;
        enrolling.release();
      }
    };
    const onEvent = (event: DeviceEvent) => {
      switch (event.type) {
        case 'enrolled':
          device.enrolled = true;
          break;
        case 'reported':
          releaseSlot();
          if (device.offline) own.abort();
          break;
        case 'apply-started':
          device.applying++;
          break;
        case 'applied':
          device.applying--;
          applied++;
          break;
        case 'apply-failed':
          device.applying--;
          failed++;
          break;
        case 'throttled':
          throttled++;
          break;
        case 'connection-error':
          connectionErrors++;
          errorKinds[event.kind] = (errorKinds[event.kind] ?? 0) + 1;
          break;
        default:
          break;
      }
    };
    device.done = (async () => {
      await enrolling.acquire();
      if (signal.aborted) {
        releaseSlot();
        return;
      }
      const client = new RegionClient({ regionUrl: opts.regionUrl, deviceId: id, agent });
      // Derived from the seed and id: a simulation restarted with the same seed is the same devices.
      const deviceKey = lazyDeviceKey(`${seed}\n${id}`);
      const channel = opts.mqtt ? new MqttDeviceChannel({ url: opts.mqtt.url, ca: mqttCa, client, log: deviceLog }) : undefined;
      try {
        await runDeviceLoop(
          {
            client,
            channel,
            labels,
            enrollmentToken: opts.enrollmentToken,
            runtime,
            state: device.state,
            log: deviceLog,
            waitSeconds: opts.waitSeconds ?? 30,
            random: seededRandom(Math.floor(unitHash(seed, id, 'backoff') * 2 ** 32)),
            onEvent,
            key: opts.deviceKeys === false ? undefined : deviceKey,
          },
          signal,
        );
      } catch (err) {
        device.fatal = true;
        if (opts.onFatal) opts.onFatal(id, err as Error);
        else deviceLog.error({ deviceId: id, err: (err as Error).message }, 'simulated device stopped');
      } finally {
        device.applying = 0;
        releaseSlot();
        // A device that went silent (or stopped) hangs up, as a real one would.
        await channel?.close();
      }
    })();
    devices.push(device);
  }

  const stats = (): SimulationStats => {
    const versions: Record<string, Record<string, number>> = {};
    let failing = 0;
    for (const device of devices) {
      const state = device.state.peek();
      for (const [app, installed] of Object.entries(state.installed)) {
        const counts = (versions[app] ??= {});
        counts[installed.version] = (counts[installed.version] ?? 0) + 1;
      }
      if (Object.keys(state.failed).length > 0) failing++;
    }
    let containers: SimulationStats['containers'];
    if (opts.container) {
      containers = { pulling: 0, starting: 0, checking: 0, pulled, cached };
      for (const device of devices) for (const phase of device.phases.values()) containers[phase]++;
    }
    return {
      ...(containers ? { containers } : {}),
      devices: devices.length,
      enrolled: devices.filter((d) => d.enrolled).length,
      offline: devices.filter((d) => d.offline).length,
      applying: devices.reduce((sum, d) => sum + d.applying, 0),
      applied,
      failed,
      failing,
      connectionErrors,
      throttled,
      errorKinds: { ...errorKinds },
      fatal: devices.filter((d) => d.fatal).length,
      versions,
    };
  };

  const statsLine = (): string => {
    const s = stats();
    const versions = Object.entries(s.versions)
      .sort(([a], [b]) => compareStrings(a, b))
      .map(([app, counts]) => `${app} ${Object.entries(counts).sort(([a], [b]) => compareStrings(a, b)).map(([v, n]) => `${v}=${n}`).join(' ')}`)
      .join('; ');
    return (
      `simulate: ${s.devices} devices, ${s.enrolled} enrolled, ${s.offline} offline, ${s.applying} applying, ` +
      `${s.applied} updated, ${s.failed} failed updates, ${s.failing} failing now, ${s.connectionErrors} connection errors` +
      (s.throttled ? `, ${s.throttled} throttled (retried after Retry-After)` : '') +
      (s.fatal ? `, ${s.fatal} stopped` : '') +
      (s.containers && s.containers.pulled + s.containers.cached + s.containers.pulling + s.containers.starting + s.containers.checking > 0
        ? ` | containers: ${s.containers.pulling} pulling, ${s.containers.starting} starting, ${s.containers.checking} health-checking; ${s.containers.pulled} pulls, ${s.containers.cached} from the device's own images`
        : '') +
      (versions ? ` | ${versions}` : '')
    );
  };

  const intervalMs = opts.statsIntervalMs ?? 10_000;
  const timer = intervalMs > 0 ? setInterval(() => out(statsLine()), intervalMs) : null;
  timer?.unref();

  let stopped: Promise<void> | null = null;
  return {
    deviceIds: devices.map((d) => d.id),
    stats,
    statsLine,
    stop: () => {
      stopped ??= (async () => {
        if (timer) clearInterval(timer);
        stop.abort();
        await Promise.all(devices.map((d) => d.done));
        agent.destroy();
      })();
      return stopped;
    },
  };
}
