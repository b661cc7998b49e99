import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { CascadeError } from '../core/errors.js';

export interface StateDatabaseOptions {
  dataDir: string;
  fileName: string;
  /** Schema steps, applied in order; `PRAGMA user_version` records how many ran. Append, never edit. */
  migrations: readonly string[];
  /** For messages and error codes, e.g. `region` -> `region-state-open-failed`. */
  owner: string;
  /** SQLite page cache in KiB (better-sqlite3 is built with 16 MB per connection). */
  cacheKib: number;
}

/**
 * Opens (creating if needed) a service's state file in WAL mode and brings its schema up to date in
 * one transaction. WAL + synchronous NORMAL: a committed transaction survives the process being
 * killed, and readers never block the writer.
 */
export function openStateDatabase(options: StateDatabaseOptions): { db: Database.Database; path: string } {
  const path = join(options.dataDir, options.fileName);
  let db: Database.Database;
  try {
    mkdirSync(options.dataDir, { recursive: true });
    db = new Database(path);
  } catch (err) {
    throw new CascadeError(`${options.owner}-state-open-failed`, `cannot open the ${options.owner} state in ${options.dataDir}: ${(err as Error).message} (check --data points to a writable directory)`, { dataDir: options.dataDir });
  }
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma(`cache_size = -${options.cacheKib}`);
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = options.migrations.length;
  if (current > latest) {
    db.close();
    throw new CascadeError(`${options.owner}-state-schema-newer`, `${path} has schema version ${current}, newer than this cascade (${latest}); upgrade cascade or use another --data directory`);
  }
  db.transaction(() => {
    for (let version = current; version < latest; version++) db.exec(options.migrations[version]!);
    db.pragma(`user_version = ${latest}`);
  })();
  return { db, path };
}

/**
 * A consistent copy of a live database, with SQLite's online backup: readers and the writer go on
 * while it runs, and the copy is one point in time. Written beside its target and renamed, so a
 * crash never leaves half a backup under the final name.
 */
export async function backupStateDatabase(db: Database.Database, toFile: string): Promise<void> {
  mkdirSync(dirname(toFile), { recursive: true });
  const scratch = `${toFile}.tmp-${process.pid}`;
  try {
    await db.backup(scratch);
    renameSync(scratch, toFile);
  } finally {
    rmSync(scratch, { force: true });
  }
}

/** Lets SQLite refresh the statistics its query planner uses (cheap; a no-op when nothing changed). */
export function optimizeStateDatabase(db: Database.Database): void {
  db.pragma('optimize');
}
