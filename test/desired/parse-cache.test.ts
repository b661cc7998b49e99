import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { PARSE_CACHE_FILE, SqliteParseCache } from '../../src/desired/parse-cache.js';

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-cache-'));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const doc = (value: unknown) => [{ index: 0, line: 1, col: 1, value }];

describe('SqliteParseCache', () => {
  it('stores and returns documents by blob id across instances, in WAL mode', () => {
    const dir = tempDir();
    const cache = SqliteParseCache.inDir(join(dir, 'nested'));
    cache.putMany([{ id: 'a'.repeat(40), documents: doc({ kind: 'App', n: [1, 'x', null, true] }) }]);
    cache.close();
    const again = SqliteParseCache.inDir(join(dir, 'nested'));
    const found = again.getMany(['a'.repeat(40), 'b'.repeat(40)]);
    again.close();
    expect([...found.keys()]).toEqual(['a'.repeat(40)]);
    expect(found.get('a'.repeat(40))).toEqual(doc({ kind: 'App', n: [1, 'x', null, true] }));
    const db = new Database(join(dir, 'nested', PARSE_CACHE_FILE), { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('does not store documents that JSON would change (.inf, .nan)', () => {
    const cache = SqliteParseCache.inDir(tempDir());
    cache.putMany([{ id: 'c'.repeat(40), documents: doc({ x: Infinity }) }]);
    expect(cache.getMany(['c'.repeat(40)]).size).toBe(0);
    cache.close();
  });

  it('rebuilds a damaged cache file instead of failing', () => {
    const dir = tempDir();
    writeFileSync(join(dir, PARSE_CACHE_FILE), 'this is not a database'.repeat(100));
    const cache = SqliteParseCache.inDir(dir);
    cache.putMany([{ id: 'd'.repeat(40), documents: doc({ a: 1 }) }]);
    expect(cache.getMany(['d'.repeat(40)]).size).toBe(1);
    cache.close();
  });

  it('drops entries written in an older format', () => {
    const dir = tempDir();
    const cache = SqliteParseCache.inDir(dir);
    cache.putMany([{ id: 'e'.repeat(40), documents: doc({ a: 1 }) }]);
    cache.close();
    const db = new Database(join(dir, PARSE_CACHE_FILE));
    db.prepare("UPDATE meta SET value = '0' WHERE key = 'format'").run();
    db.close();
    const reopened = SqliteParseCache.inDir(dir);
    expect(reopened.getMany(['e'.repeat(40)]).size).toBe(0);
    reopened.close();
  });
});
