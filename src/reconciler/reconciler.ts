import type { Logger } from 'pino';
import type { DeviceDesired, DeviceId, InventoryDevice } from '../core/types.js';
import { isCascadeError } from '../core/errors.js';
import type { LoadedFleet } from '../desired/model.js';
import type { FleetLoader } from '../desired/load.js';
import { formatProblem } from '../desired/format-problem.js';
import { createResolver, type DesiredResolver } from '../desired/resolve.js';
import { computeHandOut } from '../plan/hand-out.js';
import { collectRolloutInputs, planRollouts, type DeploymentRolloutStatus, type RolloutDeploymentInput, type RolloutState } from '../plan/rollout/index.js';
import { rolloutSettings } from '../plan/rollout/settings.js';
import type { FleetSource } from '../source/fleet-source.js';
import { readGitSnapshot, type GitSnapshotState } from '../source/git-snapshot.js';
import type { AppCatalog, DeviceRecord } from './state-store.js';
import type { FleetIndex } from './fleet-index.js';
import type { PassRequest } from './pass-scheduler.js';
import { refuseRevision, type RevisionGuardOptions } from './revision-guard.js';
import type { RegionMetrics } from './region-metrics.js';

export interface ReconcilerOptions {
  region: string;
  source: FleetSource;
  /** The region's working state in memory over its durable store. */
  store: FleetIndex;
  loader: FleetLoader;
  clock: () => number;
  log: Logger;
  metrics: RegionMetrics;
  /** Called with the devices whose handed state changed, so their long-polls return at once. */
  onHandOut: (devices: Iterable<DeviceId>) => void;
  /** Asks for a pass at a given time (a bake ends, a window opens). */
  wakeUpAt?: (at: number) => void;
  /** Is the device connected right now (an open long poll)? Such a device counts as seen now. */
  isConnected?: (device: DeviceId) => boolean;
  /** Signature and history checks on each new head before it is loaded. */
  guard?: Omit<RevisionGuardOptions, 'gitdir'>;
  /** Called after every pass, e.g. to push a summary to the hub. */
  onPassComplete?: () => void;
}

/** The state of the source as the last pass saw it, for status and readiness. */
export interface SourceCondition {
  reachable: boolean;
  head: string | null;
  error: string | null;
  checkedAt: number | null;
}

/**
 * One reconcile pass, level-triggered and idempotent, and incremental: its cost follows what changed,
 * not the fleet. A revision that fails validation is recorded as attempted and never replaces the last
 * good one, which keeps being served.
 *
 * - A new revision re-resolves every device once; only devices whose resolution differs are dirty.
 * - The rollout engine is run for the Deployments that gained or lost devices, have a dirty device, or
 *   are not Complete (bakes, windows, halts move with time); the others keep their last plan, which
 *   would be the same (a Complete rollout releases exactly the devices already there).
 * - Hand-out is computed for dirty devices and devices whose release changed in this pass.
 * - A device is handed nothing before its first report: enrolment never triggers removals.
 */
export class Reconciler {
  private fleet: LoadedFleet | null = null;
  private resolver: DesiredResolver | null = null;
  private rollouts: DeploymentRolloutStatus[] = [];
  /** The last plan of each Deployment: its status, its rollout state and the devices it released. */
  private readonly planned = new Map<string, PlannedDeployment>();
  /** The next pass plans every Deployment and hands out to every device (new fleet, restart). */
  private fullPass = true;
  private snapshotState: GitSnapshotState | undefined;
  private condition: SourceCondition = { reachable: false, head: null, error: null, checkedAt: null };

  constructor(private readonly options: ReconcilerOptions) {}

  /** The last good fleet, once one is loaded. */
  get appliedFleet(): LoadedFleet | null {
    return this.fleet;
  }

  get sourceCondition(): SourceCondition {
    return this.condition;
  }

  /** Rollout status per Deployment, as of the last pass. */
  get rolloutStatuses(): DeploymentRolloutStatus[] {
    return this.rollouts;
  }

  /** What git asks of each enrolled device, by the last good revision (before rollout gating). */
  resolveAll(devices: DeviceRecord[]): Map<DeviceId, DeviceDesired> {
    if (!this.fleet) return this.options.store.getResolved();
    return this.resolverFor(this.fleet).resolveAll(this.resolutionInputs(devices)).desired;
  }

  /** What git asks of one device by the last good revision (before rollout gating), from the index. */
  desiredOf(device: DeviceId): DeviceDesired | undefined {
    return this.options.store.resolvedOf(device);
  }

  private resolverFor(fleet: LoadedFleet): DesiredResolver {
    if (!this.resolver || this.fleet !== fleet) {
      const resolver = createResolver(fleet);
      this.resolver = resolver;
      const { region } = this.options;
      this.options.store.resolveWith((device) => resolver.resolve({ id: device.id, region, labels: device.labels }).desired);
    }
    return this.resolver;
  }

  async runPass(request: PassRequest): Promise<void> {
    const { metrics, log, clock } = this.options;
    const started = clock();
    try {
      if (request.fetch) await this.refreshDesired();
      if (!this.fleet) await this.restoreLastGood();
      if (this.fleet) this.dispatch(this.fleet);
      this.options.onPassComplete?.();
    } catch (err) {
      // What the failed pass took as changed is not lost: the next one looks at everything.
      this.fullPass = true;
      log.error({ err, reason: request.reason }, 'reconcile pass failed');
    } finally {
      metrics.passDuration.observe((clock() - started) / 1000);
    }
  }

  private async refreshDesired(): Promise<void> {
    const { source, store, log, clock } = this.options;
    let head: string;
    try {
      head = await source.sync();
      this.condition = { reachable: true, head, error: null, checkedAt: clock() };
    } catch (err) {
      const message = isCascadeError(err) ? err.message : String(err);
      if (this.condition.reachable || this.condition.checkedAt === null) {
        log.warn({ err: message }, 'git source unreachable; serving the last good revision');
      }
      this.condition = { ...this.condition, reachable: false, error: message, checkedAt: clock() };
      return;
    }
    const revision = store.getRevision();
    if (this.fleet && head === revision.applied) return;
    if (head === revision.attempted && head !== revision.applied) return; // already refused
    await this.loadRevision(head);
  }

  private async loadRevision(head: string): Promise<void> {
    const { source, store, loader, log, clock, metrics, region } = this.options;
    const refusal = await refuseRevision({ ...this.options.guard, gitdir: source.location.gitdir }, head, store.getRevision().applied);
    if (refusal) {
      store.recordAttempt(head, [refusal], clock());
      metrics.revisionsRefused.inc();
      log.error({ revision: head }, refusal);
      return;
    }
    const { snapshot, state } = await readGitSnapshot({
      gitdir: source.location.gitdir,
      ref: head,
      previous: this.snapshotState,
    });
    this.snapshotState = state;
    const result = await loader.load(snapshot);
    if (result.problems.length > 0) {
      const errors = result.problems.map(formatProblem);
      store.recordAttempt(head, errors, clock());
      metrics.revisionsRefused.inc();
      log.error({ revision: head, errors }, `revision ${head.slice(0, 8)} refused: ${errors.length} problem(s); still serving the last good revision`);
      return;
    }
    this.fleet = result.fleet;
    this.resolver = null;
    this.fullPass = true;
    // Resolution is shared by label set: re-resolving every device once per revision is cheap.
    const resolved = this.resolveAll(store.listDevices());
    store.recordApplied(head, resolved, catalogOf(result.fleet), clock());
    metrics.revisionsApplied.inc();
    if (!result.fleet.regions.has(region)) {
      log.warn({ region }, `the fleet repository has no Region document named "${region}"; only Deployments without a regions selector apply here`);
    }
    log.info({ revision: head, parsed: result.stats.parsed, cached: result.stats.cached }, `revision ${head.slice(0, 8)} applied`);
  }

  /** After a restart, the last good revision is read back from the git objects on disk: no network needed. */
  private async restoreLastGood(): Promise<void> {
    const { store, loader, source, log } = this.options;
    const applied = store.getRevision().applied;
    if (!applied) return;
    try {
      const { snapshot, state } = await readGitSnapshot({ gitdir: source.location.gitdir, ref: applied });
      this.snapshotState = state;
      const result = await loader.load(snapshot);
      if (result.problems.length === 0) {
        this.fleet = result.fleet;
        this.resolver = null;
        this.fullPass = true;
        store.applyResolution(this.resolveAll(store.listDevices()));
      } else log.error({ revision: applied }, 'the last good revision no longer loads; devices keep what they were handed');
    } catch (err) {
      log.error({ err, revision: applied }, 'cannot read the last good revision from disk; devices keep what they were handed');
    }
  }

  /**
   * Hands each device what it should run next: what git asks, where the rollout rules release it;
   * otherwise what it was handed before. Rollout memory is written with the hand-out, in one transaction.
   */
  private dispatch(fleet: LoadedFleet): void {
    const { store, clock, metrics, onHandOut, log, region } = this.options;
    const now = clock();
    store.sweep(now);
    const resolver = this.resolverFor(fleet);
    for (const id of store.takeUnresolved()) {
      const device = store.getDevice(id);
      if (device) store.setResolved(id, device.revoked ? undefined : resolver.resolve({ id, region, labels: device.labels }).desired);
    }
    const full = this.fullPass;
    this.fullPass = false;
    const dirty = store.takeDirty();
    const touched = store.takeTouchedDeployments();

    // The Deployments to plan this pass, and the devices they hold.
    const replan = new Set<string>();
    if (full) {
      for (const name of store.deploymentsWithMembers()) replan.add(name);
      for (const name of store.getRolloutStates().keys()) replan.add(name);
      for (const name of this.planned.keys()) replan.add(name);
    } else {
      for (const name of touched) replan.add(name);
      for (const id of dirty) {
        const desired = store.resolvedOf(id);
        for (const app in desired) replan.add(desired[app]!.deployment);
      }
      // Time moves rollouts that are not Complete (bakes, windows), and turns silent devices offline.
      for (const [name, planned] of this.planned) if (planned.status.state !== 'Complete' || planned.offlineAt <= now) replan.add(name);
    }

    const revision = fleet.revision ?? store.getRevision().applied ?? 'unknown';
    const candidates = full ? new Set<DeviceId>(store.allDeviceIds()) : dirty;
    let statesChanged = false;
    if (replan.size > 0) {
      // Each device once, even when it belongs to several of the Deployments planned.
      let ids: Iterable<DeviceId>;
      if (replan.size === 1) ids = store.membersOf([...replan][0]!);
      else {
        const union = new Set<DeviceId>();
        for (const name of replan) for (const id of store.membersOf(name)) union.add(id);
        ids = union;
      }
      const devices = (function* () {
        for (const id of ids) yield store.rolloutView(id, now)!;
      })();
      const resolved = store.resolvedView;
      const handed = store.handedView;
      const previous = this.previousStates();
      const inputs = collectRolloutInputs({ fleet, region, resolved, handed, devices, previous }).filter((d) => replan.has(d.deployment));
      const plan = planRollouts({ now, revision, deployments: inputs, previous });
      const offlineAt = new Map(inputs.map((input) => [input.deployment, nextOffline(input, now)]));
      const statuses = new Map(plan.statuses.map((s) => [s.deployment, s]));
      if (full) {
        for (const name of this.planned.keys()) if (!plan.states.has(name)) this.planned.delete(name);
      }
      for (const [name, state] of plan.states) {
        const release = plan.release.get(name)!;
        const before = this.planned.get(name)?.release;
        if (!full) {
          // Devices whose release changed are handed out again.
          for (const id of release) if (!before?.has(id)) candidates.add(id);
          if (before) for (const id of before) if (!release.has(id)) candidates.add(id);
        }
        this.planned.set(name, { status: statuses.get(name)!, state, release, ...offlineAt.get(name)! });
      }
      // A Deployment gone from the fleet (not planned again) leaves the plan.
      for (const name of replan) if (!plan.states.has(name)) this.planned.delete(name);
      statesChanged = true;
      let quiet = Infinity;
      for (const planned of this.planned.values()) quiet = Math.min(quiet, planned.offlineAfterMs);
      store.setQuietThreshold(quiet);
      const sorted = [...this.planned.values()].map((p) => p.status).sort((a, b) => (a.deployment < b.deployment ? -1 : a.deployment > b.deployment ? 1 : 0));
      this.reportTransitions(sorted);
      this.rollouts = sorted;
    }

    const released = (device: DeviceId, _app: string, desired: { deployment: string; version: string }): boolean => {
      const planned = this.planned.get(desired.deployment);
      return planned !== undefined && planned.release.has(device) && planned.state.version === desired.version;
    };
    const resolved = new Map<DeviceId, DeviceDesired>();
    const handed = new Map<DeviceId, DeviceDesired>();
    const installed = new Map<DeviceId, Record<string, string>>();
    for (const id of candidates) {
      // First report before first hand-out: what a device runs is known before it is told to change it.
      if (!store.hasReported(id)) continue;
      const device = store.getDevice(id);
      if (!device) continue;
      const desired = store.resolvedOf(id);
      if (desired) resolved.set(id, desired);
      const h = store.getHanded(id);
      if (h) handed.set(id, h.apps);
      installed.set(id, installedVersions(device));
    }
    const changes = computeHandOut({ resolved, handed, installed, released });
    if (changes.size > 0 || statesChanged) {
      const states = new Map<string, RolloutState>();
      for (const [name, planned] of this.planned) states.set(name, planned.state);
      const count = store.handOut(changes, revision, now, statesChanged ? states : undefined);
      if (count > 0) metrics.updatesSent.inc(count);
    }
    if (changes.size > 0) {
      log.debug({ devices: changes.size }, 'handed out desired state');
      onHandOut(changes.keys());
    }
    this.scheduleWakeUp(now);
  }

  /** Rollout states as of the last plan; after a restart, as the store remembers them. */
  private previousStates(): Map<string, RolloutState> {
    const states = this.options.store.getRolloutStates();
    for (const [name, planned] of this.planned) states.set(name, planned.state);
    return states;
  }

  /** A log line when a rollout halts, completes or starts waiting; the halt names its reason and devices. */
  private reportTransitions(statuses: DeploymentRolloutStatus[]): void {
    const { log, metrics } = this.options;
    const before = new Map(this.rollouts.map((s) => [s.deployment, s]));
    for (const status of statuses) {
      metrics.rolloutHalted.set({ deployment: status.deployment }, status.state === 'Halted' ? 1 : 0);
      const old = before.get(status.deployment);
      if (old && old.state === status.state && old.version === status.version) continue;
      const fields = { deployment: status.deployment, version: status.version, state: status.state, wave: status.currentWave };
      if (status.state === 'Halted') {
        log.error({ ...fields, reason: status.halted?.reason, devices: status.halted?.devices }, `rollout of ${status.deployment} ${status.version} Halted: ${status.halted?.reason ?? status.message}`);
      } else if (old || status.state !== 'Complete') {
        log.info(fields, `rollout of ${status.deployment} ${status.version}: ${status.state} (${status.message})`);
      }
    }
  }

  private scheduleWakeUp(now: number): void {
    if (!this.options.wakeUpAt) return;
    let next = Infinity;
    for (const status of this.rollouts) {
      for (const at of [status.nextWaveAt, status.window?.opensAt, status.window?.closesAt]) {
        if (at !== undefined && at !== null && at > now && at < next) next = at;
      }
    }
    if (next !== Infinity) this.options.wakeUpAt(next);
  }

  /**
   * What resolution reads of each device that is not revoked. Only that: this runs on every pass and
   * every status request, so it builds no installed-versions map resolution would not look at.
   */
  private resolutionInputs(devices: DeviceRecord[]): Array<Pick<InventoryDevice, 'id' | 'region' | 'labels'>> {
    const { region } = this.options;
    const inputs: Array<Pick<InventoryDevice, 'id' | 'region' | 'labels'>> = [];
    for (const device of devices) {
      if (!device.revoked) inputs.push({ id: device.id, region, labels: device.labels });
    }
    return inputs;
  }
}

interface PlannedDeployment {
  status: DeploymentRolloutStatus;
  state: RolloutState;
  /** The devices the plan released. */
  release: Set<DeviceId>;
  /** When the first device this plan saw online turns offline by the rollout's offlineAfter: plan again then. */
  offlineAt: number;
  offlineAfterMs: number;
}

/** When the first online device of a Deployment's input falls silent for its rollout's offlineAfter. */
function nextOffline(input: RolloutDeploymentInput, now: number): { offlineAt: number; offlineAfterMs: number } {
  const { offlineAfterMs } = rolloutSettings(input.rollout, input.devices.length, `Deployment ${input.deployment}`);
  let offlineAt = Infinity;
  for (const device of input.devices) {
    if (device.lastSeen === null || now - device.lastSeen > offlineAfterMs) continue;
    offlineAt = Math.min(offlineAt, device.lastSeen + offlineAfterMs + 1);
  }
  return { offlineAt, offlineAfterMs };
}

/** Devices holding a connection open are seen now, whatever their last report. */
export function withConnected(devices: DeviceRecord[], now: number, isConnected?: (device: DeviceId) => boolean): DeviceRecord[] {
  if (!isConnected) return devices;
  return devices.map((d) => (isConnected(d.id) ? { ...d, lastSeen: now } : d));
}

export function installedVersions(device: DeviceRecord): Record<string, string> {
  const apps: Record<string, string> = {};
  for (const app in device.apps) {
    const version = device.apps[app]!.version;
    if (version !== null) apps[app] = version;
  }
  return apps;
}

function catalogOf(fleet: LoadedFleet): AppCatalog {
  const catalog: AppCatalog = {};
  for (const [name, app] of fleet.apps) catalog[name] = app.spec;
  return catalog;
}
