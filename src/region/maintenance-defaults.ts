/** Defaults of the region's housekeeping (maintenance.ts), apart so that the CLI's flag list loads no cron library. */
export const DEFAULT_MAINTENANCE_SCHEDULE = '17 3 * * *';
export const DEFAULT_BACKUPS_KEPT = 7;
export const DEFAULT_REPORT_RETENTION_MS = 30 * 24 * 3600_000;
