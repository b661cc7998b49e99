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
  DEFAULT_OFFLINE_AFTER_MS,
  DeploymentTracker,
  regionOfflineAfterMs,
  rolloutDeviceInput,
  startingState,
  trackedDeployment,
  attemptsBy,
  type DeploymentRolloutStatus,
  type RolloutDeviceInput,
  type RolloutState,
} from '../plan/rollout/index.js';
import { waveOf } from '../plan/waves.js';
import { stableJson } from '../core/stable-json.js';
import type { FleetSource } from '../source/fleet-source.js';
import { readGitSnapshot, type GitSnapshotState } from '../source/git-snapshot.js';
import type { AppCatalog, DeviceRecord } from './state-store.js';
import type { FleetIndex } from './fleet-index.js';
import type { PassRequest } from './pass-scheduler.js';
import { refuseRevision, type RevisionGuardOptions } from './revision-guard.js';
import type { RegionMetrics } from './region-metrics.js';
import type { ReconcilerEvent } from './reconciler-events.js';
import { refuseRemoval, type RemovalGuardOptions } from './removal-guard.js';
import { DEFAULT_MAX_REMOVAL } from '../plan/removal.js';
import { withholdUnready, type ArtifactGate } from './artifact-gate.js';

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
  /**
   * Asks for a fetching pass after `ms` (a temporary failure backs off: 1 s, 2 s, 4 s ... up to
   * `maxBackoffMs`); a refusal is final for its head and asks for nothing.
   */
  retryIn?: (ms: number) => void;
  /** The longest backoff; the fetch interval. */
  maxBackoffMs?: number;
  /** The region's `--offline-after` (default DEFAULT_OFFLINE_AFTER_MS); the fleet's Region or Fleet `rollout.offlineAfter` wins. */
  offlineAfterMs?: number;
  /** Devices pull container images through this mirror unless the Region document names one (--registry-mirror). */
  registryMirror?: string;
  /** Revisions applied or refused, rollout transitions: the region streams them (region/events.ts). */
  onEvent?: (event: ReconcilerEvent) => void;
  /** The mass-removal guard (removal-guard.ts); on with --max-removal 10% when absent. */
  removalGuard?: RemovalGuardOptions;
  /** Called with the error of a failed pass (after it is logged), e.g. to notice a failing state database. */
  onPassError?: (err: unknown) => void;
  /** Holds back a rollout's releases until the region's copy of its artifact is ready (region/artifacts). */
  artifactGate?: ArtifactGate;
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
  /** The last plan of each Deployment: its status, its rollout state and the devices it released. */
  private readonly planned = new Map<string, PlannedDeployment>();
  /** Each Deployment's devices as its rollout sees them, kept up to date by each pass (rebuilt on a full one). */
  private readonly trackers = new Map<string, DeploymentTracker>();
  /** The rollout states last written to the store (stableJson by Deployment); null before the first write. */
  private writtenStates: Map<string, string> | null = null;
  /** The next pass plans every Deployment and hands out to every device (new fleet, restart). */
  private fullPass = true;
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
    let failure: { reason: string; message: string; temporary: boolean; duringFetch: boolean } | null = null;
    try {
      if (request.fetch) await this.refreshDesired();
      if (!this.fleet) await this.restoreLastGood();
      if (this.fleet) {
        await this.dispatch(this.fleet);
        await this.options.afterDispatch?.(this.fleet, this.rollouts, this.options.store.getRevision().applied);
      }
    } catch (err) {
      // Anything that is not a refusal of the input may pass: a read error, a full disk, a bug.
      const reason = isCascadeError(err) ? err.code : 'internal';
      failure = { reason, message: err instanceof Error ? err.message : String(err), temporary: isTemporary(err) || !isCascadeError(err) || err.retry !== 'final', duringFetch: request.fetch };
      metrics.reconcileFailures.inc({ reason });
      // What the failed pass took as changed is not lost: the next one looks at everything.
      this.fullPass = true;
      log.error({ err, reason: request.reason }, 'reconcile pass failed');
      this.options.onPassError?.(err);
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
        const serving = store.getRevision().applied;
        log.warn({ err: message }, serving ? `git source unreachable; serving the last good revision ${serving.slice(0, 8)}` : 'git source unreachable and no revision applied yet: devices get nothing until it can be read; check --repo and the credentials');
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
      this.options.onEvent?.({ type: 'revision.refused', revision: head, reason: refusal.reason, errors: [refusal.message] });
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
      log.error({ revision: head, errors }, `revision ${head.slice(0, 8)} refused: ${errors.length} problem(s); ${store.getRevision().applied ? 'still serving the last good revision' : 'no revision applied yet'}`);
      this.options.onEvent?.({ type: 'revision.refused', revision: head, reason: 'invalid', errors });
      return;
    }
    const removal = await this.refusedRemoval(head, result.fleet);
    if (removal) {
      store.recordAttempt(head, [removal], clock());
      metrics.revisionsRefused.inc();
      log.error({ revision: head }, removal);
      return;
    }
    this.fleet = result.fleet;
    this.resolver = null;
    this.fullPass = true;
    // Resolution is shared by label set: re-resolving every device once per revision is cheap.
    const devices = store.listDevices();
    const labelsAt = devices.map((device) => device.labels);
    // Resolved and written in slices too: at 50,000 devices, resolving and writing the whole fleet
    // in one go held the event loop for a third of a second.
    const resolved = await this.resolveInSlices(this.resolverFor(result.fleet), devices);
    const catalog = catalogOf(result.fleet, region, this.options.registryMirror);
    if (store.recordAppliedInSlices) await store.recordAppliedInSlices(head, resolved, catalog, clock(), yieldToLoop, SLICE);
    else store.recordApplied(head, resolved, catalog, clock());
    // Into the index in slices, the event loop served in between (what changed is dirty for this pass).
    // A device relabelled meanwhile was resolved by the new revision already; one enrolled meanwhile too.
    for (let i = 0; i < devices.length; i++) {
      if (i > 0 && i % SLICE === 0) await yieldToLoop();
      const device = devices[i]!;
      if (device.labels === labelsAt[i]) store.setResolved(device.id, resolved.get(device.id));
    }
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
    this.options.onEvent?.({ type: 'revision.applied', revision: head });
  }

  /** The mass-removal guard's refusal of a loaded revision, or null (removal-guard.ts). */
  private async refusedRemoval(head: string, next: LoadedFleet): Promise<string | null> {
    const { store, region, source } = this.options;
    if (!store.getRevision().applied) return null;
    if (!this.fleet) await this.restoreLastGood();
    const devices = store.listDevices();
    const ids = this.resolutionInputs(devices).map((d) => d.id);
    const before = this.fleet ? await this.resolveInSlices(this.resolverFor(this.fleet), devices) : store.getResolved();
    const after = await this.resolveInSlices(createResolver(next), devices);
    await yieldToLoop();
    return refuseRemoval({
      gitdir: source.location.gitdir,
      head,
      region,
      maxRemoval: this.options.removalGuard?.maxRemoval ?? DEFAULT_MAX_REMOVAL,
      previous: this.fleet,
      next,
      devices: ids,
      before,
      after,
    });
  }

  /** What `resolver` asks of each device that is not revoked, in slices with a turn of the event loop between. */
  private async resolveInSlices(resolver: DesiredResolver, devices: readonly DeviceRecord[]): Promise<Map<DeviceId, DeviceDesired>> {
    const { region } = this.options;
    const desired = new Map<DeviceId, DeviceDesired>();
    for (let i = 0; i < devices.length; i++) {
      if (i > 0 && i % SLICE === 0) await yieldToLoop();
      const device = devices[i]!;
      if (!device.revoked) desired.set(device.id, resolver.resolve({ id: device.id, region, labels: device.labels }).desired);
    }
    return desired;
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
  private async dispatch(fleet: LoadedFleet): Promise<void> {
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
    const revision = fleet.revision ?? store.getRevision().applied ?? 'unknown';
    const offlineAfterMs = this.offlineAfterMs;
    const previous = this.previousStates();
    const candidates = full ? new Set<DeviceId>(store.allDeviceIds()) : dirty;

    // The Deployments to plan this pass.
    const replan = new Set<string>();
    if (full) {
      // A new fleet (or a restart): every Deployment's devices are counted again, from the index.
      this.trackers.clear();
      for (const name of store.deploymentsWithMembers()) replan.add(name);
      for (const name of previous.keys()) replan.add(name);
      for (const name of this.planned.keys()) replan.add(name);
      for (const name of replan) {
        const tracker = this.trackerFor(fleet, name, now, revision, previous);
        if (!tracker) continue;
        let i = 0;
        for (const id of store.membersOf(name)) {
          if (++i % SLICE === 0) await yieldToLoop();
          tracker.set(id, this.deviceInput(tracker, id, now), now);
        }
      }
    } else {
      for (const name of touched) replan.add(name);
      // A device whose report, hand-out, resolution or presence changed is counted again where it is, and
      // no longer where it left: a pass costs the devices that changed, not the Deployments' size.
      let i = 0;
      for (const id of dirty) {
        if (++i % SLICE === 0) await yieldToLoop();
        const desired = store.resolvedOf(id);
        for (const [name, tracker] of this.trackers) {
          if (tracker.has(id) && !inDeployment(desired, name)) {
            tracker.set(id, undefined, now);
            replan.add(name);
          }
        }
        for (const app in desired) {
          const name = desired[app]!.deployment;
          const tracker = this.trackerFor(fleet, name, now, revision, previous);
          if (!tracker) continue;
          tracker.set(id, this.deviceInput(tracker, id, now), now);
          replan.add(name);
        }
      }
      // Time moves rollouts that are not Complete (bakes, windows), and turns silent devices offline.
      for (const [name, planned] of this.planned) if (planned.status.state !== 'Complete') replan.add(name);
      for (const [name, tracker] of this.trackers) if (tracker.nextDeadline() < now) replan.add(name);
    }

    let statesChanged = false;
    // Operator retries (`cascade rollout retry`) are taken by this pass, halted or not.
    const retries = store.pendingRetries();
    for (const name of retries.keys()) replan.add(name);
    if (replan.size > 0) {
      const gate = this.options.artifactGate;
      const handedApps = { get: (id: DeviceId) => store.getHanded(id)?.apps };
      const installed = { get: (id: DeviceId) => { const d = store.getDevice(id); return d ? installedVersions(d) : undefined; } };
      for (const name of [...replan].sort(compareNames)) {
        const tracker = this.trackers.get(name);
        if (!tracker) {
          // A Deployment gone from the fleet leaves the plan.
          this.planned.delete(name);
          this.trackers.delete(name);
          continue;
        }
        // Usually a few counters; over every device (read between turns of the event loop) for an operator's retry or a Stalled Deployment.
        const steps = tracker.plan(now, revision, previous.get(name), (id) => this.deviceInput(tracker, id, now), { offlineAfterMs, retryAsked: retries.has(name), stepDevices: SLICE });
        let step = steps.next();
        while (!step.done) {
          await yieldToLoop();
          step = steps.next();
        }
        const planned = step.value;
        // The relay holds back releases of a version whose artifact the region has not verified yet.
        const { status, chosen } = gate ? withholdUnready(planned.status, planned.chosen, gate, handedApps, installed) : planned;
        if (!full) {
          // Devices whose release changed are handed out again (those whose input changed are already):
          // chosen now and not before, or the other way round, and not there (released either way).
          const before = this.planned.get(name)?.chosen ?? NONE;
          for (const id of chosen) if (!before.has(id)) candidates.add(id);
          for (const id of before) if (!chosen.has(id) && !tracker.isThere(id)) candidates.add(id);
        }
        // Devices a retry re-attempts keep their release but get a new attempt: hand them out again.
        const retry = planned.state.retry;
        if (retries.has(name) && retry && retry.at === now) for (const id of retry.devices) candidates.add(id);
        this.planned.set(name, { status, state: planned.state, tracker, chosen });
      }
      if (full) for (const name of [...this.planned.keys()]) if (!this.trackers.has(name)) this.planned.delete(name);
      statesChanged = true;
      store.setQuietThreshold(this.planned.size > 0 ? offlineAfterMs : Infinity);
      const sorted = [...this.planned.values()].map((p) => p.status).sort((a, b) => compareNames(a.deployment, b.deployment));
      this.reportTransitions(sorted);
      this.rollouts = sorted;
    }


    const released = (device: DeviceId, _app: string, desired: { deployment: string; version: string }): boolean => {
      const planned = this.planned.get(desired.deployment);
      return planned !== undefined && planned.state.version === desired.version && (planned.chosen.has(device) || planned.tracker.isThere(device));
    };
    // Handed out in slices, each written (one transaction) and then announced before the next is
    // looked at: no turn of the event loop holds more than a slice's SQLite writes and publishes, the
    // first devices hear while the last are still being written, and a device is announced only once
    // its hand-out is durable (a crash between slices leaves the rest for the next pass, none twice).
    const attempt = attemptsBy({ states: this.plannedStates() });
    let states: Map<string, RolloutState> | undefined;
    let statesWritten: Map<string, string> | null = null;
    if (statesChanged) {
      // Written only when one changed: most passes of a rollout only move devices (a transaction saved per pass).
      const written = new Map<string, string>();
      let changed = this.writtenStates === null || this.writtenStates.size !== this.planned.size;
      for (const [name, planned] of this.planned) {
        const json = stableJson(planned.state);
        written.set(name, json);
        if (!changed && this.writtenStates!.get(name) !== json) changed = true;
      }
      if (changed) {
        states = new Map<string, RolloutState>();
        for (const [name, planned] of this.planned) states.set(name, planned.state);
        statesWritten = written;
      }
    }
    const ids = [...candidates];
    let handedOut = 0;
    for (let from = 0; from === 0 || from < ids.length; from += HAND_OUT_SLICE) {
      if (from > 0) await yieldToLoop();
      const resolved = new Map<DeviceId, DeviceDesired>();
      const handed = new Map<DeviceId, DeviceDesired>();
      const installed = new Map<DeviceId, Record<string, string>>();
      for (let i = from; i < Math.min(ids.length, from + HAND_OUT_SLICE); i++) {
        const id = ids[i]!;
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
      const changes = computeHandOut({ resolved, handed, installed, released, attempt });
      // The rollout states go with the first slice, written even when it hands out nothing.
      if (changes.size > 0 || states) {
        // A failed write leaves the states to be written by the next pass.
        if (states) this.writtenStates = null;
        const count = store.handOut(changes, revision, now, states);
        if (states) this.writtenStates = statesWritten;
        states = undefined;
        if (count > 0) metrics.updatesSent.inc(count);
      }
      if (changes.size > 0) {
        handedOut += changes.size;
        // What a device was handed is part of its rollout input: counted again where it is.
        for (const [id, apps] of changes) {
          for (const app in apps) {
            const tracker = this.trackers.get(apps[app]!.deployment);
            if (tracker?.has(id)) tracker.set(id, this.deviceInput(tracker, id, now), now);
          }
        }
        onHandOut(changes.keys());
      }
    }
    if (retries.size > 0) store.clearRetries(retries.keys());
    if (handedOut > 0) log.debug({ devices: handedOut }, 'handed out desired state');
    this.scheduleWakeUp(now);
  }

  /**
   * The periodic resync's check of the rollouts' counts (kept device by device) against a recount of
   * every Deployment's devices from the index. Each difference is logged as a bug and the next pass
   * counts every Deployment again. Returns the differences.
   */
  verifyRollouts(): string[] {
    const { store, clock, log } = this.options;
    const now = clock();
    const differences: string[] = [];
    for (const [name, tracker] of this.trackers) {
      for (const difference of tracker.verify(store.membersOf(name), (id) => this.deviceInput(tracker, id, now), now, (id) => store.isDirty(id))) {
        differences.push(`${name}: ${difference}`);
      }
    }
    for (const difference of differences.slice(0, 20)) log.error({ difference }, `rollout counts differ from a full recount: ${difference}`);
    if (differences.length > 0) this.fullPass = true;
    return differences;
  }

  /** The Deployment's tracker, made (empty) when there is none yet; undefined when the fleet has no such Deployment. */
  private trackerFor(fleet: LoadedFleet, name: string, now: number, revision: string, previous: ReadonlyMap<string, RolloutState>): DeploymentTracker | undefined {
    const known = this.trackers.get(name);
    if (known) return known;
    const deployment = trackedDeployment(fleet, name, this.options.region);
    if (!deployment) return undefined;
    const tracker = new DeploymentTracker(deployment, this.offlineAfterMs, startingState(previous.get(name), deployment, now, revision).state.startedAt);
    this.trackers.set(name, tracker);
    return tracker;
  }

  /** The device as its Deployment's rollout sees it now; undefined when it is not (or no longer) in that Deployment. */
  private deviceInput(tracker: DeploymentTracker, id: DeviceId, now: number): RolloutDeviceInput | undefined {
    const { store } = this.options;
    const { deployment: name, app } = tracker.deployment;
    const desired = store.resolvedOf(id)?.[app];
    if (!desired || desired.deployment !== name) return undefined;
    const record = store.rolloutView(id, now);
    if (!record || record.revoked) return undefined;
    return rolloutDeviceInput(record, app, store.handedView.get(id), waveOf(id, name, tracker.deployment.rollout.waves ?? []));
  }

  /** The rollout state of each Deployment planned so far (the attempts an operator's retry hands out). */
  private plannedStates(): Map<string, RolloutState> {
    const states = new Map<string, RolloutState>();
    for (const [name, planned] of this.planned) states.set(name, planned.state);
    return states;
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
      this.options.onEvent?.({ type: 'rollout.status', status, previous: old ?? null });
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

/** Devices a pass looks at between two turns of the event loop (reports, polls and scrapes are served in between). */
const SLICE = 1_000;
/** Devices handed out per transaction and announcement (a few tens of milliseconds of SQLite writes and publishes). */
const HAND_OUT_SLICE = 250;
const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface PlannedDeployment {
  status: DeploymentRolloutStatus;
  state: RolloutState;
  /** The Deployment's devices, counted as they change: those there already are released. */
  tracker: DeploymentTracker;
  /** The devices the plan released beyond those there already (after the artifact gate). */
  chosen: ReadonlySet<DeviceId>;
}

const NONE: ReadonlySet<DeviceId> = new Set();

/** Whether `desired` holds an app of the Deployment. */
function inDeployment(desired: DeviceDesired | undefined, name: string): boolean {
  for (const app in desired) if (desired[app]!.deployment === name) return true;
  return false;
}

/** Deployment names in the order statuses are listed. */
function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
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

/**
 * The Apps as devices get them. A container app carries this region's container policy (Region
 * spec.containers, and --registry-mirror), so its devices can refuse what the Region does not allow.
 */
export function catalogOf(fleet: LoadedFleet, region?: string, registryMirror?: string): AppCatalog {
  const catalog: AppCatalog = {};
  const policy = { ...(region !== undefined ? fleet.regions.get(region)?.spec.containers : undefined) };
  if (registryMirror && !policy.registryMirror) policy.registryMirror = registryMirror;
  for (const [name, app] of fleet.apps) {
    const runtime = app.spec.runtime;
    catalog[name] = runtime?.type === 'container' ? { ...app.spec, runtime: { ...runtime, regionPolicy: policy } } : app.spec;
  }
  return catalog;
}
