import type { Logger } from 'pino';
import type { DeviceDesired, DeviceId, InventoryDevice } from '../core/types.js';
import { isCascadeError } from '../core/errors.js';
import type { LoadedFleet } from '../desired/model.js';
import type { FleetLoader } from '../desired/load.js';
import { formatProblem } from '../desired/format-problem.js';
import { resolveDesired } from '../desired/resolve.js';
import { computeHandOut } from '../plan/hand-out.js';
import type { FleetSource } from '../source/fleet-source.js';
import { readGitSnapshot, type GitSnapshotState } from '../source/git-snapshot.js';
import type { AppCatalog, DeviceRecord, StateStore } from '../region/state-store.js';
import type { PassRequest } from './pass-scheduler.js';
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

  async runPass(request: PassRequest): Promise<void> {
    const { metrics, log, clock } = this.options;
    const started = clock();
    try {
      if (request.fetch) await this.refreshDesired();
      if (!this.fleet) await this.restoreLastGood();
      if (this.fleet) this.dispatch(this.fleet);
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
    const resolved = resolveDesired(result.fleet, this.inventory(store.listDevices())).desired;
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
      if (result.problems.length === 0) this.fleet = result.fleet;
      else log.error({ revision: applied }, 'the last good revision no longer loads; devices keep what they were handed');
    } catch (err) {
      log.error({ err, revision: applied }, 'cannot read the last good revision from disk; devices keep what they were handed');
    }
  }

  private dispatch(fleet: LoadedFleet): void {
    const { store, clock, metrics, onHandOut } = this.options;
    const devices = store.listDevices();
    const { desired } = resolveDesired(fleet, this.inventory(devices));
    const handed = new Map<DeviceId, DeviceDesired>();
    for (const [id, state] of store.listHanded()) handed.set(id, state.apps);
    const installed = new Map<DeviceId, Record<string, string>>();
    for (const device of devices) installed.set(device.id, installedVersions(device));
    const changes = computeHandOut({ resolved: desired, handed, installed });
    if (changes.size === 0) return;
    const revision = fleet.revision ?? store.getRevision().applied ?? 'unknown';
    const count = store.handOut(changes, revision, clock());
    metrics.updatesSent.inc(count);
    onHandOut(changes.keys());
  }

  private inventory(devices: DeviceRecord[]): InventoryDevice[] {
    return devices
      .filter((d) => !d.revoked)
      .map((d) => ({ id: d.id, region: this.options.region, labels: d.labels, apps: installedVersions(d) }));
  }
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
