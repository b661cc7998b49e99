import type { Logger } from 'pino';
import type { DeviceDesired, DeviceId } from '../core/types.js';
import { FleetLoader } from '../desired/load.js';
import { SqliteParseCache } from '../desired/parse-cache.js';
import { openFleetSource, type GitAuth } from '../source/fleet-source.js';
import { PassScheduler } from '../reconciler/pass-scheduler.js';
import { Reconciler, withConnected } from '../reconciler/reconciler.js';
import { createRegionMetrics } from '../reconciler/region-metrics.js';
import { countDevices, deviceState, revisionStatus, type RegionStatus } from '../reconciler/region-status.js';
import { DesiredWatchers } from './desired-watchers.js';
import { registerDeviceApi } from './device-api.js';
import { createRegionHttpServer } from './http-server.js';
import { registerDashboard } from '../dashboard/serve.js';
import { startHubPush, type HubPush } from '../hub-client/hub-push.js';
import { buildRegionSummary } from '../hub-client/region-summary.js';
import type { HubSummaryInput } from '../hub/summary.js';
import { SqliteStateStore } from './sqlite-state-store.js';
import { limitEnrollment } from './enrollment-limiter.js';
import { operatorGuard, registerOperatorApi } from './operator-api.js';
import type { TrustedKeys } from '../source/trusted-keys.js';
import { RegionMqtt, type RegionMqttOptions } from '../transport/mqtt/region-mqtt.js';

export interface RegionConfig {
  repo: string;
  branch: string;
  region: string;
  host: string;
  port: number;
  dataDir: string;
  intervalMs: number;
  /** null only with --insecure-open-enrollment. */
  enrollmentToken: string | null;
  gitAuth?: GitAuth;
  /** Serve HTTPS (PEM contents). */
  tls?: { cert: Buffer; key: Buffer };
  /** Bearer token for the operator API and the live inventory; null leaves them open. */
  operatorToken?: string | null;
  /** Commit signature and history checks (--verify-commits, --allow-non-fast-forward). */
  guard?: { trustedKeys?: TrustedKeys; allowNonFastForward?: boolean };
  offlineAfterMs?: number;
  /** Push a summary to the hub (`cascade hub`) on every pass and heartbeat: its URL and this region's token. */
  hub?: { url: string; token: string; intervalMs?: number };
  /** Also serve devices over MQTT through this broker (docs/mqtt.md). */
  mqtt?: RegionMqttOptions;
  /** Devices pull container images through this mirror unless the Region document names one. */
  registryMirror?: string;
  log: Logger;
  clock?: () => number;
}

export interface RunningRegion {
  url: string;
  /** Runs a pass that fetches the source, and waits for it. */
  reconcileNow(): Promise<void>;
  status(): RegionStatus;
  close(): Promise<void>;
}

const DEFAULT_OFFLINE_AFTER_MS = 10 * 60_000;
const TICK_MS = 5_000;

/** Composes one region: state store, git source, loader, reconciler, device and operator APIs. */
export async function startRegion(config: RegionConfig): Promise<RunningRegion> {
  const clock = config.clock ?? Date.now;
  const log = config.log;
  const offlineAfterMs = config.offlineAfterMs ?? DEFAULT_OFFLINE_AFTER_MS;
  const store = SqliteStateStore.open(config.dataDir);
  const source = await openFleetSource({ repo: config.repo, branch: config.branch, dataDir: config.dataDir, auth: config.gitAuth, log });
  const loader = new FleetLoader({ cache: SqliteParseCache.inDir(config.dataDir) });
  const metrics = createRegionMetrics(config.region);
  const watchers = new DesiredWatchers();
  const mqtt = config.mqtt ? RegionMqtt.open(config.mqtt, { region: config.region, store, log }) : null;
  /** A device holding a long poll open, or connected to the MQTT broker, counts as seen now. */
  const isConnected = (device: DeviceId): boolean => watchers.isWaiting(device) || (mqtt?.isConnected(device) ?? false);
  // The hub hears from the region only after its first pass, so it never sees a restart's empty rollouts.
  let firstPassDone = false;
  let hubPush: HubPush | null = null;
  let wakeUp: { at: number; timer: NodeJS.Timeout } | null = null;
  const wakeUpAt = (at: number): void => {
    if (wakeUp && wakeUp.at <= at) return;
    if (wakeUp) clearTimeout(wakeUp.timer);
    // Capped so a far-off window still gets a timely look; the interval passes cover the rest.
    const delay = Math.min(Math.max(at - clock(), 0) + 5, 2 ** 31 - 1);
    wakeUp = { at, timer: setTimeout(() => {
      wakeUp = null;
      scheduler.request({ fetch: false, reason: 'rollout timer' });
    }, delay) };
  };  const reconciler = new Reconciler({
    region: config.region,
    registryMirror: config.registryMirror,
    source,
    store,
    loader,
    clock,
    log,
    metrics,
    onHandOut: (devices) => {
      const changed = [...devices];
      watchers.notify(changed);
      mqtt?.publishDesired(changed);
    },
    wakeUpAt: (at) => wakeUpAt(at),
    onPassComplete: () => {
      firstPassDone = true;
      hubPush?.changed();
    },
    isConnected,
    guard: config.guard,
  });
  const scheduler = new PassScheduler((request) => reconciler.runPass(request));


  const app = createRegionHttpServer({ log, https: config.tls });
  limitEnrollment(app, clock);
  const operatorToken = config.operatorToken ?? null;
  registerOperatorApi(app, {
    store,
    operatorToken,
    clock,
    onRevoke: (id) => {
      watchers.notify([id]);
      mqtt?.revoke(id);
    },
  });
  registerDeviceApi(app, {
    operatorGuard: operatorGuard(operatorToken),
    store,
    region: config.region,
    enrollmentToken: config.enrollmentToken,
    watchers,
    clock,
    onEnroll: () => scheduler.request({ fetch: false, reason: 'device enrolled' }),
    onTokenIssued: mqtt?.onTokenIssued,
    onReport: () => scheduler.request({ fetch: false, reason: 'device reported' }),
  });

  const currentDesired = (): ReadonlyMap<DeviceId, DeviceDesired> => reconciler.resolveAll(store.listDevices());

  const status = (): RegionStatus => {
    const condition = reconciler.sourceCondition;
    return {
      region: config.region,
      revision: revisionStatus(store.getRevision()),
      source: { reachable: condition.reachable, head: condition.head, error: condition.error },
      devices: countDevices(withConnected(store.listDevices(), clock(), isConnected), currentDesired(), store.listHanded(), clock(), offlineAfterMs),
      updatesSent: store.updatesSent(),
      rollouts: reconciler.rolloutStatuses,
    };
  };

  const summary = (): HubSummaryInput => {
    const now = clock();
    const devices = withConnected(store.listDevices(), now, isConnected);
    return buildRegionSummary({ status: status(), devices, desired: currentDesired(), handed: store.listHanded(), now, offlineAfterMs });
  };
  registerDashboard(app, { mode: 'region', summary, clock, devicesGuard: operatorGuard(operatorToken) });

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_request, reply) => {
    const applied = store.getRevision().applied;
    if (!applied) return reply.code(503).send({ ready: false, reason: 'no revision applied yet' });
    return { ready: true, revision: applied };
  });
  app.get('/metrics', async (_request, reply) => {
    const desired = currentDesired();
    const now = clock();
    const handed = store.listHanded();
    const byState: Record<string, number> = { converged: 0, updating: 0, pending: 0, failed: 0, offline: 0 };
    for (const device of withConnected(store.listDevices(), now, isConnected)) {
      if (!device.revoked) byState[deviceState(device, desired.get(device.id), now, offlineAfterMs, handed.get(device.id)?.apps)]!++;
    }
    for (const state in byState) metrics.devices.set({ state }, byState[state]!);
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  app.get('/api/v1/status', async () => status());
  app.get('/api/v1/rollouts', async () => reconciler.rolloutStatuses);
  app.post('/api/v1/reconcile', async (request, reply) => {
    scheduler.request({ fetch: true, reason: 'POST /api/v1/reconcile' });
    const wait = (request.query as Record<string, string | undefined>)['wait'];
    if (wait === 'true' || wait === '1') await scheduler.idle();
    return reply.code(202).send({ accepted: true, revision: revisionStatus(store.getRevision()) });
  });

  // Connects, reads back the retained desired states and publishes what is out of date; fails startup on bad flags.
  await mqtt?.start({ clock, registry: metrics.registry, onReport: () => scheduler.request({ fetch: false, reason: 'device reported' }) });
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `${config.tls ? 'https' : 'http'}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  log.info({ url, region: config.region, repo: config.repo, branch: config.branch }, `region ${config.region} listening on ${url}`);

  if (config.hub) {
    hubPush = startHubPush({
      hubUrl: config.hub.url,
      token: config.hub.token,
      region: config.region,
      summary: () => (firstPassDone ? summary() : null),
      log,
      intervalMs: config.hub.intervalMs,
    });
  }
  scheduler.request({ fetch: true, reason: 'startup' });
  const interval = setInterval(() => scheduler.request({ fetch: true, reason: 'interval' }), config.intervalMs);
  // Time alone changes rollouts (devices fall silent and go offline): re-plan without fetching.
  const tick = setInterval(() => scheduler.request({ fetch: false, reason: 'tick' }), Math.min(TICK_MS, config.intervalMs));
  const unwatch = source.watch(() => scheduler.request({ fetch: true, reason: 'source changed' }));

  return {
    url,
    async reconcileNow() {
      scheduler.request({ fetch: true, reason: 'reconcileNow' });
      await scheduler.idle();
    },
    status,
    async close() {
      await hubPush?.close();
      clearInterval(interval);
      clearInterval(tick);
      if (wakeUp) clearTimeout(wakeUp.timer);
      unwatch();
      watchers.closeAll();
      await scheduler.close();
      await app.close();
      await mqtt?.close();
      await source.close();
      store.close();
    },
  };
}
