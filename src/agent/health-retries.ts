import type { Logger } from 'pino';
import type { HealthCheck } from '../core/app-spec.js';
import { parseDuration } from '../core/duration.js';
import { sleep } from './abortable.js';
import type { InstalledApp } from './agent-state.js';
import { AppApplyError } from './apply-error.js';

/** How long one probe may take, and how many more tries after the first, when the App says nothing. */
export const DEFAULT_HEALTH_TIMEOUT = '10s';
export const DEFAULT_HEALTH_RETRIES = 2;

/** Why one probe failed; `final` when trying again cannot help (the container exited for good). */
export interface ProbeFailure {
  reason: string;
  final?: boolean;
}

/**
 * The health check of a freshly installed version, for every runtime: `1 + retries` probes (each
 * bounded by `timeout`), `intervalMs` apart, until one passes. Throws `health-check-failed` with the
 * last reason (the caller puts the previous version back), `health-check-invalid` for a bad timeout.
 */
export async function checkHealthWithRetries(opts: {
  app: string;
  installed: InstalledApp;
  check: HealthCheck;
  intervalMs: number;
  signal: AbortSignal;
  log: Logger;
  probe: (timeoutMs: number) => Promise<ProbeFailure | null>;
}): Promise<void> {
  const { app, installed, check } = opts;
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration(check.timeout ?? DEFAULT_HEALTH_TIMEOUT);
  } catch (err) {
    throw new AppApplyError('health-check-invalid', `${app} ${installed.version}: healthCheck.timeout: ${(err as Error).message}`, { touchedPrevious: true, partial: installed });
  }
  const attempts = 1 + Math.max(0, check.retries ?? DEFAULT_HEALTH_RETRIES);
  let reason = '';
  let tried = 0;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    tried = attempt;
    const problem = await opts.probe(timeoutMs);
    if (problem === null) return;
    reason = problem.reason;
    opts.log.warn({ app, version: installed.version, attempt, attempts, reason }, 'health check failed');
    if (problem.final) break;
    if (attempt < attempts) await sleep(opts.intervalMs, opts.signal);
  }
  throw new AppApplyError('health-check-failed', `${app} ${installed.version} failed its health check ${tried} time(s): ${reason}`, { touchedPrevious: true, partial: installed });
}
