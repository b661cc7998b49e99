import type { FastifyInstance, preHandlerHookHandler } from 'fastify';
import type { Logger } from 'pino';
import { Counter } from 'prom-client';
import type { ArtifactUrlPolicy } from '../core/artifact-url.js';
import type { DeviceId } from '../core/types.js';
import { FleetLoader } from '../desired/load.js';
import { SqliteParseCache } from '../desired/parse-cache.js';
import type { GitAuth } from '../source/fleet-source.js';
import { openFleetSource } from '../source/open-fleet-source.js';
import { PassScheduler } from '../reconciler/pass-scheduler.js';
import { Reconciler } from '../reconciler/reconciler.js';
import { createRegionMetrics } from '../reconciler/region-metrics.js';
import { revisionStatus, type RegionStatus } from '../reconciler/region-status.js';
import { FleetIndex } from '../reconciler/fleet-index.js';
import { DEFAULT_OFFLINE_AFTER_MS } from '../plan/rollout/defaults.js';
import { watchEventLoopDelay } from '../reconciler/event-loop-delay.js';
import { DesiredWatchers } from './routes/desired-watchers.js';
import { registerRegionRoutes } from './routes/region-routes.js';
import { startRegionLoops, type RegionLoops } from './loops.js';
import { startMaintenance } from './maintenance.js';
import { registerDeviceApi } from './routes/device-routes.js';
import { createRegionHttpServer, LISTEN_BACKLOG } from '../http/http-server.js';
import { startHubPush, type HubPush } from './hub/hub-push.js';
import { buildRegionSummary } from './hub/hub-report.js';
import type { HubSummaryInput } from '../protocol/hub-summary.js';
import { SqliteStateStore } from '../storage/region-state-store.js';
import { DEFAULT_ENROLLMENT_LIMITS, limitEnrollment } from './routes/enrollment-limiter.js';
import { operatorGuard, registerOperatorApi } from './routes/operator-routes.js';
import type { TrustedKeys } from '../source/trusted-keys.js';
import { RegionMqtt, type RegionMqttOptions } from './mqtt/region-mqtt.js';
import { RegionEvents } from './events.js';
import { registerEventRoutes } from './routes/events-routes.js';
import { registerRolloutRoutes } from './routes/rollout-routes.js';
import { haltRevertsFor, type HaltRevertConfig } from './halt-reverts.js';

/** How often the in-memory index is checked against a full recount by default. */
export const DEFAULT_RESYNC_INTERVAL_MS = 10 * 60_000;
import { createSecurityMetrics } from './security-metrics.js';
import { DeviceIdentity, keyFingerprint } from './device-identity.js';
import { ReportOrder } from './report-order.js';
import { fleetGrew, startMemorySettler } from './heap-tuning.js';
import type { EnrollmentPolicy } from './enrollment-policy.js';
import { pendingDeviceViews, registerIdentityAdminRoutes, type PendingDeviceView } from './routes/identity-admin-routes.js';
import { StateHealth } from '../storage/state-health.js';
import { registerArtifactRoutes } from './artifacts/artifact-routes.js';
import { startArtifactRelay, type ArtifactRelayConfig } from './artifacts/start-relay.js';

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
  /** How often the in-memory index is checked against a full recount from the store (default 10m; 0: never). */
  resyncIntervalMs?: number;
  /** Push a summary to the hub (`cascade hub`) on every pass and heartbeat: its URL and this region's token. */
  hub?: { url: string; token: string; intervalMs?: number };
  /** Also serve devices over MQTT through this broker (docs/mqtt.md). */
  mqtt?: RegionMqttOptions;
  /** Devices pull container images through this mirror unless the Region document names one. */
  registryMirror?: string;
  /**
   * Give memory back once the region falls quiet (heap-tuning.ts MemorySettler): `cascade region` sets it;
   * off by default, since it collects garbage in the whole process (tests run regions in theirs).
   */
  settleMemory?: boolean;
  log: Logger;
  clock?: () => number;
  /** Housekeeping on a cron schedule (region/maintenance.ts); none when absent. */
  maintenance?: { schedule: string; timezone?: string; backupDir: string | null; backupsKept?: number; reportRetentionMs?: number };
  /** Relay file artifacts to devices (region/artifacts); off when absent. */
  artifactRelay?: ArtifactRelayConfig;
  /** Routes served beside the region's APIs, such as its web dashboard (dashboard/serve.ts: regionDashboard). */
  plugins?: readonly RegionPlugin[];
  /** New devices enrol at once (`auto`, the default) or wait for `cascade devices approve` (`approve`). */
  enrollmentPolicy?: EnrollmentPolicy;
  /** `--git-timeout`: the longest one request to the git host may take (60 s by default). */
  gitTimeoutMs?: number;
  /** The mass-removal guard: `--max-removal` as a fraction (0.1 by default). */
  maxRemoval?: number;
  /** Start empty although --data held a state before (its database is missing or empty): `--init-state`. */
  initState?: boolean;
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
  /** Devices waiting for `cascade devices approve` (--enrollment-policy approve). */
  pendingDevices?: () => PendingDeviceView[];
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
    const durable = SqliteStateStore.open(config.dataDir, { initState: config.initState });
    teardown.push(() => durable.close());
    // The working state in memory, over SQLite: routes, transports and passes read it, never SQLite.
    // One offline clock (--offline-after, or the fleet's Region/Fleet rollout.offlineAfter) for the engine and every view.
    let reconcilerRef: Reconciler | null = null;
    const offlineAfterMs = (): number => reconcilerRef?.offlineAfterMs ?? config.offlineAfterMs ?? DEFAULT_OFFLINE_AFTER_MS;
    const store = new FleetIndex({ durable, clock, offlineAfterMs, log });
    teardown.push(() => store.close());
    const source = await openFleetSource({ repo: config.repo, branch: config.branch, dataDir: config.dataDir, auth: config.gitAuth, log, deadlineMs: config.gitTimeoutMs });
    teardown.push(() => source.close());
    const loader = new FleetLoader({ cache: SqliteParseCache.inDir(config.dataDir), artifactPolicy: config.artifactPolicy });
    const metrics = createRegionMetrics(config.region);
    const loopDelay = watchEventLoopDelay(metrics.registry);
    teardown.push(() => loopDelay.stop());
    if (config.settleMemory) {
      const settling = startMemorySettler();
      if (settling) {
        teardown.push(() => settling.stop());
        new Counter({
          name: 'cascade_memory_settle_collections_total',
          help: 'Garbage collections the region ran once quiet, to give memory back after a rollout (kind: minor, major)',
          labelNames: ['kind'],
          registers: [metrics.registry],
          collect() {
            this.reset();
            this.inc({ kind: 'minor' }, settling.settler.collections.minor);
            this.inc({ kind: 'major' }, settling.settler.collections.major);
          },
        });
      } else log.warn('memory settling is off: V8 refused --expose-gc');
    }
    const security = createSecurityMetrics(metrics.registry);
    const identity = new DeviceIdentity({ store, region: config.region, policy: config.enrollmentPolicy ?? 'auto', metrics: security, clock });
    const reportOrder = new ReportOrder(store, security, log);
    const health = new StateHealth(log, security.stateDatabaseErrors, config.dataDir);
    let requestPass: ((reason: string) => void) | null = null;
    const relay = config.artifactRelay
      ? await startArtifactRelay(config.artifactRelay, { dataDir: config.dataDir, store, log, registry: metrics.registry, policy: config.artifactPolicy, onChange: () => requestPass?.('artifact relay') })
      : null;
    if (relay) teardown.push(() => relay.close());
    const watchers = new DesiredWatchers();
    teardown.push(() => watchers.closeAll());
    const mqtt = config.mqtt ? RegionMqtt.open(config.mqtt, { region: config.region, store, log, reportOrder }) : null;
    if (mqtt) teardown.push(() => mqtt.close());
    /** A device holding a long poll open, or connected to the MQTT broker, counts as seen now. */
    const isConnected = (device: DeviceId): boolean => watchers.isWaiting(device) || (mqtt?.isConnected(device) ?? false);
    store.setConnectedCheck(isConnected);
    fleetGrew(store.deviceCounts().total);
    // The hub hears from the region only after its first pass, so it never sees a restart's empty rollouts.
    let firstPassDone = false;
    let hubPush: HubPush | null = null;
    let loops: RegionLoops | null = null;
    const events = new RegionEvents({ region: config.region, gitdir: source.location.gitdir, store, clock, log, onCommitInfo: () => hubPush?.changed() });
    teardown.push(() => events.close());
    // A revert pushed to the followed branch is fetched and applied by the next pass.
    const haltReverts = haltRevertsFor(config, source.location.gitdir, store, metrics.registry, clock, () => scheduler.request({ fetch: true, reason: 'halt revert pushed' }));
    const reconciler = new Reconciler({
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
      wakeUpAt: (at) => loops?.wakeUpAt(at),
      retryIn: (ms) => loops?.retryIn(ms),
      maxBackoffMs: config.intervalMs,
      onPassComplete: () => {
        firstPassDone = true;
        relay?.pin(reconciler.rolloutStatuses);
        hubPush?.changed();
      },
      isConnected,
      guard: config.guard,
      offlineAfterMs: config.offlineAfterMs,
      onEvent: events.onReconcilerEvent,
      onPassError: (err) => health.observe(err),
      removalGuard: config.maxRemoval === undefined ? undefined : { maxRemoval: config.maxRemoval },
      artifactGate: relay
        ? Object.assign((rollout: { app: string; version: string; from: readonly string[] }) => relay.readiness(rollout.app, rollout.version, rollout.from), {
            relays: (app: string, version: string) => relay.relays(app, version),
          })
        : undefined,
      afterDispatch: (fleet, statuses, served) => haltReverts.afterPass(fleet, statuses, served),
    });
    reconcilerRef = reconciler;
    const scheduler = new PassScheduler((request) => reconciler.runPass(request));
    teardown.push(() => scheduler.close());
    /** A report over HTTP or MQTT, once stored: announce a failed version, then re-plan. */
    const deviceReported = (id: DeviceId): void => {
      events.deviceReported(id);
      scheduler.request({ fetch: false, reason: 'device reported' });
    };
    requestPass = (reason) => scheduler.request({ fetch: false, reason });

    // Status, summary and /metrics read maintained counters: O(1) in the number of devices.
    const status = (): RegionStatus => {
      const condition = reconciler.sourceCondition;
      return {
        region: config.region,
        revision: events.describeRevision(revisionStatus(store.getRevision())),
        source: { reachable: condition.reachable, head: condition.head, error: condition.error },
        devices: store.deviceCounts(),
        updatesSent: store.updatesSent(),
        rollouts: relay ? relay.annotate(reconciler.rolloutStatuses) : reconciler.rolloutStatuses,
        conditions: reconciler.regionConditions,
        ...(relay ? { artifacts: relay.status() } : {}),
      };
    };
    const summary = (): HubSummaryInput => {
      const now = clock();
      return buildRegionSummary({
        status: status(),
        devices: store.listDevices(),
        stateOf: (id) => store.stateOf(id) ?? 'offline',
        desiredOf: (id) => store.resolvedOf(id),
        handedOf: (id) => store.getHanded(id)?.apps,
        now,
        offlineAfterMs: offlineAfterMs(),
      });
    };

    // Maintained counters: a scrape costs the same at any fleet size.
    const refreshDeviceGauges = (): void => {
      const counts = store.deviceCounts();
      for (const state of ['converged', 'new', 'updating', 'pending', 'failed', 'offline'] as const) metrics.devices.set({ state }, counts[state] ?? 0);
    };

    const app = createRegionHttpServer({ log, https: config.tls });
    teardown.push(() => app.close());
    app.addHook('onError', async (_request, _reply, error) => health.observe(error));
    // The lateness the /metrics histogram samples: enrolments wait while the region is behind.
    limitEnrollment(app, clock, DEFAULT_ENROLLMENT_LIMITS, loopDelay.lagMs);
    const operatorToken = config.operatorToken ?? null;
    registerOperatorApi(app, {
      store,
      operatorToken,
      clock,
      onRevoke: (id) => {
        watchers.notify([id]);
        mqtt?.revoke(id);
      },
      keyOf: (id) => {
        const key = store.getDeviceKey(id);
        return key === null ? null : keyFingerprint(key);
      },
    });
    registerIdentityAdminRoutes(app, {
      store,
      identity,
      operatorToken,
      clock,
      onReset: (id) => {
        watchers.notify([id]);
        mqtt?.revoke(id);
      },
      onApprove: () => scheduler.request({ fetch: false, reason: 'device approved' }),
    });
    registerDeviceApi(app, {
      operatorGuard: operatorGuard(operatorToken),
      store,
      region: config.region,
      enrollmentToken: config.enrollmentToken,
      watchers,
      clock,
      onEnroll: () => {
        fleetGrew(store.deviceCounts().total);
        scheduler.request({ fetch: false, reason: 'device enrolled' });
      },
      onTokenIssued: mqtt?.onTokenIssued,
      onReport: deviceReported,
      identity,
      reportOrder,
      decorateDesired: relay ? (device, name, wire) => relay.decorate(device, name, wire) : undefined,
    });
    if (relay) registerArtifactRoutes(app, { relay, store });
    registerRegionRoutes(app, {
      status,
      rollouts: () => (relay ? relay.annotate(reconciler.rolloutStatuses) : reconciler.rolloutStatuses),
      // Ready once a revision was applied: what devices were handed is served from the store, also right after a
      // restart and while git is down or the head is refused (the conditions in the status say which).
      notReady: () => (store.getRevision().applied ? null : { reason: 'no revision applied yet' }),
      accept: async (revision) => {
        reconciler.accept(revision);
        scheduler.request({ fetch: true, reason: `operator accepted ${revision.slice(0, 8)}` });
        await scheduler.idle();
      },
      operatorGuard: operatorGuard(operatorToken),
      unhealthy: () => health.check(() => store.getRevision()),
      appliedRevision: () => store.getRevision().applied,
      registry: metrics.registry,
      refreshMetrics: () => {
        try {
          refreshDeviceGauges();
        } catch (err) {
          // The counters (state database errors among them) are worth most exactly then: serve them anyway.
          health.observe(err);
          log.error({ err }, 'cannot compute the device gauges for /metrics');
        }
      },
      reconcile: async (reason, wait) => {
        scheduler.request({ fetch: true, reason });
        if (wait) await scheduler.idle();
      },
    });
    registerEventRoutes(app, { events: events.stream, operatorGuard: operatorToken === null ? null : operatorGuard(operatorToken) });
    registerRolloutRoutes(app, {
      rollouts: () => reconciler.rolloutStatuses,
      retry: async (deployment) => {
        store.requestRetry(deployment, clock());
        scheduler.request({ fetch: false, reason: `operator retry of ${deployment}` });
        await scheduler.idle();
      },
      operatorGuard: operatorGuard(operatorToken),
    });
    for (const plugin of config.plugins ?? []) plugin(app, { summary, clock, operatorGuard: operatorGuard(operatorToken), pendingDevices: () => pendingDeviceViews(store) });

    // Connects, reads back the retained desired states and publishes what is out of date; fails startup on bad flags.
    await mqtt?.start({
      clock,
      registry: metrics.registry,
      onReport: deviceReported,
      onPresence: (id) => store.presenceChanged(id),
      decorateDesired: relay ? (device, name, wire) => relay.decorate(device, name, wire) : undefined,
    });
    await app.listen({ host: config.host, port: config.port, backlog: LISTEN_BACKLOG });
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
      const maintenance = startMaintenance({ ...config.maintenance, store: durable, source, registry: metrics.registry, log, clock });
      teardown.push(() => maintenance.stop());
    }
    const running = startRegionLoops({ scheduler, source, intervalMs: config.intervalMs, clock });
    loops = running;
    teardown.push(() => running.stop());
    const resyncMs = config.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    if (resyncMs > 0) {
      const resync = setInterval(() => {
        void scheduler.idle().then(() => {
          const differences = [...store.verify((devices) => reconciler.resolveAll(devices)), ...reconciler.verifyRollouts()];
          if (differences.length > 0) {
            metrics.indexDifferences.inc(differences.length);
            scheduler.request({ fetch: false, reason: 'index resync' });
          }
        });
      }, resyncMs);
      resync.unref();
      teardown.push(() => clearInterval(resync));
    }

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
