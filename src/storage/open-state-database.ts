import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
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
