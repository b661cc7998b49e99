import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
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
  /**
   * Start with an empty state although the data folder held one before (its marker is there but the
   * database is missing or empty): `--init-state`. Never needed on a first start.
   */
  initState?: boolean;
}

/** Beside the database once it holds a state: a folder with the marker never starts empty without `--init-state`. */
export function stateMarkerPath(dataDir: string, fileName: string): string {
  return join(dataDir, `${fileName}.initialized`);
}

/** What to do about a damaged or lost state file, in the words of an error message. */
function restoreSteps(path: string, owner: string): string {
  return (
    `to restore: stop the ${owner}, move ${path} and its -wal and -shm files away, copy your latest backup ` +
    `(cascade ${owner} backup --data DIR --to FILE) to ${path}, and start again; ` +
    `or start once with --init-state to begin with an empty state (devices enrol again, the fleet repository is fetched again)`
  );
}

/**
 * Opens (creating if needed) a service's state file in WAL mode and brings its schema up to date in
 * one transaction. WAL + synchronous NORMAL: a committed transaction survives the process being
 * killed, and readers never block the writer.
 *
 * It refuses to start on a state it cannot trust, each time with the restore steps: a file SQLite
 * does not read as a database, one that fails `PRAGMA quick_check`, and a folder whose marker says it
 * held a state when the database is missing or empty (a zero-byte file would otherwise start as a
 * fresh region, every device and counter gone, without a word).
 */
export function openStateDatabase(options: StateDatabaseOptions): { db: Database.Database; path: string } {
  const path = join(options.dataDir, options.fileName);
  const marker = stateMarkerPath(options.dataDir, options.fileName);
  const { owner } = options;
  const heldState = existsSync(marker);
  const size = existsSync(path) ? statSync(path).size : null;
  if (heldState && (size === null || size === 0) && !options.initState) {
    throw new CascadeError(
      `${owner}-state-missing`,
      `${path} is ${size === null ? 'missing' : 'empty (0 bytes)'}, but ${options.dataDir} held a ${owner} state before (${basename(marker)}); refusing to start empty: ${restoreSteps(path, owner)}`,
      { dataDir: options.dataDir },
    );
  }
  if (options.initState && size === 0) {
    // An empty file is not a database; SQLite would use it, but a fresh one is plainer.
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
  }
  let db: Database.Database;
  try {
    mkdirSync(options.dataDir, { recursive: true });
    db = new Database(path);
  } catch (err) {
    throw new CascadeError(`${owner}-state-open-failed`, `cannot open the ${owner} state in ${options.dataDir}: ${(err as Error).message} (check --data points to a writable directory)`, { dataDir: options.dataDir });
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    db.pragma(`cache_size = -${options.cacheKib}`);
    const check = db.pragma('quick_check', { simple: true }) as string;
    if (check !== 'ok') throw new Error(`quick_check: ${check.replace(/\s*\n\s*/g, '; ').slice(0, 300)}`);
  } catch (err) {
    db.close();
    throw new CascadeError(
      `${owner}-state-damaged`,
      `${path} is damaged (${(err as Error).message}); refusing to start on it: ${restoreSteps(path, owner)}`,
      { dataDir: options.dataDir },
    );
  }
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = options.migrations.length;
  if (current > latest) {
    db.close();
    throw new CascadeError(`${owner}-state-schema-newer`, `${path} has schema version ${current}, newer than this cascade (${latest}); upgrade cascade or use another --data directory`);
  }
  db.transaction(() => {
    for (let version = current; version < latest; version++) db.exec(options.migrations[version]!);
    db.pragma(`user_version = ${latest}`);
  })();
  if (!heldState) writeDurably(marker, `${JSON.stringify({ owner, database: options.fileName, createdAt: new Date().toISOString() })}\n`);
  return { db, path };
}

function writeDurably(path: string, text: string): void {
  const scratch = `${path}.${process.pid}.tmp`;
  const fd = openSync(scratch, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(scratch, path);
}

/**
 * A consistent copy of a live database with SQLite's online backup (pages copied while the service
 * keeps writing), written to a scratch file, checked with `quick_check`, and renamed to `toFile`.
 */
export async function backupStateDatabase(db: Database.Database, toFile: string): Promise<{ pages: number }> {
  mkdirSync(dirname(toFile), { recursive: true });
  const scratch = `${toFile}.${process.pid}.tmp`;
  try {
    const { totalPages } = await db.backup(scratch);
    const copy = new Database(scratch, { fileMustExist: true });
    try {
      const check = copy.pragma('quick_check', { simple: true }) as string;
      if (check !== 'ok') throw new Error(`the copy fails quick_check: ${check}`);
      // A single file: the copy must not need a -wal beside it.
      copy.pragma('journal_mode = DELETE');
    } finally {
      copy.close();
    }
    renameSync(scratch, toFile);
    return { pages: totalPages };
  } catch (err) {
    throw new CascadeError('state-backup-failed', `cannot back up ${db.name} to ${toFile}: ${(err as Error).message}`, { to: toFile });
  } finally {
    for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${scratch}${suffix}`, { force: true });
  }
}

/** `cascade region backup`: opens the state file of a data folder (running service or not) and backs it up. */
export async function backupStateFile(options: { dataDir: string; fileName: string; owner: string; toFile: string }): Promise<{ pages: number }> {
  const path = join(options.dataDir, options.fileName);
  let db: Database.Database;
  try {
    db = new Database(path, { fileMustExist: true });
    db.pragma('busy_timeout = 5000');
  } catch (err) {
    throw new CascadeError(`${options.owner}-state-open-failed`, `cannot open ${path}: ${(err as Error).message} (check --data)`, { dataDir: options.dataDir });
  }
  try {
    return await backupStateDatabase(db, options.toFile);
  } finally {
    db.close();
  }
}

/**
 * Whether an error is the database failing (damaged, unreadable, disk full, gone), as opposed to a
 * busy moment or a refused row: after one the service stops calling itself healthy.
 */
export function isStateDatabaseFailure(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^SQLITE_(CORRUPT|NOTADB|IOERR|CANTOPEN|READONLY|FULL|PROTOCOL|FORMAT)/.test(code);
}

/** Lets SQLite refresh the statistics its query planner uses (cheap; a no-op when nothing changed). */
export function optimizeStateDatabase(db: Database.Database): void {
  db.pragma('optimize');
}
