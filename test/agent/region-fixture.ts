import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { expect } from 'vitest';
import type { DeviceDesired } from '../../src/core/types.js';
import { DesiredWatchers } from '../../src/region/routes/desired-watchers.js';
import { registerDeviceApi } from '../../src/region/routes/device-routes.js';
import { createRegionHttpServer } from '../../src/http/http-server.js';
import { limitEnrollment, type EnrollmentLimits } from '../../src/region/routes/enrollment-limiter.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';
import type { AppCatalog } from '../../src/reconciler/state-store.js';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ReportOrder } from '../../src/region/report-order.js';
import { createSecurityMetrics } from '../../src/region/security-metrics.js';

export const ENROLLMENT_TOKEN = 'fixture-enrollment-token';

/**
 * A real region without a reconciler: SQLite state in a temp dir and the device API on
 * 127.0.0.1. Tests play the reconciler by handing out desired state themselves.
 */
export class RegionFixture {
  /** Device id of each report received, in order. */
  readonly reports: string[] = [];
  watchers!: DesiredWatchers;
  app!: FastifyInstance;
  url = '';
  private revision = 0;
  private catalog: AppCatalog = {};
  private readonly resolved = new Map<string, DeviceDesired>();

  private constructor(
    readonly dir: string,
    readonly store: SqliteStateStore,
    private readonly enrollmentLimits?: EnrollmentLimits,
    private readonly lagMs?: () => number,
    private readonly reportOrder?: ReportOrder,
  ) {}

  /**
   * With `enrollmentLimits`, enrolments go through the region's limiter (enrollment-limiter.ts) with them, and `lagMs` as the region's
   * event-loop lag. With `reportOrder`, reports are applied in `seq` order as by a real region (report-order.ts): a replay is acknowledged, not applied.
   */
  static async start(opts: { enrollmentLimits?: EnrollmentLimits; lagMs?: () => number; reportOrder?: boolean } = {}): Promise<RegionFixture> {
    const dir = mkdtempSync(join(tmpdir(), 'cascade-region-'));
    const store = SqliteStateStore.open(join(dir, 'data'));
    const order = opts.reportOrder ? new ReportOrder(store, createSecurityMetrics(new Registry()), pino({ level: 'silent' })) : undefined;
    const fixture = new RegionFixture(dir, store, opts.enrollmentLimits, opts.lagMs, order);
    await fixture.listen(0);
    return fixture;
  }

  private async listen(port: number): Promise<void> {
    const store = this.store;
    this.watchers = new DesiredWatchers((id) => store.getHanded(id)?.generation ?? 0);
    this.app = createRegionHttpServer({ log: false });
    if (this.enrollmentLimits) limitEnrollment(this.app, Date.now, this.enrollmentLimits, this.lagMs);
    registerDeviceApi(this.app, {
      store,
      region: 'test-region',
      enrollmentToken: ENROLLMENT_TOKEN,
      watchers: this.watchers,
      clock: Date.now,
      onReport: (id) => this.reports.push(id),
      ...(this.reportOrder ? { reportOrder: this.reportOrder } : {}),
    });
    this.url = await this.app.listen({ host: '127.0.0.1', port });
  }

  /** Stops serving (devices see connection errors) until `resume`. */
  async pause(): Promise<void> {
    await this.app.close();
  }

  /** Serves again on the same port with the same state. */
  async resume(): Promise<void> {
    await this.listen(Number(new URL(this.url).port));
  }

  /** Hands every listed device `apps` (replacing what it had) as a new revision, as a reconcile pass would. */
  handOut(deviceIds: string[], apps: DeviceDesired, catalog: AppCatalog = this.catalog): number {
    this.revision++;
    const revision = `rev${this.revision}`;
    this.catalog = catalog;
    const changes = new Map(deviceIds.map((id) => [id, apps]));
    for (const [id, desired] of changes) this.resolved.set(id, desired);
    this.store.recordApplied(revision, this.resolved, catalog, Date.now());
    const count = this.store.handOut(changes, revision, Date.now());
    this.watchers.notify(changes.keys());
    return count;
  }

  reportsOf(deviceId: string): number {
    return this.reports.filter((id) => id === deviceId).length;
  }

  async close(): Promise<void> {
    await this.app.close();
    this.store.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `condition` until it holds (or fails the test after `timeoutMs`). */
export async function until(condition: () => boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  expect(condition(), `timed out waiting for ${what}`).toBe(true);
}
