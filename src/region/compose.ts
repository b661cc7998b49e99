import type { FastifyInstance, preHandlerHookHandler } from 'fastify';
import type { Logger } from 'pino';
import type { ArtifactUrlPolicy } from '../core/artifact-url.js';
import type { DeviceDesired, DeviceId } from '../core/types.js';
import { FleetLoader } from '../desired/load.js';
import { SqliteParseCache } from '../desired/parse-cache.js';
import type { GitAuth } from '../source/fleet-source.js';
import { openFleetSource } from '../source/open-fleet-source.js';
import { PassScheduler } from '../reconciler/pass-scheduler.js';
import { Reconciler, withConnected } from '../reconciler/reconciler.js';
import { createRegionMetrics } from '../reconciler/region-metrics.js';
import { countDevices, deviceState, revisionStatus, type RegionStatus } from '../reconciler/region-status.js';
import { DesiredWatchers } from './routes/desired-watchers.js';
import { registerRegionRoutes } from './routes/region-routes.js';
import { startRegionLoops, type RegionLoops } from './loops.js';
import { startMaintenance } from './maintenance.js';
import { registerDeviceApi } from './routes/device-routes.js';
import { createRegionHttpServer } from '../http/http-server.js';
import { startHubPush, type HubPush } from './hub/hub-push.js';
import { buildRegionSummary } from './hub/hub-report.js';
import type { HubSummaryInput } from '../protocol/hub-summary.js';
import { SqliteStateStore } from '../storage/region-state-store.js';
import { limitEnrollment } from './routes/enrollment-limiter.js';
import { operatorGuard, registerOperatorApi } from './routes/operator-routes.js';
import type { TrustedKeys } from '../source/trusted-keys.js';
import { RegionMqtt, type RegionMqttOptions } from './mqtt/region-mqtt.js';
import { registerRolloutRoutes } from './routes/rollout-routes.js';
import { haltRevertsFor, type HaltRevertConfig } from './halt-reverts.js';

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
  /** Artifact URLs accepted beyond the default (https:, public hosts): --allow-artifact-origin, --allow-http-artifacts. */
  artifactPolicy?: ArtifactUrlPolicy;
  offlineAfterMs?: number;
  /** Push a summary to the hub (`cascade hub`) on every pass and heartbeat: its URL and this region's token. */
  hub?: { url: string; token: string; intervalMs?: number };
  /** Also serve devices over MQTT through this broker (docs/mqtt.md). */
  mqtt?: RegionMqttOptions;
  log: Logger;
  clock?: () => number;
  /** Housekeeping on a cron schedule (region/maintenance.ts); none when absent. */
  maintenance?: { schedule: string; timezone?: string; backupDir: string | null; backupsKept?: number; reportRetentionMs?: number };
  /** Routes served beside the region's APIs, such as its web dashboard (dashboard/serve.ts: regionDashboard). */
  plugins?: readonly RegionPlugin[];
  /** onHalt revert | revert-branch: the write credential and signing key (--git-push-token, --signing-key). */
  haltRevert?: HaltRevertConfig;
}

/** What a plugin of the region (its dashboard) may read. */
export interface RegionPluginContext {
  /** This region as the hub would see it. */
  summary(): HubSummaryInput;
  clock: () => number;
  /** Guards what only operators may read (device ids and versions). */
  operatorGuard: preHandlerHookHandler | undefined;
}

export type RegionPlugin = (app: FastifyInstance, region: RegionPluginContext) => void;

export interface RunningRegion {
  url: string;
  /** Runs a pass that fetches the source, and waits for it. */
  reconcileNow(): Promise<void>;
  status(): RegionStatus;
  close(): Promise<void>;
}


/**
 * Composes one region: state store, git source, loader, reconciler, device and operator APIs, the MQTT
 * side, the push to the hub and the timers. Whatever was started is torn down again, in reverse order,
 * when a later step fails (a port in use, a broker that refuses), so a failed start leaks nothing.
 */
export async function startRegion(config: RegionConfig): Promise<RunningRegion> {
  const clock = config.clock ?? Date.now;
  const log = config.log;
  const teardown: Array<() => unknown> = [];
  const tearDown = async (): Promise<void> => {
    for (const step of teardown.reverse()) {
      try {
        await step();
      } catch (err) {
        log.warn({ err }, 'region shutdown step failed');
      }
    }
    teardown.length = 0;
  };
  try {
    const store = SqliteStateStore.open(config.dataDir);
    teardown.push(() => store.close());
    const source = await openFleetSource({ repo: config.repo, branch: config.branch, dataDir: config.dataDir, auth: config.gitAuth, log });
    teardown.push(() => source.close());
    const loader = new FleetLoader({ cache: SqliteParseCache.inDir(config.dataDir), artifactPolicy: config.artifactPolicy });
    const metrics = createRegionMetrics(config.region);
    const watchers = new DesiredWatchers();
    teardown.push(() => watchers.closeAll());
    const mqtt = config.mqtt ? RegionMqtt.open(config.mqtt, { region: config.region, store, log }) : null;
    if (mqtt) teardown.push(() => mqtt.close());
    /** A device holding a long poll open, or connected to the MQTT broker, counts as seen now. */
    const isConnected = (device: DeviceId): boolean => watchers.isWaiting(device) || (mqtt?.isConnected(device) ?? false);
    // The hub hears from the region only after its first pass, so it never sees a restart's empty rollouts.
    let firstPassDone = false;
    let hubPush: HubPush | null = null;
    let loops: RegionLoops | null = null;
    // A revert pushed to the followed branch is fetched and applied by the next pass.
    const haltReverts = haltRevertsFor(config, source.location.gitdir, store, metrics.registry, clock, () => scheduler.request({ fetch: true, reason: 'halt revert pushed' }));
    const reconciler = new Reconciler({
      region: config.region,
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
      wakeUpAt: (at) => loops?.wakeUpAt(at),
      retryIn: (ms) => loops?.retryIn(ms),
      maxBackoffMs: config.intervalMs,
      onPassComplete: () => {
        firstPassDone = true;
        hubPush?.changed();
      },
      isConnected,
      guard: config.guard,
      offlineAfterMs: config.offlineAfterMs,
      afterDispatch: (fleet, statuses, served) => haltReverts.afterPass(fleet, statuses, served),
    });
    // One offline clock (--offline-after, or the fleet's Region/Fleet rollout.offlineAfter) for the engine and every view.
    const offlineAfterMs = (): number => reconciler.offlineAfterMs;
    const scheduler = new PassScheduler((request) => reconciler.runPass(request));
    teardown.push(() => scheduler.close());

    const currentDesired = (): ReadonlyMap<DeviceId, DeviceDesired> => reconciler.resolveAll(store.listDevices());
    const status = (): RegionStatus => {
      const condition = reconciler.sourceCondition;
      return {
        region: config.region,
        revision: revisionStatus(store.getRevision()),
        source: { reachable: condition.reachable, head: condition.head, error: condition.error },
        devices: countDevices(withConnected(store.listDevices(), clock(), isConnected), currentDesired(), store.listHanded(), clock(), offlineAfterMs()),
        updatesSent: store.updatesSent(),
        rollouts: reconciler.rolloutStatuses,
        conditions: reconciler.regionConditions,
      };
    };
    const summary = (): HubSummaryInput => {
      const now = clock();
      const devices = withConnected(store.listDevices(), now, isConnected);
      return buildRegionSummary({ status: status(), devices, desired: currentDesired(), handed: store.listHanded(), now, offlineAfterMs: offlineAfterMs() });
    };

    const app = createRegionHttpServer({ log, https: config.tls });
    teardown.push(() => app.close());
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
    registerRegionRoutes(app, {
      status,
      rollouts: () => reconciler.rolloutStatuses,
      // Ready to serve once a revision is applied and loaded; a refused head or an unreachable git still serves the last good one.
      notReady: () => (!store.getRevision().applied ? { reason: 'no revision applied yet' } : reconciler.serving ? null : { reason: 'the last good revision is not loaded (yet)' }),
      accept: async (revision) => {
        reconciler.accept(revision);
        scheduler.request({ fetch: true, reason: `operator accepted ${revision.slice(0, 8)}` });
        await scheduler.idle();
      },
      operatorGuard: operatorGuard(operatorToken),
      appliedRevision: () => store.getRevision().applied,
      registry: metrics.registry,
      refreshMetrics: () => {
        const desired = currentDesired();
        const now = clock();
        const handed = store.listHanded();
        const byState: Record<string, number> = { converged: 0, updating: 0, pending: 0, failed: 0, offline: 0 };
        for (const device of withConnected(store.listDevices(), now, isConnected)) {
          if (!device.revoked) byState[deviceState(device, desired.get(device.id), now, offlineAfterMs(), handed.get(device.id)?.apps)]!++;
        }
        for (const state in byState) metrics.devices.set({ state }, byState[state]!);
      },
      reconcile: async (reason, wait) => {
        scheduler.request({ fetch: true, reason });
        if (wait) await scheduler.idle();
      },
    });
    registerRolloutRoutes(app, {
      rollouts: () => reconciler.rolloutStatuses,
      retry: async (deployment) => {
        store.requestRetry(deployment, clock());
        scheduler.request({ fetch: false, reason: `operator retry of ${deployment}` });
        await scheduler.idle();
      },
      operatorGuard: operatorGuard(operatorToken),
    });
    for (const plugin of config.plugins ?? []) plugin(app, { summary, clock, operatorGuard: operatorGuard(operatorToken) });

    // Connects, reads back the retained desired states and publishes what is out of date; fails startup on bad flags.
    await mqtt?.start({ clock, registry: metrics.registry, onReport: () => scheduler.request({ fetch: false, reason: 'device reported' }) });
    await app.listen({ host: config.host, port: config.port });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `${config.tls ? 'https' : 'http'}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
    log.info({ url, region: config.region, repo: config.repo, branch: config.branch }, `region ${config.region} listening on ${url}`);

    if (config.hub) {
      const push = startHubPush({
        hubUrl: config.hub.url,
        token: config.hub.token,
        region: config.region,
        summary: () => (firstPassDone ? summary() : null),
        log,
        intervalMs: config.hub.intervalMs,
      });
      hubPush = push;
      teardown.push(() => push.close());
    }
    if (config.maintenance) {
      const maintenance = startMaintenance({ ...config.maintenance, store, source, registry: metrics.registry, log, clock });
      teardown.push(() => maintenance.stop());
    }
    const running = startRegionLoops({ scheduler, source, intervalMs: config.intervalMs, clock });
    loops = running;
    teardown.push(() => running.stop());

    return {
      url,
      async reconcileNow() {
        scheduler.request({ fetch: true, reason: 'reconcileNow' });
        await scheduler.idle();
      },
      status,
      close: tearDown,
    };
  } catch (err) {
    await tearDown();
    throw err;
  }
}
