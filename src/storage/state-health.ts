import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { isStateDatabaseFailure } from './open-state-database.js';

/**
 * Whether a service's state database (region or hub) still works. The first failure of the database
 * itself (damaged pages, an unreadable or vanished file, a full disk; not a busy moment) is logged at
 * error and counted, and from then on /healthz (and a region's /readyz) answer 503 with the reason, so
 * the orchestrator restarts the service, whose start-up check then refuses the damaged file with the
 * restore steps.
 */
export class StateHealth {
  private failure: string | null = null;

  constructor(
    private readonly log: Logger,
    private readonly errors: Counter,
    private readonly dataDir: string,
  ) {}

  /** Looks at any error the region met; notes it when it is the database failing. */
  observe(err: unknown): void {
    if (!isStateDatabaseFailure(err)) return;
    this.errors.inc();
    const message = `the state database in ${this.dataDir} fails (${(err as { code?: string }).code}: ${(err as Error).message})`;
    if (this.failure === null) {
      this.failure = message;
      this.log.error({ err }, `${message}; /healthz and /readyz now fail so the service is restarted (it checks the database at start)`);
    } else {
      this.log.error({ err }, message);
    }
  }

  /** Runs `probe` (a cheap read) and returns why the region is unhealthy, or null. */
  check(probe: () => unknown): { reason: string } | null {
    try {
      probe();
    } catch (err) {
      this.observe(err);
    }
    return this.failure === null ? null : { reason: this.failure };
  }
}
