import { Counter, type Registry } from 'prom-client';

/** Counters of refused or ignored device traffic and of state failures, on the region's registry. */
export interface SecurityMetrics {
  enrollmentRefusals: Counter<'reason'>;
  reportsOutOfOrder: Counter<'transport'>;
  stateDatabaseErrors: Counter;
}

export function createSecurityMetrics(registry: Registry): SecurityMetrics {
  return {
    enrollmentRefusals: new Counter({
      name: 'cascade_enrollment_refusals_total',
      help: 'Enrolments and token renewals refused because they did not prove the device key, by reason: key-required (a keyless request for an id bound to a key), key-mismatch, proof-invalid, pending-key-mismatch, revoked',
      labelNames: ['reason'],
      registers: [registry],
    }),
    reportsOutOfOrder: new Counter({
      name: 'cascade_reports_out_of_order_total',
      help: 'Device reports acknowledged but not applied because their seq was not above the highest already held (replayed or overtaken), by transport',
      labelNames: ['transport'],
      registers: [registry],
    }),
    stateDatabaseErrors: new Counter({
      name: 'cascade_state_database_errors_total',
      help: 'Errors of the state database while running; after one, /healthz and /readyz fail so the region is restarted',
      registers: [registry],
    }),
  };
}
