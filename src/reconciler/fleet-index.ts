import type { Logger } from 'pino';
import { CascadeError } from '../core/errors.js';
import type { AppReport, DeviceDesired, DeviceId, Labels } from '../core/types.js';
import { sameDesired } from '../plan/hand-out.js';
import type { HaltRevert, RolloutState } from '../plan/rollout/types.js';
import type { DeviceCounts, DeviceState } from '../protocol/region-status.js';
import type { DeviceIdentityStore, PendingDevice } from '../storage/device-identity-store.js';
import type { IndexRows, StateBatch } from '../storage/region-state-store.js';
import { deviceState } from './region-status.js';
import type { AppCatalog, DeviceRecord, HandedState, RevisionRecord, StateStore } from './state-store.js';

/** The durable store under the index: the StateStore plus the bulk read and the batched write. */
export interface DurableStateStore extends StateStore, DeviceIdentityStore {
  loadIndexRows(): IndexRows;
  writeBatch(batch: StateBatch): void;
  writeResolvedRows(rows: Iterable<readonly [DeviceId, DeviceDesired]>): void;
  recordAppliedAfterRows(revision: string, unresolved: Iterable<DeviceId>, catalog: AppCatalog, at: number): void;
}

export interface FleetIndexOptions {
  durable: DurableStateStore;
  clock: () => number;
  /** The region's one offline clock; read at each use, since the fleet repository may set it. */
  offlineAfterMs: () => number;
  log: Logger;
  /** How long reports wait in memory before they are written, in one transaction (a pass writes them sooner). */
  reportFlushMs?: number;
  /** How long last-seen times of polls wait in memory before they are written. */
  seenFlushMs?: number;
  /** How long enrolments wait in memory to be written together (their answers wait for the write: `whenWritten`). */
  enrolFlushMs?: number;
}

interface Entry {
  record: DeviceRecord;
  tokenHash: string;
  /** Has the device reported at least once (an empty report counts)? Nothing is handed before. */
  reported: boolean;
  handed: HandedState | null;
  /** What git asks of it by the applied revision; undefined while unresolved or revoked. */
  resolved: DeviceDesired | undefined;
  /** Its state as counted in `counts`; null while revoked (not counted). */
  state: DeviceState | null;
  /** The highest report `seq` applied (report-order.ts); -1: none. */
  seq: number;
}

/** One difference between the index and a full recount from the durable store. */
export interface IndexDifference {
  device?: DeviceId;
  what: string;
}

const SWEEP_EVERY_MS = 1_000;
const NO_APPS: DeviceDesired = Object.freeze({}) as DeviceDesired;
const NO_REPORTS: Record<string, AppReport> = Object.freeze({}) as Record<string, AppReport>;
/** Distinct label sets or reports kept shared; past this many the table starts afresh (values stay valid). */
const MAX_SHARED = 4_096;

/**
 * Interned label sets and reports: at 50,000 devices, one object per device saying `{web: 1.0.0
 * healthy}` is most of the index's memory. Reports with a message or an attempt (failures) are kept
 * as they are. Shared values are frozen: nothing may change a device's labels or reports in place.
 */
class SharedValues {
  private readonly labelSets = new Map<string, Labels>();
  private readonly reportSets = new Map<string, Record<string, AppReport>>();
  private readonly desiredSets = new Map<string, DeviceDesired>();

  labels(labels: Labels): Labels {
    let key = '';
    for (const name in labels) key += part(name) + part(labels[name]!);
    return intern(this.labelSets, key, labels);
  }

  reports(apps: Record<string, AppReport>): Record<string, AppReport> {
    let key = '';
    for (const app in apps) {
      const r = apps[app]!;
      if (r.message !== undefined || r.attempt !== undefined) return apps;
      key += part(app) + (r.version === null ? 'n\0' : `v${part(r.version)}`) + part(r.state);
    }
    if (key === '') return NO_REPORTS;
    return intern(this.reportSets, key, apps);
  }

  /** What devices are handed: during a rollout, thousands get the same. */
  desired(apps: DeviceDesired): DeviceDesired {
    let key = '';
    for (const app in apps) {
      const d = apps[app]!;
      key += part(app) + part(d.version) + part(d.deployment) + `${d.attempt ?? 0}\0`;
    }
    if (key === '') return NO_APPS;
    return intern(this.desiredSets, key, apps);
  }
}

/**
 * Keys join names and values with NUL. A name or value holding a NUL itself (only hostile input has one)
 * could spell another set's key, so it poisons the key: such a value is kept as it is, never shared
 * (a legitimate key that happens to hold the marker is merely not shared either).
 */
const AMBIGUOUS = '\0\0ambiguous';

function part(text: string): string {
  return text.includes('\0') ? AMBIGUOUS : `${text}\0`;
}

function intern<T extends object>(table: Map<string, T>, key: string, value: T): T {
  if (key.includes(AMBIGUOUS)) return value;
  const known = table.get(key);
  if (known) return known;
  if (table.size >= MAX_SHARED) table.clear();
  const copy = Object.freeze(structuredClone(value));
  table.set(key, copy);
  return copy;
}

/**
 * The region's working state in memory, indexed, loaded once from the durable store at start and kept
 * up to date by the events that change it: enrolments, reports, polls, revocations, resolutions and
 * hand-outs. SQLite stays the durable record: enrolments, revocations and hand-outs are written at
 * once, reports and last-seen times in batches (a pass writes pending reports in its hand-out
 * transaction), so a poll never writes and a burst of reports costs a few transactions.
 *
 * It implements StateStore, so routes and transports read devices, tokens and handed states from
 * memory. Beside it, it keeps what a pass and the status need, so that neither walks the fleet:
 * - per device its resolved desired state, handed state and counted state (converged, updating...);
 * - per Deployment the devices resolved to it;
 * - the devices that changed since the last pass (`takeDirty`) and the Deployments whose members did;
 * - the device counts by state, kept as events change them (offline transitions by `sweep`).
 *
 * `verify` compares all of it against a full recount from the durable store; a difference is a bug.
 */
export class FleetIndex implements StateStore {
  private readonly durable: DurableStateStore;
  private readonly entries = new Map<DeviceId, Entry>();
  /** One frozen copy of each label set and report many devices share (most of a fleet says the same). */
  private readonly shared = new SharedValues();
  private readonly byToken = new Map<string, DeviceId>();
  private readonly members = new Map<string, Set<DeviceId>>();
  private sorted: DeviceRecord[] | null = null;
  private dirty = new Set<DeviceId>();
  private unresolved = new Set<DeviceId>();
  private touchedDeployments = new Set<string>();
  private readonly counts: DeviceCounts = { total: 0, converged: 0, new: 0, updating: 0, pending: 0, failed: 0, offline: 0 };
  private revision: RevisionRecord;
  private rollouts: Map<string, RolloutState>;
  private updatesSentTotal: number;
  private pendingReports = new Map<DeviceId, { id: DeviceId; apps: Record<string, AppReport>; at: number; labels?: Labels }>();
  private pendingSeen = new Map<DeviceId, number>();
  // Identity writes buffered for the next batch: enrolments, keys, report sequence numbers, approval requests.
  private pendingEnrolments = new Map<DeviceId, { id: DeviceId; labels: Labels; tokenHash: string; at: number }>();
  private pendingKeys = new Map<DeviceId, string | null>();
  private pendingSeqs = new Map<DeviceId, number | null>();
  private pendingApprovals = new Map<DeviceId, { id: DeviceId; labels: Labels; publicKey: string | null; at: number }>();
  /** Callers waiting for what is buffered now to be written (an enrolment answers only once it is durable). */
  private writeWaiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  private enrolTimer: NodeJS.Timeout | null = null;
  private reportTimer: NodeJS.Timeout | null = null;
  private seenTimer: NodeJS.Timeout | null = null;
  private isConnected: (id: DeviceId) => boolean = () => false;
  /** A device silent longer than this may be offline for some rollout: a poll after such a silence marks it dirty. */
  private quietMs = Infinity;
  private closed = false;
  private resolver: ((device: DeviceRecord) => DeviceDesired) | null = null;
  private lastSweep = -Infinity;
  /** Operator retries not yet taken by a pass, and the halt reverts: read from the durable store once. */
  private retryRequests: Map<string, number> | null = null;
  private reverts: Map<string, { halt: string; record: HaltRevert }> | null = null;

  constructor(private readonly options: FleetIndexOptions) {
    this.durable = options.durable;
    const rows = this.durable.loadIndexRows();
    this.revision = this.durable.getRevision();
    this.rollouts = rows.rollouts;
    this.updatesSentTotal = rows.updatesSent;
    const now = options.clock();
    for (const device of rows.devices) {
      const { tokenHash, reportedAt, reportSeq, ...loaded } = device;
      const record: DeviceRecord = { ...loaded, labels: this.shared.labels(loaded.labels), apps: this.shared.reports(loaded.apps) };
      const handed = rows.handed.get(device.id);
      const entry: Entry = { record, tokenHash, reported: reportedAt !== null, handed: handed ? { ...handed, apps: this.shared.desired(handed.apps) } : null, resolved: undefined, state: null, seq: reportSeq ?? -1 };
      this.entries.set(device.id, entry);
      if (!record.revoked) {
        this.byToken.set(tokenHash, device.id);
        this.unresolved.add(device.id);
      }
      this.recount(entry, now);
    }
  }

  /**
   * How to resolve one device by the applied revision (the reconciler sets it with each fleet): a device
   * that enrols or changes labels is resolved at once, so it is never counted against an empty desired state.
   */
  resolveWith(resolve: ((device: DeviceRecord) => DeviceDesired) | null): void {
    this.resolver = resolve;
  }

  private resolveNow(id: DeviceId): void {
    const entry = this.entries.get(id);
    if (this.resolver && entry && !entry.record.revoked) this.setResolved(id, this.resolver(entry.record));
    else this.unresolved.add(id);
  }

  /** Devices connected now (an open long poll, an MQTT session) count as seen now. */
  setConnectedCheck(isConnected: (id: DeviceId) => boolean): void {
    this.isConnected = isConnected;
  }

  // revisions

  getRevision(): RevisionRecord {
    return this.revision;
  }

  recordAttempt(revision: string, errors: string[], at: number): void {
    this.durable.recordAttempt(revision, errors, at);
    this.revision = this.durable.getRevision();
  }

  /** `apply: false` leaves the resolution to the caller (applyResolution, or setResolved in slices). */
  recordApplied(revision: string, resolved: Map<DeviceId, DeviceDesired>, catalog: AppCatalog, at: number, apply = true): void {
    this.durable.recordApplied(revision, resolved, catalog, at);
    this.revision = this.durable.getRevision();
    if (apply) this.applyResolution(resolved);
  }

  /**
   * recordApplied (without applying the resolution to the index) in slices: the resolution's rows in
   * transactions of `slice` devices with `pause` (a turn of the event loop) between, then the revision.
   */
  async recordAppliedInSlices(revision: string, resolved: ReadonlyMap<DeviceId, DeviceDesired>, catalog: AppCatalog, at: number, pause: () => Promise<void>, slice: number): Promise<void> {
    let rows: Array<readonly [DeviceId, DeviceDesired]> = [];
    for (const row of resolved) {
      rows.push(row);
      if (rows.length < slice) continue;
      this.durable.writeResolvedRows(rows);
      rows = [];
      await pause();
    }
    const unresolved: DeviceId[] = [];
    for (const id of this.entries.keys()) if (!resolved.has(id)) unresolved.push(id);
    this.durable.writeResolvedRows(rows);
    this.durable.recordAppliedAfterRows(revision, unresolved, catalog, at);
    this.revision = this.durable.getRevision();
  }

  getCatalog(): AppCatalog {
    return this.durable.getCatalog();
  }

  getResolved(): Map<DeviceId, DeviceDesired> {
    const resolved = new Map<DeviceId, DeviceDesired>();
    for (const [id, entry] of this.entries) if (entry.resolved) resolved.set(id, entry.resolved);
    return resolved;
  }

  // devices

  /**
   * Enrols a device in memory at once; the row is written with the next batch (within `enrolFlushMs`,
   * one transaction for every enrolment of that window). `whenWritten` waits for it.
   */
  enrollDevice(id: DeviceId, labels: Labels, tokenHash: string, at: number): void {
    this.pendingEnrolments.set(id, { id, labels, tokenHash, at });
    this.scheduleEnrolFlush();
    const entry = this.entries.get(id);
    if (entry) {
      this.byToken.delete(entry.tokenHash);
      entry.tokenHash = tokenHash;
      entry.record.labels = this.shared.labels(labels);
      if (!entry.record.revoked) this.byToken.set(tokenHash, id);
    } else {
      const record: DeviceRecord = { id, labels: this.shared.labels(labels), enrolledAt: at, lastSeen: null, apps: NO_REPORTS, revoked: false };
      const created: Entry = { record, tokenHash, reported: false, handed: null, resolved: undefined, state: null, seq: -1 };
      this.entries.set(id, created);
      this.byToken.set(tokenHash, id);
      this.sorted = null;
      this.recount(created, this.options.clock());
    }
    this.dirty.add(id);
    this.resolveNow(id);
  }

  getTokenHash(id: DeviceId): string | null {
    return this.entries.get(id)?.tokenHash ?? null;
  }

  deviceIdForTokenHash(tokenHash: string): DeviceId | null {
    return this.byToken.get(tokenHash) ?? null;
  }

  recordReport(id: DeviceId, apps: Record<string, AppReport>, at: number, labels?: Labels): void {
    const entry = this.entries.get(id);
    if (!entry) throw new CascadeError('device-unknown', `device ${id} is not enrolled; it must enrol before it reports`, { deviceId: id });
    const relabelled = labels !== undefined && !sameLabels(labels, entry.record.labels);
    // A report that says what the last one said (a heartbeat) is a sign of life, nothing more.
    if (entry.reported && !relabelled && sameReports(apps, entry.record.apps)) {
      this.markSeen(id, at);
      return;
    }
    entry.record.apps = this.shared.reports(apps);
    entry.record.lastSeen = at;
    entry.reported = true;
    if (relabelled) {
      entry.record.labels = this.shared.labels(labels);
      this.resolveNow(id);
    }
    this.pendingReports.set(id, labels ? { id, apps, at, labels } : { id, apps, at });
    this.pendingSeen.delete(id);
    this.recount(entry, this.options.clock());
    this.dirty.add(id);
    this.scheduleReportFlush();
  }

  getDevice(id: DeviceId): DeviceRecord | null {
    return this.entries.get(id)?.record ?? null;
  }

  revokeDevice(id: DeviceId, at: number): boolean {
    const entry = this.entries.get(id);
    this.flush();
    const known = this.durable.revokeDevice(id, at);
    if (!entry) return known;
    entry.record.revoked = true;
    this.byToken.delete(entry.tokenHash);
    this.setResolved(id, undefined);
    this.unresolved.delete(id);
    this.recount(entry, this.options.clock());
    this.dirty.add(id);
    return true;
  }

  /** The shortest offlineAfter of the rollouts (see markSeen). */
  setQuietThreshold(ms: number): void {
    this.quietMs = ms;
  }

  /** A poll: the device is alive. Written with the next batch, never per poll. */
  markSeen(id: DeviceId, at: number): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    const before = entry.record.lastSeen;
    entry.record.lastSeen = at;
    // Back after a silence some rollout counts as offline: its rollout looks at it again.
    if (before === null || at - before > this.quietMs) this.dirty.add(id);
    this.pendingSeen.set(id, at);
    this.scheduleSeenFlush();
    if (entry.state === 'offline') this.presenceChanged(id);
  }

  /** The devices in id order (the same array until a device enrols; records are updated in place). */
  listDevices(): DeviceRecord[] {
    if (!this.sorted) {
      // The ids sorted as plain strings (UTF-16 code units, as `<` compares them): V8 sorts an array of
      // strings without calling back into JavaScript, several times faster than records by comparator.
      const ids = [...this.entries.keys()].sort();
      this.sorted = ids.map((id) => this.entries.get(id)!.record);
    }
    return this.sorted;
  }

  // what was handed out

  handOut(changes: Map<DeviceId, DeviceDesired>, revision: string, at: number, rollouts?: ReadonlyMap<string, RolloutState>): number {
    let updates = 0;
    const rows: Array<{ deviceId: DeviceId; state: HandedState }> = [];
    for (const [deviceId, apps] of changes) {
      const entry = this.entries.get(deviceId);
      if (!entry) continue;
      const previous = entry.handed;
      if (previous && sameDesired(previous.apps, apps)) continue;
      const before = previous?.apps ?? NO_APPS;
      for (const app in apps) if (before[app]?.version !== apps[app]!.version) updates++;
      const state: HandedState = { revision, apps: this.shared.desired(apps), generation: (previous?.generation ?? 0) + 1 };
      rows.push({ deviceId, state });
    }
    this.writeBatch({ at, ...this.drainIdentity(), reports: this.drainReports(), seen: this.drainSeen(), handed: rows, updates, rollouts });
    // Memory follows the disk: only once the transaction is written.
    const now = this.options.clock();
    for (const { deviceId, state } of rows) {
      const entry = this.entries.get(deviceId)!;
      entry.handed = state;
      this.recount(entry, now);
    }
    if (rollouts) this.rollouts = new Map(rollouts);
    this.updatesSentTotal += updates;
    return updates;
  }

  // rollout verbs: rare operator requests and halt reverts, written through to the durable store at
  // once and kept in memory, so a pass reads no table for them

  requestRetry(deployment: string, at: number): void {
    this.durable.requestRetry(deployment, at);
    this.retries().set(deployment, at);
  }

  pendingRetries(): Map<string, number> {
    return new Map(this.retries());
  }

  clearRetries(deployments: Iterable<string>): void {
    const names = [...deployments];
    this.durable.clearRetries(names);
    for (const name of names) this.retries().delete(name);
  }

  claimHaltRevert(deployment: string, halt: string, record: HaltRevert): boolean {
    const claimed = this.durable.claimHaltRevert(deployment, halt, record);
    this.reverts = null;
    return claimed;
  }

  recordHaltRevert(deployment: string, halt: string, record: HaltRevert): void {
    this.durable.recordHaltRevert(deployment, halt, record);
    this.reverts = null;
  }

  haltReverts(): Map<string, { halt: string; record: HaltRevert }> {
    this.reverts ??= this.durable.haltReverts();
    return new Map(this.reverts);
  }

  private retries(): Map<string, number> {
    this.retryRequests ??= this.durable.pendingRetries();
    return this.retryRequests;
  }

  getRolloutStates(): Map<string, RolloutState> {
    return new Map(this.rollouts);
  }

  getHanded(id: DeviceId): HandedState | null {
    return this.entries.get(id)?.handed ?? null;
  }

  listHanded(): Map<DeviceId, HandedState> {
    const handed = new Map<DeviceId, HandedState>();
    for (const [id, entry] of this.entries) if (entry.handed) handed.set(id, entry.handed);
    return handed;
  }

  updatesSent(): number {
    return this.updatesSentTotal;
  }

  // device identity and report order: what enrolments and reports write goes with the batches; the
  // rare reads (a re-enrolment's bound key, approval requests) go to the store after writing what is buffered

  getDeviceKey(id: DeviceId): string | null {
    const pending = this.pendingKeys.get(id);
    if (pending !== undefined) return pending;
    return this.durable.getDeviceKey(id);
  }

  setDeviceKey(id: DeviceId, publicKey: string | null): boolean {
    if (!this.entries.has(id)) return false;
    this.pendingKeys.set(id, publicKey);
    this.scheduleEnrolFlush();
    return true;
  }

  /** Report order in memory (report-order.ts): the accepted `seq` is written with the report's batch. */
  acceptReportSeq(id: DeviceId, seq: number): boolean {
    const entry = this.entries.get(id);
    if (!entry || seq <= entry.seq) return false;
    entry.seq = seq;
    this.pendingSeqs.set(id, seq);
    this.scheduleReportFlush();
    return true;
  }

  clearReportSeq(id: DeviceId): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    entry.seq = -1;
    this.pendingSeqs.set(id, null);
    this.scheduleEnrolFlush();
  }

  upsertPendingDevice(id: DeviceId, labels: Labels, publicKey: string | null, at: number): void {
    this.pendingApprovals.set(id, { id, labels, publicKey, at });
    this.scheduleEnrolFlush();
  }

  getPendingDevice(id: DeviceId): PendingDevice | null {
    if (this.pendingApprovals.has(id)) this.flush();
    return this.durable.getPendingDevice(id);
  }

  listPendingDevices(): PendingDevice[] {
    if (this.pendingApprovals.size > 0) this.flush();
    return this.durable.listPendingDevices();
  }

  deletePendingDevice(id: DeviceId): boolean {
    this.flush();
    return this.durable.deletePendingDevice(id);
  }

  /**
   * Resolves once everything buffered now is in the durable store (rejects if that write fails): an
   * enrolment answers its device only then, so a token handed out is never lost to a crash.
   */
  whenWritten(): Promise<void> {
    if (!this.hasBuffered()) return Promise.resolve();
    if (this.closed) {
      this.flush();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.writeWaiters.push({ resolve, reject });
      this.scheduleEnrolFlush();
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.flush();
    this.durable.close();
  }

  // what a pass and the status read

  /** Devices whose report, enrolment, resolution, revocation or presence changed since the last call. */
  /** Whether the device changed since the last pass took the changed devices (takeDirty). */
  isDirty(id: DeviceId): boolean {
    return this.dirty.has(id);
  }

  takeDirty(): Set<DeviceId> {
    const dirty = this.dirty;
    this.dirty = new Set();
    return dirty;
  }

  /** Devices whose labels changed or that enrolled since the last call: they need resolving. */
  takeUnresolved(): Set<DeviceId> {
    const unresolved = this.unresolved;
    this.unresolved = new Set();
    return unresolved;
  }

  /** Deployments that gained or lost devices since the last call. */
  takeTouchedDeployments(): Set<string> {
    const touched = this.touchedDeployments;
    this.touchedDeployments = new Set();
    return touched;
  }

  /** The device ids resolved to a Deployment (live set: do not change it). */
  membersOf(deployment: string): ReadonlySet<DeviceId> {
    return this.members.get(deployment) ?? new Set();
  }

  /** Deployments that have at least one device resolved to them. */
  deploymentsWithMembers(): IterableIterator<string> {
    return this.members.keys();
  }

  allDeviceIds(): IterableIterator<DeviceId> {
    return this.entries.keys();
  }

  resolvedOf(id: DeviceId): DeviceDesired | undefined {
    return this.entries.get(id)?.resolved;
  }

  hasReported(id: DeviceId): boolean {
    return this.entries.get(id)?.reported ?? false;
  }

  isRevoked(id: DeviceId): boolean {
    return this.entries.get(id)?.record.revoked ?? false;
  }

  /** The device as a rollout sees it now: seen now while connected. */
  rolloutView(id: DeviceId, now: number): DeviceRecord | undefined {
    const record = this.entries.get(id)?.record;
    if (!record) return undefined;
    return this.isConnected(id) ? { ...record, lastSeen: now } : record;
  }

  /** What git asks of each device, as a read-only map over the index (no copy). */
  readonly resolvedView: ReadonlyMap<DeviceId, DeviceDesired> = new EntryView(this.entries, (e) => e.resolved);
  /** What each device was last handed (its apps), as a read-only map over the index (no copy). */
  readonly handedView: ReadonlyMap<DeviceId, DeviceDesired> = new EntryView(this.entries, (e) => e.handed?.apps);

  /** Sets what git asks of one device; a change marks it dirty and touches its Deployments. */
  setResolved(id: DeviceId, desired: DeviceDesired | undefined): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    if (entry.record.revoked) desired = undefined;
    const before = entry.resolved;
    if (before === desired || (before && desired && sameDesired(before, desired))) return;
    for (const app in before ?? {}) {
      const deployment = before![app]!.deployment;
      if (desired?.[app]?.deployment === deployment) continue;
      this.members.get(deployment)?.delete(id);
      if (this.members.get(deployment)?.size === 0) this.members.delete(deployment);
      this.touchedDeployments.add(deployment);
    }
    for (const app in desired ?? {}) {
      const deployment = desired![app]!.deployment;
      if (before?.[app]?.deployment === deployment) continue;
      let set = this.members.get(deployment);
      if (!set) this.members.set(deployment, (set = new Set()));
      set.add(id);
      this.touchedDeployments.add(deployment);
    }
    entry.resolved = desired;
    this.recount(entry, this.options.clock());
    this.dirty.add(id);
  }

  /** The resolution of a whole revision: devices missing from `resolved` are asked nothing. */
  applyResolution(resolved: ReadonlyMap<DeviceId, DeviceDesired>): void {
    for (const id of this.entries.keys()) this.setResolved(id, resolved.get(id));
  }

  /** Device counts by state, maintained: O(1). */
  deviceCounts(): DeviceCounts {
    return { ...this.counts };
  }

  /** The state a device is counted in, or null when revoked or unknown. */
  stateOf(id: DeviceId): DeviceState | null {
    return this.entries.get(id)?.state ?? null;
  }

  /** The device's presence may have changed (a broker session came or went): recount it. */
  presenceChanged(id: DeviceId): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    const before = entry.state;
    this.recount(entry, this.options.clock());
    if ((before === 'offline') !== (entry.state === 'offline')) this.dirty.add(id);
  }

  /**
   * Time alone turns silent devices offline: re-checks the devices whose offline-ness may have changed
   * (a comparison per device, no allocation); those that changed are recounted and marked dirty.
   */
  sweep(now: number): void {
    // Offline is a matter of seconds to minutes: once a second is often enough.
    if (now - this.lastSweep < SWEEP_EVERY_MS && now >= this.lastSweep) return;
    this.lastSweep = now;
    const offlineAfterMs = this.options.offlineAfterMs();
    for (const [id, entry] of this.entries) {
      if (entry.state === null) continue;
      // Never reported: `new` until offlineAfter since enrolment, then offline.
      const since = entry.record.lastSeen ?? entry.record.enrolledAt;
      const stale = now - since > offlineAfterMs;
      if (stale === (entry.state === 'offline')) continue;
      // Stale but connected stays online; only then is the connection looked up.
      if (stale && this.isConnected(id)) continue;
      this.recount(entry, now);
      this.dirty.add(id);
    }
  }

  /** Writes buffered reports and last-seen times now. */
  flush(): void {
    if (this.reportTimer) clearTimeout(this.reportTimer);
    if (this.seenTimer) clearTimeout(this.seenTimer);
    this.reportTimer = null;
    this.seenTimer = null;
    if (!this.hasBuffered() && this.writeWaiters.length === 0) return;
    try {
      this.writeBatch({ at: this.options.clock(), ...this.drainIdentity(), reports: this.drainReports(), seen: this.drainSeen() });
    } catch (err) {
      this.options.log.error({ err }, 'writing buffered device enrolments and reports failed');
    }
  }

  private hasBuffered(): boolean {
    return this.pendingReports.size + this.pendingSeen.size + this.pendingEnrolments.size + this.pendingKeys.size + this.pendingSeqs.size + this.pendingApprovals.size > 0;
  }

  /** One transaction; those waiting for it hear how it went. */
  private writeBatch(batch: StateBatch): void {
    const waiters = this.writeWaiters;
    this.writeWaiters = [];
    try {
      this.durable.writeBatch(batch);
    } catch (err) {
      for (const waiter of waiters) waiter.reject(err);
      throw err;
    }
    for (const waiter of waiters) waiter.resolve();
  }

  private drainIdentity(): Pick<StateBatch, 'enrolments' | 'keys' | 'seqs' | 'pendingDevices'> {
    if (this.enrolTimer) clearTimeout(this.enrolTimer);
    this.enrolTimer = null;
    const batch = { enrolments: this.pendingEnrolments.values(), keys: this.pendingKeys.entries(), seqs: this.pendingSeqs.entries(), pendingDevices: this.pendingApprovals.values() };
    if (this.pendingEnrolments.size) this.pendingEnrolments = new Map();
    if (this.pendingKeys.size) this.pendingKeys = new Map();
    if (this.pendingSeqs.size) this.pendingSeqs = new Map();
    if (this.pendingApprovals.size) this.pendingApprovals = new Map();
    return batch;
  }

  /**
   * The full recount: reads everything back from the durable store (after writing what is buffered) and
   * recounts every device's state; each difference from the index is logged at error level (it is a
   * bug), and the index takes the recounted value. `resolve` gives the resolution of the applied
   * revision for comparison (null: not checked).
   */
  verify(resolve: ((devices: DeviceRecord[]) => ReadonlyMap<DeviceId, DeviceDesired>) | null): IndexDifference[] {
    this.flush();
    const rows = this.durable.loadIndexRows();
    const differences: IndexDifference[] = [];
    const seenIds = new Set<DeviceId>();
    for (const row of rows.devices) {
      seenIds.add(row.id);
      const entry = this.entries.get(row.id);
      if (!entry) {
        differences.push({ device: row.id, what: 'in the store, not in the index' });
        continue;
      }
      const r = entry.record;
      if (r.revoked !== row.revoked) differences.push({ device: row.id, what: `revoked ${r.revoked} in the index, ${row.revoked} in the store` });
      if (entry.tokenHash !== row.tokenHash) differences.push({ device: row.id, what: 'token hash differs' });
      if (JSON.stringify(r.labels) !== JSON.stringify(row.labels) && !sameLabels(r.labels, row.labels)) differences.push({ device: row.id, what: 'labels differ' });
      if (!sameReports(r.apps, row.apps)) differences.push({ device: row.id, what: 'reports differ' });
      const handed = rows.handed.get(row.id) ?? null;
      if ((handed?.generation ?? 0) !== (entry.handed?.generation ?? 0) || !sameDesired(handed?.apps ?? NO_APPS, entry.handed?.apps ?? NO_APPS)) {
        differences.push({ device: row.id, what: `handed generation ${entry.handed?.generation ?? 0} in the index, ${handed?.generation ?? 0} in the store` });
      }
    }
    for (const id of this.entries.keys()) if (!seenIds.has(id)) differences.push({ device: id, what: 'in the index, not in the store' });
    if (rows.updatesSent !== this.updatesSentTotal) differences.push({ what: `updatesSent ${this.updatesSentTotal} in the index, ${rows.updatesSent} in the store` });
    if (resolve) {
      const fresh = resolve(this.listDevices().filter((d) => !d.revoked));
      for (const [id, entry] of this.entries) {
        const want = fresh.get(id);
        if (this.unresolved.has(id)) continue;
        if (!sameDesired(want ?? NO_APPS, entry.resolved ?? NO_APPS)) {
          differences.push({ device: id, what: 'resolved desired state differs from a full resolution' });
          this.setResolved(id, want);
        }
      }
    }
    const now = this.options.clock();
    const recounted: DeviceCounts = { total: 0, converged: 0, new: 0, updating: 0, pending: 0, failed: 0, offline: 0 };
    for (const [id, entry] of this.entries) {
      if (entry.record.revoked) continue;
      const state = this.stateNow(entry, now);
      recounted.total++;
      recounted[state]!++;
      if (state !== entry.state) {
        // Offline transitions since the last sweep are not differences; anything else is.
        if (state !== 'offline' && entry.state !== 'offline') differences.push({ device: id, what: `counted ${entry.state}, recounted ${state}` });
        this.recount(entry, now);
        this.dirty.add(id);
      }
    }
    for (const key of Object.keys(recounted) as Array<keyof DeviceCounts>) {
      if (recounted[key] !== this.counts[key]) differences.push({ what: `${key}: ${this.counts[key]} counted, ${recounted[key]} recounted` });
      this.counts[key] = recounted[key]!;
    }
    for (const difference of differences) {
      this.options.log.error({ device: difference.device, difference: difference.what }, `fleet index differs from a full recount: ${difference.device ?? ''} ${difference.what}`);
    }
    return differences;
  }

  private stateNow(entry: Entry, now: number): DeviceState {
    const record = entry.record;
    const connected = this.isConnected(record.id);
    const seen = connected && record.lastSeen === null ? { ...record, lastSeen: now } : record;
    const state = deviceState(seen, entry.resolved ?? NO_APPS, now, connected ? Infinity : this.options.offlineAfterMs(), entry.handed?.apps);
    // Not resolved yet (enrolled or relabelled since the last pass): what git asks is not known, so it
    // is not converged; the next pass resolves it and counts it again.
    if (state === 'converged' && entry.resolved === undefined && this.unresolved.has(record.id)) return 'pending';
    return state;
  }

  /** Moves the device to the count of its current state. */
  private recount(entry: Entry, now: number): void {
    const next = entry.record.revoked ? null : this.stateNow(entry, now);
    if (next === entry.state) return;
    if (entry.state !== null) {
      this.counts[entry.state]!--;
      this.counts.total--;
    }
    if (next !== null) {
      this.counts[next]!++;
      this.counts.total++;
    }
    entry.state = next;
  }

  private drainReports(): Array<{ id: DeviceId; apps: Record<string, AppReport>; at: number; labels?: Labels }> {
    if (this.pendingReports.size === 0) return [];
    const reports = [...this.pendingReports.values()];
    this.pendingReports = new Map();
    if (this.reportTimer) clearTimeout(this.reportTimer);
    this.reportTimer = null;
    return reports;
  }

  private drainSeen(): Array<[DeviceId, number]> {
    if (this.pendingSeen.size === 0) return [];
    const seen = [...this.pendingSeen];
    this.pendingSeen = new Map();
    if (this.seenTimer) clearTimeout(this.seenTimer);
    this.seenTimer = null;
    return seen;
  }

  private scheduleEnrolFlush(): void {
    if (this.enrolTimer || this.closed) return;
    this.enrolTimer = setTimeout(() => {
      this.enrolTimer = null;
      this.flush();
    }, this.options.enrolFlushMs ?? 10);
  }

  private scheduleReportFlush(): void {
    if (this.reportTimer || this.closed) return;
    this.reportTimer = setTimeout(() => {
      this.reportTimer = null;
      this.flush();
    }, this.options.reportFlushMs ?? 200);
  }

  private scheduleSeenFlush(): void {
    if (this.seenTimer || this.closed) return;
    this.seenTimer = setTimeout(() => {
      this.seenTimer = null;
      this.flush();
    }, this.options.seenFlushMs ?? 5_000);
    this.seenTimer.unref();
  }
}

/** A read-only Map over the index's entries: one field of each, entries without it left out. */
class EntryView<V> implements ReadonlyMap<DeviceId, V> {
  constructor(
    private readonly source: Map<DeviceId, Entry>,
    private readonly pick: (entry: Entry) => V | undefined,
  ) {}
  get(id: DeviceId): V | undefined {
    const entry = this.source.get(id);
    return entry ? this.pick(entry) : undefined;
  }
  has(id: DeviceId): boolean {
    return this.get(id) !== undefined;
  }
  get size(): number {
    let n = 0;
    for (const entry of this.source.values()) if (this.pick(entry) !== undefined) n++;
    return n;
  }
  *pairs(): IterableIterator<[DeviceId, V]> {
    for (const [id, entry] of this.source) {
      const value = this.pick(entry);
      if (value !== undefined) yield [id, value];
    }
  }
  entries(): MapIterator<[DeviceId, V]> {
    return this.pairs() as MapIterator<[DeviceId, V]>;
  }
  *keys(): MapIterator<DeviceId> {
    for (const [id] of this.pairs()) yield id;
  }
  *values(): MapIterator<V> {
    for (const [, value] of this.pairs()) yield value;
  }
  forEach(callback: (value: V, key: DeviceId, map: ReadonlyMap<DeviceId, V>) => void): void {
    for (const [id, value] of this.pairs()) callback(value, id, this);
  }
  [Symbol.iterator](): MapIterator<[DeviceId, V]> {
    return this.entries();
  }
}

function sameLabels(a: Labels, b: Labels): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) if (a[key] !== b[key]) return false;
  return true;
}

function sameReports(a: Record<string, AppReport>, b: Record<string, AppReport>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) {
    const x = a[key]!;
    const y = b[key];
    if (!y || x.version !== y.version || x.state !== y.state || (x.message ?? null) !== (y.message ?? null)) return false;
  }
  return true;
}
