import type { Logger } from 'pino';
import type { DeviceDesired, DeviceId, InventoryDevice } from '../core/types.js';
import { isCascadeError } from '../core/errors.js';
import type { LoadedFleet } from '../desired/model.js';
import type { FleetLoader } from '../desired/load.js';
import { formatProblem } from '../desired/format-problem.js';
import { createResolver, type DesiredResolver } from '../desired/resolve.js';
import { computeHandOut } from '../plan/hand-out.js';
import { collectRolloutInputs, planRollouts, releasedBy, type DeploymentRolloutStatus } from '../plan/rollout/index.js';
import type { FleetSource } from '../source/fleet-source.js';
import { readGitSnapshot, type GitSnapshotState } from '../source/git-snapshot.js';
import type { AppCatalog, DeviceRecord, StateStore } from './state-store.js';
import type { PassRequest } from './pass-scheduler.js';
import { refuseRevision, type RevisionGuardOptions } from './revision-guard.js';
import type { RegionMetrics } from './region-metrics.js';
import { withholdUnready, type ArtifactGate } from './artifact-gate.js';

export interface ReconcilerOptions {
  region: string;
  source: FleetSource;
  store: StateStore;
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
  /** Holds back a rollout's releases until the region's copy of its artifact is ready (region/artifacts). */
  artifactGate?: ArtifactGate;
}

/** The state of the source as the last pass saw it, for status and readiness. */
export interface SourceCondition {
  reachable: boolean;
  head: string | null;
  error: string | null;
  checkedAt: number | null;
}

/**
 * One reconcile pass, level-triggered and idempotent: read the whole state, compute, act,
 * record. A revision that fails validation is recorded as attempted and never replaces the
 * last good one, which keeps being served.
 */
export class Reconciler {
  private fleet: LoadedFleet | null = null;
  private resolver: DesiredResolver | null = null;
  private rollouts: DeploymentRolloutStatus[] = [];
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

  private resolverFor(fleet: LoadedFleet): DesiredResolver {
    if (!this.resolver || this.fleet !== fleet) this.resolver = createResolver(fleet);
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
    if (result.warnings.length > 0) log.warn({ revision: head, warnings: result.warnings.map(formatProblem) }, `revision ${head.slice(0, 8)}: ${result.warnings.map(formatProblem).join('; ')}`);
    if (result.problems.length > 0) {
      const errors = result.problems.map(formatProblem);
      store.recordAttempt(head, errors, clock());
      metrics.revisionsRefused.inc();
      log.error({ revision: head, errors }, `revision ${head.slice(0, 8)} refused: ${errors.length} problem(s); still serving the last good revision`);
      return;
    }
    this.fleet = result.fleet;
    this.resolver = null;
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
    const devices = withConnected(store.listDevices(), now, this.options.isConnected);
    const desired = this.resolveAll(devices);
    const handed = new Map<DeviceId, DeviceDesired>();
    for (const [id, state] of store.listHanded()) handed.set(id, state.apps);
    const installed = new Map<DeviceId, Record<string, string>>();
    for (const device of devices) installed.set(device.id, installedVersions(device));

    const revision = fleet.revision ?? store.getRevision().applied ?? 'unknown';
    const previous = store.getRolloutStates();
    const inputs = collectRolloutInputs({ fleet, region, resolved: desired, handed, devices, previous });
    const planned = planRollouts({ now, revision, deployments: inputs, previous });
    const plan = this.options.artifactGate ? withholdUnready(planned, this.options.artifactGate, handed, installed) : planned;
    this.reportTransitions(plan.statuses);
    this.rollouts = plan.statuses;

    const changes = computeHandOut({ resolved: desired, handed, installed, released: releasedBy(plan) });
    const count = store.handOut(changes, revision, now, plan.states);
    if (count > 0) metrics.updatesSent.inc(count);
    if (changes.size > 0) {
      log.debug({ devices: changes.size, updates: count }, 'handed out desired state');
      onHandOut(changes.keys());
    }
    this.scheduleWakeUp(now);
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
