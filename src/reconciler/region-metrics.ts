import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The region's Prometheus metrics, on a registry of its own so several regions can share a process in tests. */
export interface RegionMetrics {
  registry: Registry;
  passDuration: Histogram;
  revisionsApplied: Counter;
  revisionsRefused: Counter;
  updatesSent: Counter;
  devices: Gauge<'state'>;
  rolloutHalted: Gauge<'deployment'>;
  reconcileFailures: Counter<'reason'>;
  /** Differences the periodic full recount found in the in-memory index (each one is a bug). */
  indexDifferences: Counter;
}

/** Resolution of the event-loop delay histograms, ms. */
export const EVENT_LOOP_RESOLUTION_MS = 20;

export function createRegionMetrics(region: string): RegionMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ region });
  // The event-loop histograms (prom-client's and event-loop-delay.ts's) sample every 20 ms, in the same
  // turn: each wake-up of an idle region costs CPU, and at 10 ms the two made 150 a second.
  collectDefaultMetrics({ register: registry, prefix: 'cascade_process_', eventLoopMonitoringPrecision: EVENT_LOOP_RESOLUTION_MS });
  return {
    registry,
    passDuration: new Histogram({
      name: 'cascade_reconcile_pass_duration_seconds',
      help: 'Duration of reconcile passes',
      buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    revisionsApplied: new Counter({ name: 'cascade_revisions_applied_total', help: 'Revisions that passed validation and were applied', registers: [registry] }),
    revisionsRefused: new Counter({ name: 'cascade_revisions_refused_total', help: 'Revisions refused (validation failed); the last good one kept being served', registers: [registry] }),
    updatesSent: new Counter({ name: 'cascade_updates_sent_total', help: 'Desired versions handed to a device that differ from what it was last handed (per device and app)', registers: [registry] }),
    devices: new Gauge({ name: 'cascade_devices', help: 'Devices by state', labelNames: ['state'], registers: [registry] }),
    reconcileFailures: new Counter({ name: 'cascade_reconcile_failures_total', help: 'Failed reconcile steps by reason: temporary (source-unreachable, git-read, ...) or final refusals (not-fast-forward, unsigned, invalid)', labelNames: ['reason'], registers: [registry] }),
    rolloutHalted: new Gauge({ name: 'cascade_rollout_halted', help: '1 while the rollout of a Deployment is Halted', labelNames: ['deployment'], registers: [registry] }),
    indexDifferences: new Counter({
      name: 'cascade_index_resync_differences_total',
      help: 'Differences between the in-memory fleet index and a full recount from the store (--resync-interval); any is a bug',
      registers: [registry],
    }),
  };
}
