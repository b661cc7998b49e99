import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** The hub's Prometheus metrics, on a registry of its own so tests can run several hubs in one process. */
export interface HubMetrics {
  registry: Registry;
  summaries: Counter<'result'>;
  regions: Gauge<'state'>;
  webhookDeliveries: Counter<'result'>;
  webhookPending: Gauge;
}

export function createHubMetrics(): HubMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'cascade_process_' });
  return {
    registry,
    summaries: new Counter({
      name: 'cascade_hub_summaries_total',
      help: 'Region summaries received, by result (accepted, old, rejected)',
      labelNames: ['result'],
      registers: [registry],
    }),
    regions: new Gauge({ name: 'cascade_hub_regions', help: 'Regions known to the hub, by state (fresh, stale)', labelNames: ['state'], registers: [registry] }),
    webhookDeliveries: new Counter({
      name: 'cascade_hub_webhook_deliveries_total',
      help: 'Webhook delivery attempts, by result (delivered, retry, gave-up)',
      labelNames: ['result'],
      registers: [registry],
    }),
    webhookPending: new Gauge({ name: 'cascade_hub_webhook_pending', help: 'Webhook events waiting to be delivered', registers: [registry] }),
  };
}
