import Database from 'better-sqlite3';
import { CascadeError } from '../core/errors.js';
import { backupStateDatabase, openStateDatabase, optimizeStateDatabase } from './open-state-database.js';
import type { AppHealth, AppReport, DeviceDesired, DeviceId, Labels } from '../core/types.js';
import type { HaltRevert, RolloutState } from '../plan/rollout/types.js';
import { stableJson } from '../core/stable-json.js';
import type { AppCatalog, DeviceRecord, HandedState, RevisionRecord } from './region-records.js';
import type { DeviceIdentityStore, PendingDevice } from './device-identity-store.js';

/**
 * Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
 * Append new steps, never edit old ones: existing data dirs have run them.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    applied TEXT,
    applied_at INTEGER,
    attempted TEXT,
    attempted_at INTEGER,
    errors TEXT NOT NULL DEFAULT '[]',
    catalog TEXT NOT NULL DEFAULT '{}'
  );
  INSERT INTO meta (id) VALUES (1);

  CREATE TABLE resolved (
    device_id TEXT PRIMARY KEY,
    apps TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_seen INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
  );
  CREATE UNIQUE INDEX devices_token_hash ON devices (token_hash);

  CREATE TABLE reports (
    device_id TEXT NOT NULL,
    app TEXT NOT NULL,
    version TEXT,
    state TEXT NOT NULL,
    message TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, app)
  ) WITHOUT ROWID;

  CREATE TABLE handed (
    device_id TEXT PRIMARY KEY,
    revision TEXT NOT NULL,
    apps TEXT NOT NULL,
    generation INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO counters (name, value) VALUES ('updates_sent', 0);
  `,
  `
  CREATE TABLE rollouts (
    deployment TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // When the device first reported (an empty report counts): no desired state is handed before it.
  // Devices already handed something, or with reports, have reported.
  `
  ALTER TABLE devices ADD COLUMN reported_at INTEGER;
  UPDATE devices SET reported_at = COALESCE(last_seen, enrolled_at)
    WHERE id IN (SELECT device_id FROM handed) OR id IN (SELECT device_id FROM reports);
  `,
  // Device identity bound to a key, report order, and devices waiting for approval (device-identity-store.ts).
  `
  ALTER TABLE devices ADD COLUMN public_key TEXT;
  ALTER TABLE devices ADD COLUMN report_seq INTEGER;
  CREATE TABLE pending_devices (
    id TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    public_key TEXT,
    requested_at INTEGER NOT NULL,
    last_attempt_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // Rollout verbs: the attempt a failure report is about, operator retries, what a region pushed on a halt.
  `
  ALTER TABLE reports ADD COLUMN attempt INTEGER;
  CREATE TABLE rollout_retries (
    deployment TEXT PRIMARY KEY,
    requested_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE halt_reverts (
    deployment TEXT NOT NULL,
    halt TEXT NOT NULL,
    record TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (deployment, halt)
  ) WITHOUT ROWID;
  `,
];

export const STATE_FILE_NAME = 'state.sqlite';

interface MetaRow {
  applied: string | null;
  applied_at: number | null;
  attempted: string | null;
  attempted_at: number | null;
  errors: string;
  catalog: string;
}
interface DeviceRow {
  id: string;
  labels: string;
  enrolled_at: number;
  last_seen: number | null;
  revoked: number;
}
interface ReportRow {
  device_id: string;
  app: string;
  version: string | null;
  state: string;
  message: string | null;
  attempt: number | null;
}
interface HandedRow {
  device_id: string;
  revision: string;
  apps: string;
  generation: number;
}


/**
 * stableJson, once per object: devices share their desired states (resolution by label set, the
 * index's shared hand-outs), so 50,000 rows are a handful of distinct objects.
 */
function jsonOnce(): (value: object) => string {
  const known = new Map<object, string>();
  return (value) => {
    let json = known.get(value);
    if (json === undefined) known.set(value, (json = stableJson(value)));
    return json;
  };
}

function toReport(row: ReportRow): AppReport {
  const report: AppReport = { version: row.version, state: row.state as AppHealth };
  if (row.message !== null) report.message = row.message;
  if (row.attempt) report.attempt = row.attempt;
  return report;
}

function toDevice(row: DeviceRow, apps: Record<string, AppReport>): DeviceRecord {
  return {
    id: row.id,
    labels: JSON.parse(row.labels) as Labels,
    enrolledAt: row.enrolled_at,
    lastSeen: row.last_seen,
    apps,
    revoked: row.revoked !== 0,
  };
}

/** What loadIndexRows returns. */
export interface IndexRows {
  devices: Array<DeviceRecord & { tokenHash: string; reportedAt: number | null; reportSeq: number | null }>;
  handed: Map<DeviceId, HandedState>;
  rollouts: Map<string, RolloutState>;
  updatesSent: number;
}

/** What writeBatch writes in one transaction. */
export interface StateBatch {
  at: number;
  /** Enrolments (and re-enrolments), written first: the rest of the batch may be about these devices. */
  enrolments?: Iterable<{ id: DeviceId; labels: Labels; tokenHash: string; at: number }>;
  /** Device keys bound (a string) or released (null) at enrolment or approval. */
  keys?: Iterable<[DeviceId, string | null]>;
  /** The highest report `seq` applied per device (null: forgotten, a new enrolment). */
  seqs?: Iterable<[DeviceId, number | null]>;
  /** Devices asking to enrol under `--enrollment-policy approve`. */
  pendingDevices?: Iterable<{ id: DeviceId; labels: Labels; publicKey: string | null; at: number }>;
  reports?: Iterable<{ id: DeviceId; apps: Record<string, AppReport>; at: number; labels?: Labels }>;
  seen?: Iterable<[DeviceId, number]>;
  handed?: Iterable<{ deviceId: DeviceId; state: HandedState }>;
  updates?: number;
  rollouts?: ReadonlyMap<string, RolloutState>;
}

/** The region's state in `<data>/state.sqlite` (WAL). Each mutating method is one transaction. */
export class SqliteStateStore implements DeviceIdentityStore {
  readonly path: string;
  private readonly db: Database.Database;
  private catalogCache: AppCatalog | null = null;
  private readonly statements;

  /** Opens (creating if needed) `<dataDir>/state.sqlite` and brings its schema up to date. */
  static open(dataDir: string, options: { initState?: boolean } = {}): SqliteStateStore {
    // The state is small and hot rows stay in the OS page cache: 4 MB keeps a region in its memory budget.
    const { db, path } = openStateDatabase({ dataDir, fileName: STATE_FILE_NAME, migrations: MIGRATIONS, owner: 'region', cacheKib: 4000, initState: options.initState });
    return new SqliteStateStore(db, path);
  }

  private constructor(db: Database.Database, path: string) {
    this.db = db;
    this.path = path;
    this.statements = this.prepare();
  }

  private prepare() {
    const db = this.db;
    return {
      revokeDevice: db.prepare<[string]>('UPDATE devices SET revoked = 1 WHERE id = ?'),
      allRollouts: db.prepare<[], { deployment: string; state: string }>('SELECT deployment, state FROM rollouts'),
      upsertRollout: db.prepare<[string, string, number]>(
        'INSERT INTO rollouts (deployment, state, updated_at) VALUES (?, ?, ?) ON CONFLICT (deployment) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at',
      ),
      deleteRollout: db.prepare<[string]>('DELETE FROM rollouts WHERE deployment = ?'),
      getMeta: db.prepare<[], MetaRow>('SELECT applied, applied_at, attempted, attempted_at, errors, catalog FROM meta WHERE id = 1'),
      setAttempt: db.prepare<[string | null, number, string]>('UPDATE meta SET attempted = ?, attempted_at = ?, errors = ? WHERE id = 1'),
      setApplied: db.prepare<[{ revision: string; at: number; catalog: string }]>(
        "UPDATE meta SET applied = @revision, applied_at = @at, attempted = @revision, attempted_at = @at, errors = '[]', catalog = @catalog WHERE id = 1",
      ),
      clearResolved: db.prepare('DELETE FROM resolved'),
      insertResolved: db.prepare<[string, string]>('INSERT INTO resolved (device_id, apps) VALUES (?, ?)'),
      upsertResolved: db.prepare<[string, string]>('INSERT INTO resolved (device_id, apps) VALUES (?, ?) ON CONFLICT (device_id) DO UPDATE SET apps = excluded.apps'),
      deleteResolved: db.prepare<[string]>('DELETE FROM resolved WHERE device_id = ?'),
      allResolved: db.prepare<[], { device_id: string; apps: string }>('SELECT device_id, apps FROM resolved'),
      upsertDevice: db.prepare<[string, string, string, number]>(
        `INSERT INTO devices (id, labels, token_hash, enrolled_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, token_hash = excluded.token_hash`,
      ),
      tokenHash: db.prepare<[string], { token_hash: string }>('SELECT token_hash FROM devices WHERE id = ?'),
      deviceByTokenHash: db.prepare<[string], { id: string }>('SELECT id FROM devices WHERE token_hash = ? AND revoked = 0'),
      device: db.prepare<[string], DeviceRow>('SELECT id, labels, enrolled_at, last_seen, revoked FROM devices WHERE id = ?'),
      allDevices: db.prepare<[], DeviceRow>('SELECT id, labels, enrolled_at, last_seen, revoked FROM devices ORDER BY id'),
      touchDevice: db.prepare<[number, string]>('UPDATE devices SET last_seen = ? WHERE id = ?'),
      markReported: db.prepare<[number, string]>('UPDATE devices SET reported_at = COALESCE(reported_at, ?) WHERE id = ?'),
      indexDevices: db.prepare<[], DeviceRow & { token_hash: string; reported_at: number | null; report_seq: number | null }>(
        'SELECT id, labels, token_hash, enrolled_at, last_seen, revoked, reported_at, report_seq FROM devices ORDER BY id',
      ),
      setSeq: db.prepare<[number | null, string]>('UPDATE devices SET report_seq = ? WHERE id = ?'),
      relabelDevice: db.prepare<[string, string]>('UPDATE devices SET labels = ? WHERE id = ?'),
      clearReports: db.prepare<[string]>('DELETE FROM reports WHERE device_id = ?'),
      insertReport: db.prepare<[string, string, string | null, string, string | null, number, number | null]>(
        'INSERT INTO reports (device_id, app, version, state, message, updated_at, attempt) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      deviceReports: db.prepare<[string], ReportRow>('SELECT device_id, app, version, state, message, attempt FROM reports WHERE device_id = ? ORDER BY app'),
      allReports: db.prepare<[], ReportRow>('SELECT device_id, app, version, state, message, attempt FROM reports ORDER BY device_id, app'),
      handed: db.prepare<[string], HandedRow>('SELECT device_id, revision, apps, generation FROM handed WHERE device_id = ?'),
      allHanded: db.prepare<[], HandedRow>('SELECT device_id, revision, apps, generation FROM handed'),
      upsertHanded: db.prepare<[string, string, string, number, number]>(
        `INSERT INTO handed (device_id, revision, apps, generation, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (device_id) DO UPDATE SET revision = excluded.revision, apps = excluded.apps,
           generation = excluded.generation, updated_at = excluded.updated_at`,
      ),
      counter: db.prepare<[string], { value: number }>('SELECT value FROM counters WHERE name = ?'),
      addCounter: db.prepare<[number, string]>('UPDATE counters SET value = value + ? WHERE name = ?'),
    };
  }

  // revisions

  getRevision(): RevisionRecord {
    const row = this.statements.getMeta.get()!;
    return {
      applied: row.applied,
      attempted: row.attempted,
      errors: JSON.parse(row.errors) as string[],
      appliedAt: row.applied_at,
      attemptedAt: row.attempted_at,
    };
  }

  recordAttempt(revision: string, errors: string[], at: number): void {
    this.db.transaction(() => {
      this.statements.setAttempt.run(revision, at, JSON.stringify(errors));
    })();
  }

  /** Also records the revision as the last attempted one, with no errors: it passed validation. */
  recordApplied(revision: string, resolved: Map<DeviceId, DeviceDesired>, catalog: AppCatalog, at: number): void {
    const catalogJson = JSON.stringify(catalog);
    const json = jsonOnce();
    this.db.transaction(() => {
      this.statements.clearResolved.run();
      for (const [deviceId, apps] of resolved) {
        this.statements.insertResolved.run(deviceId, json(apps));
      }
      this.statements.setApplied.run({ revision, at, catalog: catalogJson });
    })();
    this.catalogCache = JSON.parse(catalogJson) as AppCatalog;
  }

  /**
   * A part of a revision's resolution, written ahead of `recordAppliedAfterRows` (one transaction per
   * part): a large fleet's rows are written over several turns of the event loop. Until that call the
   * applied revision is the old one; after a crash meanwhile, the next pass loads the revision again.
   */
  writeResolvedRows(rows: Iterable<readonly [DeviceId, DeviceDesired]>): void {
    const json = jsonOnce();
    this.db.transaction(() => {
      for (const [deviceId, apps] of rows) this.statements.upsertResolved.run(deviceId, json(apps));
    })();
  }

  /** Records the revision as applied once `writeResolvedRows` wrote its resolution; the rows of `unresolved` devices go. */
  recordAppliedAfterRows(revision: string, unresolved: Iterable<DeviceId>, catalog: AppCatalog, at: number): void {
    const catalogJson = JSON.stringify(catalog);
    this.db.transaction(() => {
      for (const deviceId of unresolved) this.statements.deleteResolved.run(deviceId);
      this.statements.setApplied.run({ revision, at, catalog: catalogJson });
    })();
    this.catalogCache = JSON.parse(catalogJson) as AppCatalog;
  }

  getCatalog(): AppCatalog {
    if (this.catalogCache === null) {
      this.catalogCache = JSON.parse(this.statements.getMeta.get()!.catalog) as AppCatalog;
    }
    return this.catalogCache;
  }

  getResolved(): Map<DeviceId, DeviceDesired> {
    const resolved = new Map<DeviceId, DeviceDesired>();
    for (const row of this.statements.allResolved.iterate()) {
      resolved.set(row.device_id, JSON.parse(row.apps) as DeviceDesired);
    }
    return resolved;
  }

  // devices

  /** Enrols a device, or re-enrols it: the new token replaces the old one and the labels are updated. */
  enrollDevice(id: DeviceId, labels: Labels, tokenHash: string, at: number): void {
    this.db.transaction(() => {
      this.statements.upsertDevice.run(id, JSON.stringify(labels), tokenHash, at);
    })();
  }

  getTokenHash(id: DeviceId): string | null {
    return this.statements.tokenHash.get(id)?.token_hash ?? null;
  }

  deviceIdForTokenHash(tokenHash: string): DeviceId | null {
    return this.statements.deviceByTokenHash.get(tokenHash)?.id ?? null;
  }

  /** Replaces everything the device said about its apps (a report lists all of them) and marks it seen. */
  recordReport(id: DeviceId, apps: Record<string, AppReport>, at: number, labels?: Labels): void {
    this.db.transaction(() => {
      this.writeReport(id, apps, at, labels);
    })();
  }

  private writeReport(id: DeviceId, apps: Record<string, AppReport>, at: number, labels?: Labels): void {
    const changed = this.statements.touchDevice.run(at, id).changes;
    if (changed === 0) {
      throw new CascadeError('device-unknown', `device ${id} is not enrolled; it must enrol before it reports`, { deviceId: id });
    }
    this.statements.markReported.run(at, id);
    if (labels) this.statements.relabelDevice.run(JSON.stringify(labels), id);
    this.statements.clearReports.run(id);
    for (const app of Object.keys(apps).sort()) {
      const report = apps[app]!;
      this.statements.insertReport.run(id, app, report.version, report.state, report.message ?? null, at, report.attempt ?? null);
    }
  }

  /**
   * Everything a region keeps in memory (reconciler/fleet-index.ts), read once at start: devices with
   * their token hashes, whether they reported, their reports and what they were handed.
   */
  loadIndexRows(): IndexRows {
    const devices = this.listDevices();
    const extra = new Map<string, { tokenHash: string; reportedAt: number | null; reportSeq: number | null }>();
    for (const row of this.statements.indexDevices.iterate()) extra.set(row.id, { tokenHash: row.token_hash, reportedAt: row.reported_at, reportSeq: row.report_seq });
    return {
      devices: devices.map((device) => ({ ...device, ...extra.get(device.id)! })),
      handed: this.listHanded(),
      rollouts: this.getRolloutStates(),
      updatesSent: this.updatesSent(),
    };
  }

  /**
   * One transaction for what a region buffered since its last write: enrolments with their keys,
   * report sequence numbers and approval requests, reports (coalesced: the last one of each device),
   * last-seen times, and the hand-out of a pass with its rollout states.
   * Reports of devices no longer enrolled are skipped. Returns nothing: the caller counted updates.
   */
  writeBatch(batch: StateBatch): void {
    const json = jsonOnce();
    this.db.transaction(() => {
      for (const e of batch.enrolments ?? []) this.statements.upsertDevice.run(e.id, JSON.stringify(e.labels), e.tokenHash, e.at);
      for (const [id, key] of batch.keys ?? []) this.identity.setKey.run(key, id);
      for (const [id, seq] of batch.seqs ?? []) this.statements.setSeq.run(seq, id);
      for (const p of batch.pendingDevices ?? []) this.identity.upsertPending.run(p.id, JSON.stringify(p.labels), p.publicKey, p.at, p.at);
      for (const report of batch.reports ?? []) {
        try {
          this.writeReport(report.id, report.apps, report.at, report.labels);
        } catch (err) {
          if (!(err instanceof CascadeError && err.code === 'device-unknown')) throw err;
        }
      }
      for (const [id, at] of batch.seen ?? []) this.statements.touchDevice.run(at, id);
      if (batch.rollouts) this.writeRollouts(batch.rollouts, batch.at);
      for (const row of batch.handed ?? []) {
        this.statements.upsertHanded.run(row.deviceId, row.state.revision, json(row.state.apps), row.state.generation, batch.at);
      }
      if (batch.updates) this.statements.addCounter.run(batch.updates, 'updates_sent');
    })();
  }

  getDevice(id: DeviceId): DeviceRecord | null {
    const row = this.statements.device.get(id);
    if (!row) return null;
    const apps: Record<string, AppReport> = {};
    for (const report of this.statements.deviceReports.iterate(id)) apps[report.app] = toReport(report);
    return toDevice(row, apps);
  }

  listDevices(): DeviceRecord[] {
    const appsByDevice = new Map<string, Record<string, AppReport>>();
    for (const report of this.statements.allReports.iterate()) {
      let apps = appsByDevice.get(report.device_id);
      if (!apps) {
        apps = {};
        appsByDevice.set(report.device_id, apps);
      }
      apps[report.app] = toReport(report);
    }
    return this.statements.allDevices.all().map((row) => toDevice(row, appsByDevice.get(row.id) ?? {}));
  }

  // what was handed out

  handOut(changes: Map<DeviceId, DeviceDesired>, revision: string, at: number, rollouts?: ReadonlyMap<string, RolloutState>): number {
    return this.db.transaction(() => {
      if (rollouts) this.writeRollouts(rollouts, at);
      let updates = 0;
      for (const [deviceId, apps] of changes) {
        const json = stableJson(apps);
        const previous = this.statements.handed.get(deviceId);
        if (previous && previous.apps === json) continue;
        const before = previous ? (JSON.parse(previous.apps) as DeviceDesired) : {};
        for (const [app, desired] of Object.entries(apps)) {
          if (before[app]?.version !== desired.version) updates++;
        }
        this.statements.upsertHanded.run(deviceId, revision, json, (previous?.generation ?? 0) + 1, at);
      }
      if (updates > 0) this.statements.addCounter.run(updates, 'updates_sent');
      return updates;
    })();
  }

  revokeDevice(id: DeviceId, at: number): boolean {
    void at;
    return this.statements.revokeDevice.run(id).changes > 0;
  }

  markSeen(id: DeviceId, at: number): void {
    this.statements.touchDevice.run(at, id);
  }

  getRolloutStates(): Map<string, RolloutState> {
    const states = new Map<string, RolloutState>();
    for (const row of this.statements.allRollouts.iterate()) states.set(row.deployment, JSON.parse(row.state) as RolloutState);
    return states;
  }

  /** Replaces the rollout states; only changed rows are written, and Deployments that are gone are dropped. */
  private writeRollouts(rollouts: ReadonlyMap<string, RolloutState>, at: number): void {
    const before = new Map<string, string>();
    for (const row of this.statements.allRollouts.iterate()) before.set(row.deployment, row.state);
    for (const [deployment, state] of rollouts) {
      const json = stableJson(state);
      if (before.get(deployment) !== json) this.statements.upsertRollout.run(deployment, json, at);
    }
    for (const deployment of before.keys()) if (!rollouts.has(deployment)) this.statements.deleteRollout.run(deployment);
  }

  getHanded(id: DeviceId): HandedState | null {
    const row = this.statements.handed.get(id);
    return row ? { revision: row.revision, apps: JSON.parse(row.apps) as DeviceDesired, generation: row.generation } : null;
  }

  listHanded(): Map<DeviceId, HandedState> {
    const handed = new Map<DeviceId, HandedState>();
    for (const row of this.statements.allHanded.iterate()) {
      handed.set(row.device_id, { revision: row.revision, apps: JSON.parse(row.apps) as DeviceDesired, generation: row.generation });
    }
    return handed;
  }

  updatesSent(): number {
    return this.statements.counter.get('updates_sent')?.value ?? 0;
  }

  // housekeeping (region/maintenance.ts)

  optimize(): void {
    optimizeStateDatabase(this.db);
  }

  async backup(toFile: string): Promise<void> {
    await backupStateDatabase(this.db, toFile);
  }

  /**
   * Forgets report rows nobody reads any more: apps a device reported removed (no version) before
   * `before`, and everything of devices revoked before it. Returns the rows removed.
   */
  pruneReports(before: number): number {
    return this.db.transaction(() => {
      const removed = this.db.prepare('DELETE FROM reports WHERE version IS NULL AND updated_at < ?').run(before).changes;
      const revoked = this.db
        .prepare('DELETE FROM reports WHERE device_id IN (SELECT id FROM devices WHERE revoked = 1) AND updated_at < ?')
        .run(before).changes;
      return removed + revoked;
    })();
  }

  // device identity and report order (DeviceIdentityStore)

  private identityStatements?: ReturnType<SqliteStateStore['prepareIdentity']>;

  private get identity() {
    this.identityStatements ??= this.prepareIdentity();
    return this.identityStatements;
  }

  private prepareIdentity() {
    const db = this.db;
    return {
      getKey: db.prepare<[string], { public_key: string | null }>('SELECT public_key FROM devices WHERE id = ?'),
      setKey: db.prepare<[string | null, string]>('UPDATE devices SET public_key = ? WHERE id = ?'),
      // One statement: the check and the write cannot be split by another report.
      acceptSeq: db.prepare<[number, string, number]>('UPDATE devices SET report_seq = ? WHERE id = ? AND (report_seq IS NULL OR report_seq < ?)'),
      clearSeq: db.prepare<[string]>('UPDATE devices SET report_seq = NULL WHERE id = ?'),
      upsertPending: db.prepare<[string, string, string | null, number, number]>(
        `INSERT INTO pending_devices (id, labels, public_key, requested_at, last_attempt_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, public_key = excluded.public_key, last_attempt_at = excluded.last_attempt_at`,
      ),
      pending: db.prepare<[string], PendingRow>('SELECT id, labels, public_key, requested_at, last_attempt_at FROM pending_devices WHERE id = ?'),
      allPending: db.prepare<[], PendingRow>('SELECT id, labels, public_key, requested_at, last_attempt_at FROM pending_devices ORDER BY requested_at, id'),
      deletePending: db.prepare<[string]>('DELETE FROM pending_devices WHERE id = ?'),
    };
  }

  getDeviceKey(id: DeviceId): string | null {
    return this.identity.getKey.get(id)?.public_key ?? null;
  }

  setDeviceKey(id: DeviceId, publicKey: string | null): boolean {
    return this.identity.setKey.run(publicKey, id).changes > 0;
  }

  acceptReportSeq(id: DeviceId, seq: number): boolean {
    return this.identity.acceptSeq.run(seq, id, seq).changes > 0;
  }

  clearReportSeq(id: DeviceId): void {
    this.identity.clearSeq.run(id);
  }

  upsertPendingDevice(id: DeviceId, labels: Labels, publicKey: string | null, at: number): void {
    this.identity.upsertPending.run(id, JSON.stringify(labels), publicKey, at, at);
  }

  getPendingDevice(id: DeviceId): PendingDevice | null {
    const row = this.identity.pending.get(id);
    return row ? toPending(row) : null;
  }

  listPendingDevices(): PendingDevice[] {
    return this.identity.allPending.all().map(toPending);
  }

  deletePendingDevice(id: DeviceId): boolean {
    return this.identity.deletePending.run(id).changes > 0;
  }

  /** The database handle, for an online backup (open-state-database.ts: backupStateDatabase). */
  get database(): Database.Database {
    return this.db;
  }

  // rollout verbs: operator retries and what the region pushed on a halt (see reconciler/state-store.ts)

  requestRetry(deployment: string, at: number): void {
    this.db.prepare('INSERT INTO rollout_retries (deployment, requested_at) VALUES (?, ?) ON CONFLICT (deployment) DO UPDATE SET requested_at = excluded.requested_at').run(deployment, at);
  }

  pendingRetries(): Map<string, number> {
    const rows = this.db.prepare<[], { deployment: string; requested_at: number }>('SELECT deployment, requested_at FROM rollout_retries').all();
    return new Map(rows.map((r) => [r.deployment, r.requested_at]));
  }

  clearRetries(deployments: Iterable<string>): void {
    const remove = this.db.prepare<[string]>('DELETE FROM rollout_retries WHERE deployment = ?');
    this.db.transaction(() => {
      for (const deployment of deployments) remove.run(deployment);
    })();
  }

  claimHaltRevert(deployment: string, halt: string, record: HaltRevert): boolean {
    const result = this.db
      .prepare('INSERT INTO halt_reverts (deployment, halt, record, at) VALUES (?, ?, ?, ?) ON CONFLICT (deployment, halt) DO NOTHING')
      .run(deployment, halt, JSON.stringify(record), record.at);
    return result.changes > 0;
  }

  recordHaltRevert(deployment: string, halt: string, record: HaltRevert): void {
    this.db.prepare('UPDATE halt_reverts SET record = ?, at = ? WHERE deployment = ? AND halt = ?').run(JSON.stringify(record), record.at, deployment, halt);
  }

  haltReverts(): Map<string, { halt: string; record: HaltRevert }> {
    const rows = this.db.prepare<[], { deployment: string; halt: string; record: string }>('SELECT deployment, halt, record FROM halt_reverts ORDER BY at').all();
    const latest = new Map<string, { halt: string; record: HaltRevert }>();
    for (const row of rows) latest.set(row.deployment, { halt: row.halt, record: JSON.parse(row.record) as HaltRevert });
    return latest;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

interface PendingRow {
  id: string;
  labels: string;
  public_key: string | null;
  requested_at: number;
  last_attempt_at: number;
}

function toPending(row: PendingRow): PendingDevice {
  return { id: row.id, labels: JSON.parse(row.labels) as Labels, publicKey: row.public_key, requestedAt: row.requested_at, lastAttemptAt: row.last_attempt_at };
}
