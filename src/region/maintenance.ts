import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { CascadeError } from '../core/errors.js';
import type { FleetSource } from '../source/fleet-source.js';

/**
 * The region's housekeeping, on a cron schedule (`--maintenance-schedule`, nightly by default):
 * - `compact-packs`: merges the packs each fetch leaves in the repository copy into one;
 * - `optimize`: `PRAGMA optimize` on the state database;
 * - `backup`: a consistent copy of the state database (SQLite online backup) into `--backup-dir`,
 *   keeping the newest `--backup-keep`;
 * - `prune-reports`: forgets reports of removed apps and revoked devices older than `--report-retention`.
 * Each job is logged and counted (`cascade_maintenance_runs_total{job,result}`); one failing job does
 * not stop the others. Jobs never overlap themselves, and the source serialises compaction with fetches.
 */

import { DEFAULT_BACKUPS_KEPT, DEFAULT_REPORT_RETENTION_MS } from './maintenance-defaults.js';

export { DEFAULT_BACKUPS_KEPT, DEFAULT_MAINTENANCE_SCHEDULE, DEFAULT_REPORT_RETENTION_MS } from './maintenance-defaults.js';

export interface MaintainedStore {
  optimize(): void;
  backup(toFile: string): Promise<void>;
  pruneReports(before: number): number;
}

export interface MaintenanceOptions {
  schedule: string;
  /** IANA time zone of the schedule; the machine's when absent. */
  timezone?: string;
  store: MaintainedStore;
  source: FleetSource;
  /** Where backups go; no backup job when null. */
  backupDir: string | null;
  backupsKept?: number;
  reportRetentionMs?: number;
  registry: Registry;
  log: Logger;
  clock: () => number;
}

export type MaintenanceJob = 'compact-packs' | 'optimize' | 'backup' | 'prune-reports';

export interface Maintenance {
  /** Runs every job once now (also what the schedule runs); resolves with each job's outcome. */
  runNow(): Promise<Record<MaintenanceJob, 'ok' | 'failed' | 'skipped'>>;
  /** When the schedule next fires. */
  nextRun(): Date | null;
  stop(): Promise<void>;
}

/** Refuses a schedule node-cron cannot read, naming the flag. */
export function checkMaintenanceSchedule(schedule: string): void {
  if (!cron.validate(schedule)) {
    throw new CascadeError('bad-options', `--maintenance-schedule "${schedule}" is not a cron expression (e.g. "17 3 * * *" for 03:17 every night)`);
  }
}

export function startMaintenance(opts: MaintenanceOptions): Maintenance {
  checkMaintenanceSchedule(opts.schedule);
  const runs = new Counter({
    name: 'cascade_maintenance_runs_total',
    help: 'Housekeeping job runs by job and result',
    labelNames: ['job', 'result'],
    registers: [opts.registry],
  });
  const lastSuccess = new Gauge({
    name: 'cascade_maintenance_last_success_timestamp_seconds',
    help: 'When each housekeeping job last succeeded',
    labelNames: ['job'],
    registers: [opts.registry],
  });
  const keep = Math.max(1, opts.backupsKept ?? DEFAULT_BACKUPS_KEPT);
  const retention = opts.reportRetentionMs ?? DEFAULT_REPORT_RETENTION_MS;

  const jobs: Record<MaintenanceJob, () => Promise<Record<string, unknown> | null>> = {
    'compact-packs': async () => (opts.source.compact ? { ...(await opts.source.compact()) } : null),
    optimize: async () => {
      opts.store.optimize();
      return {};
    },
    backup: async () => {
      if (opts.backupDir === null) return null;
      const stamp = new Date(opts.clock()).toISOString().replace(/[:.]/g, '-');
      const file = join(opts.backupDir, `state-${stamp}.sqlite`);
      await opts.store.backup(file);
      const removed = pruneBackups(opts.backupDir, keep);
      return { file, removed };
    },
    'prune-reports': async () => ({ removed: opts.store.pruneReports(opts.clock() - retention) }),
  };

  let running: Promise<Record<MaintenanceJob, 'ok' | 'failed' | 'skipped'>> | null = null;
  const runAll = async (): Promise<Record<MaintenanceJob, 'ok' | 'failed' | 'skipped'>> => {
    const outcome = {} as Record<MaintenanceJob, 'ok' | 'failed' | 'skipped'>;
    for (const [job, run] of Object.entries(jobs) as Array<[MaintenanceJob, () => Promise<Record<string, unknown> | null>]>) {
      const started = opts.clock();
      try {
        const result = await run();
        if (result === null) {
          outcome[job] = 'skipped';
          continue;
        }
        outcome[job] = 'ok';
        runs.inc({ job, result: 'ok' });
        lastSuccess.set({ job }, opts.clock() / 1000);
        opts.log.info({ job, ms: opts.clock() - started, ...result }, `maintenance: ${job} done`);
      } catch (err) {
        outcome[job] = 'failed';
        runs.inc({ job, result: 'failed' });
        opts.log.error({ job, err }, `maintenance: ${job} failed`);
      }
    }
    return outcome;
  };
  const runNow = (): Promise<Record<MaintenanceJob, 'ok' | 'failed' | 'skipped'>> => {
    // One run at a time: a schedule firing during a manual run joins it.
    running ??= runAll().finally(() => (running = null));
    return running;
  };

  const task: ScheduledTask = cron.schedule(opts.schedule, () => runNow(), {
    name: 'cascade-maintenance',
    timezone: opts.timezone,
    noOverlap: true,
  });
  return {
    runNow,
    nextRun: () => task.getNextRun(),
    async stop() {
      await task.destroy();
      await running;
    },
  };
}

/** Keeps the newest `keep` backups (names sort by time); returns how many were removed. */
function pruneBackups(dir: string, keep: number): number {
  const backups = readdirSync(dir)
    .filter((name) => /^state-.*\.sqlite$/.test(name))
    .sort();
  const old = backups.slice(0, Math.max(0, backups.length - keep));
  for (const name of old) rmSync(join(dir, name), { force: true });
  return old.length;
}
