import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DeviceDesired, DeviceId } from '../../src/core/types.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';
import type { AppCatalog } from '../../src/reconciler/state-store.js';

let dir: string;
let store: SqliteStateStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cascade-store-'));
  store = SqliteStateStore.open(join(dir, 'data'));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function reopen(): SqliteStateStore {
  store.close();
  store = SqliteStateStore.open(join(dir, 'data'));
  return store;
}

function desiredFor(count: number, version: string, extra: DeviceDesired = {}): Map<DeviceId, DeviceDesired> {
  const changes = new Map<DeviceId, DeviceDesired>();
  for (let i = 0; i < count; i++) {
    changes.set(`dev-${String(i).padStart(5, '0')}`, { web: { version, deployment: 'web-all' }, ...extra });
  }
  return changes;
}

/** Every row of every table, to compare a whole database before and after. */
function dump(): Record<string, unknown[]> {
  const db = new Database(join(dir, 'data', 'state.sqlite'), { readonly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[];
    const rows: Record<string, unknown[]> = {};
    for (const { name } of tables) rows[name] = db.prepare(`SELECT * FROM "${name}" ORDER BY 1, 2`).all();
    return rows;
  } finally {
    db.close();
  }
}

const catalog: AppCatalog = {
  web: {
    runtime: { type: 'exec', install: 'install-web {version} {artifact}' },
    artifacts: { '1.0.0': { url: 'http://127.0.0.1/web-1.0.0.tgz', sha256: 'a'.repeat(64), size: 10 } },
    healthCheck: { exec: 'true', retries: 2 },
  },
};

describe('SqliteStateStore', () => {
  it('creates state.sqlite in WAL mode with a schema version', () => {
    const db = new Database(join(dir, 'data', 'state.sqlite'), { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBeGreaterThan(0);
    db.close();
  });

  it('starts empty', () => {
    expect(store.getRevision()).toEqual({ applied: null, attempted: null, errors: [], appliedAt: null, attemptedAt: null });
    expect(store.getCatalog()).toEqual({});
    expect(store.getResolved().size).toBe(0);
    expect(store.listDevices()).toEqual([]);
    expect(store.listHanded().size).toBe(0);
    expect(store.updatesSent()).toBe(0);
  });

  it('keeps everything across close and reopen', () => {
    store.recordAttempt('bad1', ['apps/web.yaml:3:5: unknown field'], 1000);
    store.recordApplied('rev1', desiredFor(2, '1.0.0'), catalog, 2000);
    store.recordAttempt('bad2', ['deployments/x.yaml:1:1: broken'], 3000);
    store.enrollDevice('dev-00000', { ring: 'canary' }, 'hash-0', 100);
    store.enrollDevice('dev-00001', {}, 'hash-1', 200);
    store.recordReport('dev-00000', { web: { version: '0.9.0', state: 'healthy' }, db: { version: null, state: 'failed', message: 'no disk' } }, 500, { ring: 'canary', site: 'berlin' });
    expect(store.handOut(desiredFor(2, '1.0.0'), 'rev1', 2500)).toBe(2);

    reopen();
    expect(store.getRevision()).toEqual({ applied: 'rev1', attempted: 'bad2', errors: ['deployments/x.yaml:1:1: broken'], appliedAt: 2000, attemptedAt: 3000 });
    expect(store.getCatalog()).toEqual(catalog);
    expect(store.getResolved()).toEqual(desiredFor(2, '1.0.0'));
    expect(store.getDevice('dev-00000')).toEqual({
      id: 'dev-00000',
      labels: { ring: 'canary', site: 'berlin' },
      enrolledAt: 100,
      lastSeen: 500,
      apps: { db: { version: null, state: 'failed', message: 'no disk' }, web: { version: '0.9.0', state: 'healthy' } },
      revoked: false,
    });
    expect(store.getDevice('dev-00001')).toMatchObject({ lastSeen: null, apps: {} });
    expect(store.getDevice('nope')).toBeNull();
    expect(store.getTokenHash('dev-00001')).toBe('hash-1');
    expect(store.deviceIdForTokenHash('hash-1')).toBe('dev-00001');
    expect(store.deviceIdForTokenHash('hash-x')).toBeNull();
    expect(store.getHanded('dev-00001')).toEqual({ revision: 'rev1', apps: { web: { version: '1.0.0', deployment: 'web-all' } }, generation: 1 });
    expect(store.updatesSent()).toBe(2);
  });

  it('recordApplied marks the revision attempted without errors and replaces the resolved state', () => {
    store.recordAttempt('bad', ['x'], 1);
    store.recordApplied('rev1', desiredFor(3, '1.0.0'), catalog, 2);
    store.recordApplied('rev2', desiredFor(1, '2.0.0'), {}, 3);
    expect(store.getRevision()).toEqual({ applied: 'rev2', attempted: 'rev2', errors: [], appliedAt: 3, attemptedAt: 3 });
    expect([...store.getResolved().keys()]).toEqual(['dev-00000']);
    expect(store.getCatalog()).toEqual({});
  });

  it('re-enrolling replaces the token and labels but keeps the enrolment time', () => {
    store.enrollDevice('d1', { a: '1' }, 'old', 10);
    store.enrollDevice('d1', { b: '2' }, 'new', 20);
    expect(store.getTokenHash('d1')).toBe('new');
    expect(store.deviceIdForTokenHash('old')).toBeNull();
    expect(store.getDevice('d1')).toMatchObject({ labels: { b: '2' }, enrolledAt: 10 });
  });

  it('a report replaces the previous one and needs an enrolled device', () => {
    store.enrollDevice('d1', {}, 'h', 1);
    store.recordReport('d1', { web: { version: '1', state: 'healthy' }, db: { version: '2', state: 'healthy' } }, 2);
    store.recordReport('d1', { web: { version: '1', state: 'installing', message: 'installing 2' } }, 3);
    expect(store.getDevice('d1')!.apps).toEqual({ web: { version: '1', state: 'installing', message: 'installing 2' } });
    expect(() => store.recordReport('ghost', {}, 4)).toThrow(/ghost is not enrolled/);
  });

  describe('handOut', () => {
    it('counts each (device, app) whose version differs from what was last handed', () => {
      expect(store.handOut(desiredFor(200, '1.0.0'), 'rev1', 1)).toBe(200);
      expect(store.updatesSent()).toBe(200);
      // The same versions again: nothing to send, nothing written.
      expect(store.handOut(desiredFor(200, '1.0.0'), 'rev2', 2)).toBe(0);
      expect(store.getHanded('dev-00007')).toMatchObject({ revision: 'rev1', generation: 1 });
      // One app changed for 200 devices.
      expect(store.handOut(desiredFor(200, '1.1.0'), 'rev3', 3)).toBe(200);
      expect(store.getHanded('dev-00007')).toMatchObject({ revision: 'rev3', generation: 2 });
      expect(store.updatesSent()).toBe(400);
    });

    it('counts a new app, not a removed one, and bumps the generation for either', () => {
      store.handOut(desiredFor(10, '1.0.0'), 'rev1', 1);
      const withDb = desiredFor(10, '1.0.0', { db: { version: '5', deployment: 'db' } });
      expect(store.handOut(withDb, 'rev2', 2)).toBe(10);
      expect(store.handOut(desiredFor(10, '1.0.0'), 'rev3', 3)).toBe(0);
      expect(store.getHanded('dev-00000')).toEqual({ revision: 'rev3', apps: { web: { version: '1.0.0', deployment: 'web-all' } }, generation: 3 });
      expect(store.updatesSent()).toBe(20);
    });

    it('changes only the listed devices and never deletes any', () => {
      store.handOut(desiredFor(5, '1.0.0'), 'rev1', 1);
      const one = new Map([['dev-00002', { web: { version: '2.0.0', deployment: 'web-all' } }]]);
      expect(store.handOut(one, 'rev2', 2)).toBe(1);
      const handed = store.listHanded();
      expect(handed.size).toBe(5);
      expect(handed.get('dev-00002')).toMatchObject({ generation: 2, apps: { web: { version: '2.0.0' } } });
      expect(handed.get('dev-00003')).toMatchObject({ generation: 1, apps: { web: { version: '1.0.0' } } });
    });

    it('key order does not make a no-op look like a change', () => {
      store.handOut(new Map([['d', { a: { version: '1', deployment: 'x' }, b: { version: '2', deployment: 'y' } }]]), 'r1', 1);
      expect(store.handOut(new Map([['d', { b: { deployment: 'y', version: '2' }, a: { deployment: 'x', version: '1' } }]]), 'r2', 2)).toBe(0);
      expect(store.getHanded('d')!.generation).toBe(1);
    });

    it('handles 10,000 devices in one call, and lists them', () => {
      expect(store.handOut(desiredFor(10_000, '1.0.0'), 'rev1', 1)).toBe(10_000);
      for (let i = 0; i < 10_000; i++) store.enrollDevice(`dev-${String(i).padStart(5, '0')}`, { n: String(i % 7) }, `h${i}`, i);
      expect(store.listDevices()).toHaveLength(10_000);
      expect(store.listHanded().size).toBe(10_000);
      expect(store.handOut(desiredFor(10_000, '1.0.0'), 'rev2', 2)).toBe(0);
    });
  });

  describe('a write that fails half-way leaves nothing behind', () => {
    function poisoned(count: number, failAt: number, version: string): Map<DeviceId, DeviceDesired> {
      const changes = desiredFor(count, version);
      const victim = [...changes.keys()][failAt]!;
      changes.set(victim, {
        get web(): { version: string; deployment: string } {
          throw new Error('boom while serializing');
        },
      } as unknown as DeviceDesired);
      return changes;
    }

    it('handOut', () => {
      store.handOut(desiredFor(300, '1.0.0'), 'rev1', 1);
      const before = dump();
      expect(() => store.handOut(poisoned(300, 150, '2.0.0'), 'rev2', 2)).toThrow('boom while serializing');
      expect(dump()).toEqual(before);
      expect(store.updatesSent()).toBe(300);
      reopen();
      expect(store.getHanded('dev-00000')).toMatchObject({ revision: 'rev1', generation: 1 });
    });

    it('recordApplied', () => {
      store.recordApplied('rev1', desiredFor(300, '1.0.0'), catalog, 1);
      const before = dump();
      expect(() => store.recordApplied('rev2', poisoned(300, 200, '2.0.0'), {}, 2)).toThrow('boom while serializing');
      expect(dump()).toEqual(before);
      expect(store.getRevision().applied).toBe('rev1');
      expect(store.getCatalog()).toEqual(catalog);
    });

    it('recordReport', () => {
      store.enrollDevice('d1', { a: '1' }, 'h', 1);
      store.recordReport('d1', { web: { version: '1', state: 'healthy' } }, 2);
      const before = dump();
      const apps = { aaa: { version: '2', state: 'healthy' }, zzz: { version: { bad: true }, state: 'healthy' } };
      // The second row cannot be bound (an object is not a SQLite value): the first must not stay.
      expect(() => store.recordReport('d1', apps as never, 3, { b: '2' })).toThrow();
      expect(dump()).toEqual(before);
    });
  });

  it('refuses a database from a newer cascade', () => {
    store.close();
    const db = new Database(join(dir, 'data', 'state.sqlite'));
    db.pragma('user_version = 999');
    db.close();
    expect(() => SqliteStateStore.open(join(dir, 'data'))).toThrow(/schema version 999/);
    store = SqliteStateStore.open(join(dir, 'other'));
  });
});

describe('SqliteStateStore: rollout verbs', () => {
  it('keeps the attempt of a failure report, and operator retries until a pass clears them', () => {
    store.enrollDevice('d1', {}, 'hash-1', 1);
    store.recordReport('d1', { web: { version: '1.0.0', state: 'failed', message: 'boom', attempt: 2 }, db: { version: '5', state: 'healthy' } }, 2);
    reopen();
    expect(store.getDevice('d1')!.apps).toEqual({ web: { version: '1.0.0', state: 'failed', message: 'boom', attempt: 2 }, db: { version: '5', state: 'healthy' } });
    store.requestRetry('web', 10);
    store.requestRetry('web', 11);
    store.requestRetry('db', 12);
    expect(reopen().pendingRetries()).toEqual(new Map([['web', 11], ['db', 12]]));
    store.clearRetries(['web']);
    expect(store.pendingRetries()).toEqual(new Map([['db', 12]]));
  });

  it('claims a halt revert exactly once, restarts included, and keeps its latest record per Deployment', () => {
    const started = { mode: 'revert' as const, outcome: 'failed' as const, at: 1, message: 'started' };
    expect(store.claimHaltRevert('web', '2.0.0@r1@100', started)).toBe(true);
    expect(store.claimHaltRevert('web', '2.0.0@r1@100', started)).toBe(false);
    store.recordHaltRevert('web', '2.0.0@r1@100', { ...started, outcome: 'pushed', commit: 'c'.repeat(40), at: 2, message: 'pushed' });
    reopen();
    expect(store.claimHaltRevert('web', '2.0.0@r1@100', started)).toBe(false);
    expect(store.haltReverts().get('web')).toEqual({ halt: '2.0.0@r1@100', record: { mode: 'revert', outcome: 'pushed', commit: 'c'.repeat(40), at: 2, message: 'pushed' } });
    // A later halt of the same Deployment is a new claim, and becomes its latest record.
    expect(store.claimHaltRevert('web', '3.0.0@r2@200', { ...started, at: 3 })).toBe(true);
    expect(store.haltReverts().get('web')!.halt).toBe('3.0.0@r2@200');
  });
});
