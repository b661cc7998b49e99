import * as fs from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import git from 'isomorphic-git';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkMaintenanceSchedule, startMaintenance, type Maintenance } from '../../src/region/maintenance.js';
import type { FleetSource } from '../../src/source/fleet-source.js';
import { openFleetSource } from '../../src/source/open-fleet-source.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';
import { commitAndPush, makeFleetRemote, type FleetRemote } from '../support/git-fixtures.js';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http-server.js';

const packsOf = async (gitdir: string) => (await readdir(join(gitdir, 'objects', 'pack'))).filter((n) => n.endsWith('.pack'));

describe('region housekeeping (node-cron jobs) on a real repository copy and state database', () => {
  let base: string;
  let remote: FleetRemote;
  let server: GitHttpServer;
  let source: FleetSource;
  let store: SqliteStateStore;
  let maintenance: Maintenance | null = null;
  let now = 1_000_000_000_000;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'cascade-maintenance-'));
    remote = await makeFleetRemote(join(base, 'repos'), 'fleet', { 'apps/a.yaml': 'apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: a\nspec: {}\n' });
    server = await startGitHttpServer({ root: join(base, 'repos') });
    source = await openFleetSource({ repo: `${server.url}/fleet.git`, branch: 'main', dataDir: join(base, 'data') });
    store = SqliteStateStore.open(join(base, 'data'));
  });

  afterEach(async () => {
    await maintenance?.stop();
    maintenance = null;
    store.close();
    await source.close();
    await server.stop();
    await rm(base, { recursive: true, force: true });
  });

  function start(registry: Registry, backupDir: string | null = join(base, 'backups'), backupsKept = 2): Maintenance {
    maintenance = startMaintenance({
      schedule: '17 3 * * *',
      store,
      source,
      backupDir,
      backupsKept,
      reportRetentionMs: 1000,
      registry,
      log: pino({ level: 'silent' }),
      clock: () => now,
    });
    return maintenance;
  }

  it('merges the packs of every fetch into one; every commit stays readable and the next fetch works', async () => {
    const commits = [await source.sync()];
    for (let i = 0; i < 3; i++) {
      commits.push(await commitAndPush(remote.workdir, { [`apps/b${i}.yaml`]: `# ${i}\n` }, `change ${i}`));
      expect(await source.sync()).toBe(commits.at(-1));
    }
    const gitdir = source.location.gitdir;
    expect((await packsOf(gitdir)).length).toBeGreaterThanOrEqual(4);

    const outcome = await start(new Registry()).runNow();
    expect(outcome['compact-packs']).toBe('ok');
    expect(await packsOf(gitdir)).toHaveLength(1);
    for (const oid of commits) {
      const { commit } = await git.readCommit({ fs, gitdir, oid });
      await git.readTree({ fs, gitdir, oid: commit.tree });
    }
    const next = await commitAndPush(remote.workdir, { 'apps/c.yaml': '# c\n' }, 'after compaction');
    expect(await source.sync()).toBe(next);
  });

  it('backs the state database up consistently, keeps the newest N, optimizes, prunes old reports, and counts each job', async () => {
    await source.sync();
    store.enrollDevice('keep', {}, 'h1', now);
    store.enrollDevice('gone', {}, 'h2', now);
    store.recordReport('keep', { web: { version: '1.0.0', state: 'healthy' }, old: { version: null, state: 'healthy' } }, now);
    store.recordReport('gone', { web: { version: '1.0.0', state: 'healthy' } }, now);
    store.revokeDevice('gone', now);
    const registry = new Registry();
    const jobs = start(registry);

    now += 5000;
    expect(await jobs.runNow()).toEqual({ 'compact-packs': 'ok', optimize: 'ok', backup: 'ok', 'prune-reports': 'ok' });
    // The removed app's report and the revoked device's reports are gone; the live one stays.
    expect(Object.keys(store.getDevice('keep')!.apps)).toEqual(['web']);
    expect(store.getDevice('gone')!.apps).toEqual({});

    for (let i = 0; i < 2; i++) {
      now += 1000;
      await jobs.runNow();
    }
    const backups = (await readdir(join(base, 'backups'))).sort();
    expect(backups).toHaveLength(2);
    const copy = new Database(join(base, 'backups', backups.at(-1)!), { readonly: true });
    expect(copy.pragma('quick_check', { simple: true })).toBe('ok');
    expect((copy.prepare('SELECT COUNT(*) AS n FROM devices').get() as { n: number }).n).toBe(2);
    copy.close();

    const metrics = await registry.metrics();
    expect(metrics).toMatch(/cascade_maintenance_runs_total\{job="backup",result="ok"\} 3/);
    expect(metrics).toMatch(/cascade_maintenance_last_success_timestamp_seconds\{job="prune-reports"\}/);
    expect(jobs.nextRun()).toBeInstanceOf(Date);
  });

  it('reports a failing job and still runs the others', async () => {
    await source.sync();
    const registry = new Registry();
    // A backup folder that is a file: the backup job fails, the rest go on.
    fs.writeFileSync(join(base, 'not-a-dir'), '');
    const outcome = await start(registry, join(base, 'not-a-dir')).runNow();
    expect(outcome).toEqual({ 'compact-packs': 'ok', optimize: 'ok', backup: 'failed', 'prune-reports': 'ok' });
    expect(await registry.metrics()).toMatch(/cascade_maintenance_runs_total\{job="backup",result="failed"\} 1/);
  });

  it('refuses a schedule that is not a cron expression, naming the flag', () => {
    expect(() => checkMaintenanceSchedule('every night')).toThrow(/--maintenance-schedule "every night" is not a cron expression/);
    expect(() => checkMaintenanceSchedule('0 3 * * *')).not.toThrow();
  });
});
