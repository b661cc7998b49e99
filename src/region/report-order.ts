import type { Logger } from 'pino';
import type { DeviceId } from '../core/types.js';
import type { DeviceIdentityStore } from '../storage/device-identity-store.js';
import type { SecurityMetrics } from './security-metrics.js';

/**
 * Reports are applied in the order the agent sent them: each carries the agent's sequence number
 * (`seq`), and one that is not above the highest the region holds for the device is a replay or was
 * overtaken on the way (an HTTP retry, a QoS 1 redelivery). It is acknowledged, so the sender does
 * not retry it, but not applied, and counted. Reports without `seq` come from older agents and are
 * applied as they arrive, as before.
 */
export class ReportOrder {
  constructor(
    private readonly store: Pick<DeviceIdentityStore, 'acceptReportSeq'>,
    private readonly metrics: Pick<SecurityMetrics, 'reportsOutOfOrder'>,
    private readonly log: Logger,
  ) {}

  /** Whether the report may be applied; records its `seq` when it may. */
  accept(deviceId: DeviceId, seq: number | undefined, transport: 'http' | 'mqtt'): boolean {
    if (seq === undefined) return true;
    if (this.store.acceptReportSeq(deviceId, seq)) return true;
    this.metrics.reportsOutOfOrder.inc({ transport });
    this.log.info({ deviceId, seq, transport }, `report ${seq} of ${deviceId} ignored: a report with the same or a higher seq was applied already (replayed or overtaken)`);
    return false;
  }
}
