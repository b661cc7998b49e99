import Database from 'better-sqlite3';
import { openStateDatabase } from './open-state-database.js';
import type { HubSummary } from '../protocol/hub-summary.js';

/**
 * Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
 * Append new steps, never edit old ones: existing data dirs have run them.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE regions (
    name TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    summary TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE revisions (
    sha TEXT PRIMARY KEY,
    first_seen_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    state_changed_at INTEGER NOT NULL,
    view TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX revisions_first_seen ON revisions (first_seen_at);

  CREATE TABLE webhook_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_error TEXT,
    gave_up_at INTEGER
  );
  CREATE INDEX webhook_events_url ON webhook_events (url, gave_up_at, id);
  `,
];

export const HUB_STATE_FILE_NAME = 'hub.sqlite';
/** Revisions kept for the history of the dashboard and the API; older ones are forgotten. */
export const MAX_REVISIONS_KEPT = 500;
/** Events that gave up delivering, kept for inspection. */
const MAX_GIVEN_UP_KEPT = 1_000;

/** The latest summary of a region, with when the hub received it (hub clock). */
export interface RegionRecord {
  summary: HubSummary;
  receivedAt: number;
}

export interface StoredRevision<View> {
  sha: string;
  firstSeenAt: number;
  updatedAt: number;
  state: string;
  stateChangedAt: number;
  view: View;
}

export interface WebhookEventRecord {
  id: number;
  url: string;
  body: string;
  attempts: number;
  nextAttemptAt: number;
  createdAt: number;
  lastError: string | null;
}

export type PutSummaryResult = { accepted: true } | { accepted: false; lastSequence: number };

interface RegionRow {
  name: string;
  sequence: number;
  received_at: number;
  summary: string;
}
interface RevisionRow {
  sha: string;
  first_seen_at: number;
  updated_at: number;
  state: string;
  state_changed_at: number;
  view: string;
}
interface EventRow {
  id: number;
  url: string;
  body: string;
  attempts: number;
  next_attempt_at: number;
  created_at: number;
  last_error: string | null;
}

export interface RevisionUpdate<View> {
  sha: string;
  state: string;
  view: View;
}

/** The hub's state in `<data>/hub.sqlite` (WAL). Each mutating method is one transaction. */
export class HubStore {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly statements;

  static open(dataDir: string): HubStore {
    const { db, path } = openStateDatabase({ dataDir, fileName: HUB_STATE_FILE_NAME, migrations: MIGRATIONS, owner: 'hub', cacheKib: 4000 });
    return new HubStore(db, path);
  }

  private constructor(db: Database.Database, path: string) {
    this.db = db;
    this.path = path;
    this.statements = this.prepare();
  }

  private prepare() {
    const db = this.db;
    return {
      regionSequence: db.prepare<[string], { sequence: number }>('SELECT sequence FROM regions WHERE name = ?'),
      upsertRegion: db.prepare<[string, number, number, number, string]>(
        `INSERT INTO regions (name, sequence, at, received_at, summary) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET sequence = excluded.sequence, at = excluded.at,
           received_at = excluded.received_at, summary = excluded.summary`,
      ),
      allRegions: db.prepare<[], RegionRow>('SELECT name, sequence, received_at, summary FROM regions ORDER BY name'),
      revision: db.prepare<[string], RevisionRow>('SELECT sha, first_seen_at, updated_at, state, state_changed_at, view FROM revisions WHERE sha = ?'),
      revisionsByPrefix: db.prepare<[string], RevisionRow>(
        "SELECT sha, first_seen_at, updated_at, state, state_changed_at, view FROM revisions WHERE sha LIKE ? ESCAPE '\\' LIMIT 2",
      ),
      recentRevisions: db.prepare<[number], RevisionRow>(
        'SELECT sha, first_seen_at, updated_at, state, state_changed_at, view FROM revisions ORDER BY first_seen_at DESC, sha LIMIT ?',
      ),
      insertRevision: db.prepare<[string, number, number, string, number, string]>(
        'INSERT INTO revisions (sha, first_seen_at, updated_at, state, state_changed_at, view) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      updateRevision: db.prepare<[number, string, number, string, string]>(
        'UPDATE revisions SET updated_at = ?, state = ?, state_changed_at = ?, view = ? WHERE sha = ?',
      ),
      pruneRevisions: db.prepare<[number]>(
        'DELETE FROM revisions WHERE sha NOT IN (SELECT sha FROM revisions ORDER BY first_seen_at DESC, sha LIMIT ?)',
      ),
      insertEvent: db.prepare<[string, string, number, number]>(
        'INSERT INTO webhook_events (url, body, next_attempt_at, created_at) VALUES (?, ?, ?, ?)',
      ),
      // Per URL only the oldest waiting event: a receiver gets a commit's states in order.
      dueEvents: db.prepare<[number, number], EventRow>(
        `SELECT id, url, body, attempts, next_attempt_at, created_at, last_error FROM webhook_events AS e
         WHERE gave_up_at IS NULL AND next_attempt_at <= ?
           AND id = (SELECT MIN(id) FROM webhook_events WHERE url = e.url AND gave_up_at IS NULL)
         ORDER BY next_attempt_at, id LIMIT ?`,
      ),
      nextDue: db.prepare<[], { next: number | null }>(
        `SELECT MIN(next_attempt_at) AS next FROM webhook_events AS e
         WHERE gave_up_at IS NULL AND id = (SELECT MIN(id) FROM webhook_events WHERE url = e.url AND gave_up_at IS NULL)`,
      ),
      pendingCount: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM webhook_events WHERE gave_up_at IS NULL'),
      allEvents: db.prepare<[], EventRow & { gave_up_at: number | null }>(
        'SELECT id, url, body, attempts, next_attempt_at, created_at, last_error, gave_up_at FROM webhook_events ORDER BY id',
      ),
      deleteEvent: db.prepare<[number]>('DELETE FROM webhook_events WHERE id = ?'),
      retryEvent: db.prepare<[number, string, number]>('UPDATE webhook_events SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?'),
      giveUpEvent: db.prepare<[string, number, number]>('UPDATE webhook_events SET attempts = attempts + 1, last_error = ?, gave_up_at = ? WHERE id = ?'),
      pruneGivenUp: db.prepare<[number]>(
        'DELETE FROM webhook_events WHERE gave_up_at IS NOT NULL AND id NOT IN (SELECT id FROM webhook_events WHERE gave_up_at IS NOT NULL ORDER BY id DESC LIMIT ?)',
      ),
    };
  }

  // regions

  /** Keeps the summary if its sequence is higher than the region's last one. */
  putSummary(summary: HubSummary, receivedAt: number): PutSummaryResult {
    return this.db.transaction((): PutSummaryResult => {
      const last = this.statements.regionSequence.get(summary.region);
      if (last && summary.sequence <= last.sequence) return { accepted: false, lastSequence: last.sequence };
      this.statements.upsertRegion.run(summary.region, summary.sequence, summary.at, receivedAt, JSON.stringify(summary));
      return { accepted: true };
    })();
  }

  listRegions(): RegionRecord[] {
    return this.statements.allRegions.all().map((row) => ({ summary: JSON.parse(row.summary) as HubSummary, receivedAt: row.received_at }));
  }

  // revisions

  getRevision<View>(sha: string): StoredRevision<View> | null {
    const row = this.statements.revision.get(sha);
    return row ? toRevision<View>(row) : null;
  }

  /** The one stored revision whose sha starts with `prefix`; null when none or several do. */
  findRevisionByPrefix<View>(prefix: string): StoredRevision<View> | null {
    const rows = this.statements.revisionsByPrefix.all(`${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    return rows.length === 1 ? toRevision<View>(rows[0]!) : null;
  }

  recentRevisions<View>(limit: number): StoredRevision<View>[] {
    return this.statements.recentRevisions.all(limit).map((row) => toRevision<View>(row));
  }

  /**
   * Records the latest view of each revision; for each whose state changed, queues one event per
   * webhook URL, in the same transaction, so a change is never recorded without its notification.
   */
  recordRevisions<View>(updates: RevisionUpdate<View>[], events: { url: string; body: string }[], at: number): void {
    if (updates.length === 0 && events.length === 0) return;
    this.db.transaction(() => {
      for (const update of updates) {
        const existing = this.statements.revision.get(update.sha);
        const view = JSON.stringify(update.view);
        if (!existing) this.statements.insertRevision.run(update.sha, at, at, update.state, at, view);
        else if (existing.view !== view || existing.state !== update.state) {
          this.statements.updateRevision.run(at, update.state, existing.state === update.state ? existing.state_changed_at : at, view, update.sha);
        }
      }
      for (const event of events) this.statements.insertEvent.run(event.url, event.body, at, at);
      this.statements.pruneRevisions.run(MAX_REVISIONS_KEPT);
    })();
  }

  // webhook outbox

  dueEvents(now: number, limit: number): WebhookEventRecord[] {
    return this.statements.dueEvents.all(now, limit).map(toEvent);
  }

  /** When the next undelivered event is due; null when none waits. */
  nextEventDue(): number | null {
    return this.statements.nextDue.get()?.next ?? null;
  }

  pendingEvents(): number {
    return this.statements.pendingCount.get()?.n ?? 0;
  }

  /** Every event still in the outbox, delivered ones excluded: for tests and inspection. */
  listEvents(): (WebhookEventRecord & { gaveUpAt: number | null })[] {
    return this.statements.allEvents.all().map((row) => ({ ...toEvent(row), gaveUpAt: row.gave_up_at }));
  }

  markDelivered(id: number): void {
    this.statements.deleteEvent.run(id);
  }

  markRetry(id: number, error: string, nextAttemptAt: number): void {
    this.statements.retryEvent.run(nextAttemptAt, error.slice(0, 1000), id);
  }

  markGaveUp(id: number, error: string, at: number): void {
    this.db.transaction(() => {
      this.statements.giveUpEvent.run(error.slice(0, 1000), at, id);
      this.statements.pruneGivenUp.run(MAX_GIVEN_UP_KEPT);
    })();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function toRevision<View>(row: RevisionRow): StoredRevision<View> {
  return {
    sha: row.sha,
    firstSeenAt: row.first_seen_at,
    updatedAt: row.updated_at,
    state: row.state,
    stateChangedAt: row.state_changed_at,
    view: JSON.parse(row.view) as View,
  };
}

function toEvent(row: EventRow): WebhookEventRecord {
  return {
    id: row.id,
    url: row.url,
    body: row.body,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    createdAt: row.created_at,
    lastError: row.last_error,
  };
}
