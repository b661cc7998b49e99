import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';

/** A document as the parser produced it, with where it starts; enough to skip parsing its file again. */
export interface CachedDocument {
  index: number;
  line: number;
  col: number;
  value: unknown;
}

/** Parsed documents of files that parsed cleanly, keyed by git blob id (the content, whatever the path). */
export interface ParseCache {
  getMany(ids: readonly string[]): Map<string, CachedDocument[]>;
  putMany(entries: ReadonlyArray<{ id: string; documents: CachedDocument[] }>): void;
  close(): void;
}

/** Bump when what the parser stores changes, so old entries are dropped instead of misread. */
const FORMAT = '1';

export const PARSE_CACHE_FILE = 'parse-cache.sqlite';

/** The parse cache in a SQLite file (WAL), shared safely by processes on one machine. */
export class SqliteParseCache implements ParseCache {
  private readonly db: Database.Database;
  private readonly selectMany: Database.Statement<[string], { id: string; docs: string }>;
  private readonly insertOne: Database.Statement<[string, string]>;

  /** Opens `<dir>/parse-cache.sqlite`, creating the directory if needed. */
  static inDir(dir: string): SqliteParseCache {
    return new SqliteParseCache(join(dir, PARSE_CACHE_FILE));
  }

  constructor(readonly file: string) {
    mkdirSync(dirname(file), { recursive: true });
    let db: Database.Database;
    try {
      db = openDatabase(file);
    } catch {
      // Only a cache: a damaged file is thrown away and rebuilt rather than stopping the loader.
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
      db = openDatabase(file);
    }
    this.db = db;
    // One statement for a whole batch: ten thousand single-row queries cost more than the rows.
    this.selectMany = db.prepare('SELECT id, docs FROM parsed WHERE id IN (SELECT value FROM json_each(?))');
    this.insertOne = db.prepare('INSERT OR REPLACE INTO parsed (id, docs) VALUES (?, ?)');
  }

  getMany(ids: readonly string[]): Map<string, CachedDocument[]> {
    const found = new Map<string, CachedDocument[]>();
    if (ids.length === 0) return found;
    for (const row of this.selectMany.iterate(JSON.stringify(ids))) found.set(row.id, JSON.parse(row.docs) as CachedDocument[]);
    return found;
  }

  putMany(entries: ReadonlyArray<{ id: string; documents: CachedDocument[] }>): void {
    if (entries.length === 0) return;
    this.db.transaction(() => {
      for (const { id, documents } of entries) {
        const json = toExactJson(documents);
        if (json !== undefined) this.insertOne.run(id, json);
      }
    })();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function openDatabase(file: string): Database.Database {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    // Read once per changed blob: a small page cache is enough (better-sqlite3 defaults to 16 MB).
    db.pragma('cache_size = -2000');
    db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS parsed (id TEXT PRIMARY KEY, docs TEXT NOT NULL);
    `);
    const format = db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'format'").get();
    if (format?.value !== FORMAT) {
      db.transaction(() => {
        db.exec('DELETE FROM parsed');
        db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('format', ?)").run(FORMAT);
      })();
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** JSON of the documents, or undefined when JSON would change them (`.inf`, `.nan`): those are never cached. */
function toExactJson(documents: CachedDocument[]): string | undefined {
  let exact = true;
  const json = JSON.stringify(documents, (_key, value: unknown) => {
    if (typeof value === 'number' && !Number.isFinite(value)) exact = false;
    return value;
  });
  return exact ? json : undefined;
}
