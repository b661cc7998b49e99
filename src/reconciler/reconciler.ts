import type { Logger } from 'pino';
import type { DeviceDesired, DeviceId, InventoryDevice } from '../core/types.js';
import { isCascadeError, isTemporary } from '../core/errors.js';
import type { Condition } from '../protocol/region-status.js';
import { RegionConditions } from './conditions.js';
import type { LoadedFleet } from '../desired/model.js';
import type { FleetLoader } from '../desired/load.js';
import { formatProblem } from '../desired/format-problem.js';
import { createResolver, type DesiredResolver } from '../desired/resolve.js';
import { computeHandOut } from '../plan/hand-out.js';
import {
  collectRolloutInputs,
  DEFAULT_OFFLINE_AFTER_MS,
  planRollouts,
  regionOfflineAfterMs,
  releasedBy,
  attemptsBy,
  type DeploymentRolloutStatus,
} from '../plan/rollout/index.js';
import type { FleetSource } from '../source/fleet-source.js';
import { readGitSnapshot, type GitSnapshotState } from '../source/git-snapshot.js';
import type { AppCatalog, DeviceRecord, StateStore } from './state-store.js';
import type { PassRequest } from './pass-scheduler.js';
import { refuseRevision, type RevisionGuardOptions } from './revision-guard.js';
import type { RegionMetrics } from './region-metrics.js';

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
  /**
   * Asks for a fetching pass after `ms` (a temporary failure backs off: 1 s, 2 s, 4 s ... up to
   * `maxBackoffMs`); a refusal is final for its head and asks for nothing.
   */
  retryIn?: (ms: number) => void;
  /** The longest backoff; the fetch interval. */
  maxBackoffMs?: number;
  /** The region's `--offline-after` (default DEFAULT_OFFLINE_AFTER_MS); the fleet's Region or Fleet `rollout.offlineAfter` wins. */
  offlineAfterMs?: number;
  /** After each hand-out, with the pass's rollout statuses (onHalt reverts: halt-revert.ts); may add to them. */
  afterDispatch?: (fleet: LoadedFleet, statuses: DeploymentRolloutStatus[], served: string | null) => Promise<void>;
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
  private readonly conditions: RegionConditions;
  /** The last pass's failure, when it failed. */
  private passError: { reason: string; message: string; temporary: boolean; duringFetch: boolean } | null = null;
  /** Why the attempted head was refused by the guard, when it was (validation refusals say 'invalid'). */
  private refusalReason: string | null = null;
  /** Consecutive temporary failures: the backoff's exponent. */
  private failures = 0;
  /** A non-descending head an operator adopted (`cascade region accept`), until it is applied. */
  private accepted: string | null = null;
  private resolver: DesiredResolver | null = null;
  private rollouts: DeploymentRolloutStatus[] = [];
  private snapshotState: GitSnapshotState | undefined;
  private condition: SourceCondition = { reachable: false, head: null, error: null, checkedAt: null };

  constructor(private readonly options: ReconcilerOptions) {
    this.conditions = new RegionConditions(options.clock());
  }

  /** Ready, Reconciling, Stalled, as of the last pass. */
  get regionConditions(): Condition[] {
    return this.conditions.list();
  }

  /** Whether the region serves a revision: one applied and loaded (after a restart, read back from disk). */
  get serving(): boolean {
    return this.fleet !== null;
  }

  /**
   * Adopts one head that does not descend from the served revision (a rewritten branch), without a
   * restart: the next pass applies it if it is that head and passes every other check.
   */
  accept(revision: string): void {
    this.accepted = revision;
  }

  /** The last good fleet, once one is loaded. */
  get appliedFleet(): LoadedFleet | null {
    return this.fleet;
  }

  get sourceCondition(): SourceCondition {
    return this.condition;
  }

  /**
   * The region's one offline clock, for the rollout engine and the status views, metrics and hub
   * summary alike: the applied fleet's Region or Fleet `rollout.offlineAfter`, else `--offline-after`.
   */
  get offlineAfterMs(): number {
    return regionOfflineAfterMs(this.fleet, this.options.region, this.options.offlineAfterMs ?? DEFAULT_OFFLINE_AFTER_MS);
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
    let failure: { reason: string; message: string; temporary: boolean; duringFetch: boolean } | null = null;
    try {
      if (request.fetch) await this.refreshDesired();
      if (!this.fleet) await this.restoreLastGood();
      if (this.fleet) {
        this.dispatch(this.fleet);
        await this.options.afterDispatch?.(this.fleet, this.rollouts, this.options.store.getRevision().applied);
      }
    } catch (err) {
      // Anything that is not a refusal of the input may pass: a read error, a full disk, a bug.
      const reason = isCascadeError(err) ? err.code : 'internal';
      failure = { reason, message: err instanceof Error ? err.message : String(err), temporary: isTemporary(err) || !isCascadeError(err) || err.retry !== 'final', duringFetch: request.fetch };
      metrics.reconcileFailures.inc({ reason });
      log.error({ err, reason: request.reason }, 'reconcile pass failed');
    } finally {
      metrics.passDuration.observe((clock() - started) / 1000);
    }
    // A pass clears the failure of its own kind: a re-plan cannot tell that a failed fetch would now work.
    if (failure || request.fetch || !this.passError?.duringFetch) this.passError = failure;
    this.updateConditions(clock());
    this.scheduleRetry();
    this.options.onPassComplete?.();
  }

  /** Temporary failures (git unreachable, a read error) are retried with backoff; success resets it. */
  private scheduleRetry(): void {
    const failing = this.passError?.temporary || !this.condition.reachable;
    if (!failing) {
      this.failures = 0;
      return;
    }
    const max = this.options.maxBackoffMs ?? 60_000;
    const delay = Math.min(1000 * 2 ** Math.min(this.failures, 20), max);
    this.failures++;
    this.options.retryIn?.(delay);
  }

  private updateConditions(now: number): void {
    const revision = this.options.store.getRevision();
    const short = (sha: string | null) => (sha ? sha.slice(0, 8) : '-');
    const refused = revision.attempted !== null && revision.attempted !== revision.applied && revision.errors.length > 0;
    const c = this.conditions;
    if (refused) {
      const reason = this.refusalReason ?? 'invalid';
      c.set('Stalled', 'True', reason, `head ${short(revision.attempted)} refused: ${revision.errors[0] ?? ''}${revision.errors.length > 1 ? ` (and ${revision.errors.length - 1} more)` : ''}`, now);
    } else {
      c.set('Stalled', 'False', 'Applied', '', now);
    }
    if (!revision.applied || !this.fleet) {
      c.set('Ready', 'False', revision.applied ? 'LastGoodUnreadable' : 'NoRevision', revision.applied ? `cannot load the last good revision ${short(revision.applied)} from disk` : this.condition.error ?? 'no revision applied yet', now);
    } else if (refused) {
      c.set('Ready', 'False', 'HeadRefused', `serving ${short(revision.applied)}; the branch head ${short(revision.attempted)} was refused`, now);
    } else if (!this.condition.reachable && this.condition.checkedAt !== null) {
      c.set('Ready', 'False', 'SourceUnreachable', `serving ${short(revision.applied)} while git is unreachable: ${this.condition.error ?? ''}`, now);
    } else if (this.passError) {
      c.set('Ready', 'False', this.passError.reason, this.passError.message, now);
    } else {
      c.set('Ready', 'True', 'Applied', `serving ${short(revision.applied)}`, now);
    }
    const moving = this.rollouts.filter((r) => r.state === 'Progressing' || r.state === 'Baking' || r.state === 'WaitingForWindow');
    if (this.passError?.temporary || (!this.condition.reachable && this.condition.checkedAt !== null)) {
      c.set('Reconciling', 'True', 'Retrying', `a failed step is retried with backoff (${this.passError?.reason ?? 'source-unreachable'})`, now);
    } else if (moving.length > 0) {
      c.set('Reconciling', 'True', 'RolloutInProgress', moving.map((r) => `${r.deployment} ${r.version} ${r.state}`).join(', '), now);
    } else {
      c.set('Reconciling', 'False', 'Settled', '', now);
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
      this.options.metrics.reconcileFailures.inc({ reason: isCascadeError(err) ? err.code : 'source-unreachable' });
      if (this.condition.reachable || this.condition.checkedAt === null) {
        const applied = store.getRevision().applied;
        log.warn({ err: message }, applied ? `git source unreachable; serving the last good revision ${applied.slice(0, 8)}` : 'git source unreachable; no revision applied yet, so nothing is served until it is reachable');
      }
      this.condition = { ...this.condition, reachable: false, error: message, checkedAt: clock() };
      return;
    }
    const revision = store.getRevision();
    if (this.fleet && head === revision.applied) return;
    // Already refused: final for that head, unless an operator has since adopted it.
    if (head === revision.attempted && head !== revision.applied && head !== this.accepted) return;
    await this.loadRevision(head);
  }

  private async loadRevision(head: string): Promise<void> {
    const { source, store, loader, log, clock, metrics, region } = this.options;
    const refusal = await refuseRevision({ ...this.options.guard, accepted: this.accepted, gitdir: source.location.gitdir }, head, store.getRevision().applied);
    if (refusal) {
      store.recordAttempt(head, [refusal.message], clock());
      this.refusalReason = refusal.reason;
      metrics.revisionsRefused.inc();
      metrics.reconcileFailures.inc({ reason: refusal.reason });
      log.error({ revision: head }, refusal.message);
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
      this.refusalReason = 'invalid';
      metrics.revisionsRefused.inc();
      metrics.reconcileFailures.inc({ reason: 'invalid' });
      log.error({ revision: head, errors }, `revision ${head.slice(0, 8)} refused: ${errors.length} problem(s); still serving the last good revision`);
      return;
    }
    this.fleet = result.fleet;
    this.resolver = null;
    const resolved = this.resolveAll(store.listDevices());
    store.recordApplied(head, resolved, catalogOf(result.fleet), clock());
    this.refusalReason = null;
    if (this.accepted === head) {
      log.warn({ revision: head }, `revision ${head.slice(0, 8)} adopted by an operator although it does not descend from the revision served before`);
      this.accepted = null;
    }
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
    // Operator retries (`cascade rollout retry`) are taken by this pass, halted or not.
    const retries = store.pendingRetries();
    const plan = planRollouts({ now, offlineAfterMs: this.offlineAfterMs, revision, deployments: inputs, previous, retries });
    this.reportTransitions(plan.statuses);
    this.rollouts = plan.statuses;

    const changes = computeHandOut({ resolved: desired, handed, installed, released: releasedBy(plan), attempt: attemptsBy(plan) });
    const count = store.handOut(changes, revision, now, plan.states);
    if (retries.size > 0) store.clearRetries(retries.keys());
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
      if (status.state === 'Stalled') {
        log.error({ ...fields, problem: status.problem }, `rollout of ${status.deployment} ${status.version} Stalled: ${status.message}`);
      } else if (status.state === 'Halted') {
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
