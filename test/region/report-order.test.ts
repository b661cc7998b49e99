import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FleetIndex } from '../../src/reconciler/fleet-index.js';
import { ReportOrder } from '../../src/region/report-order.js';
import { createSecurityMetrics } from '../../src/region/security-metrics.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';

describe('report order (a real SQLite store)', () => {
  it('applies exactly the reports whose seq is above every seq applied before, whatever order they arrive in', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cascade-order-'));
    const store = SqliteStateStore.open(join(dir, 'data'));
    try {
      store.enrollDevice('dev', {}, 'hash', 0);
      await fc.assert(
        fc.asyncProperty(fc.array(fc.option(fc.integer({ min: 0, max: 50 }), { nil: undefined }), { maxLength: 40 }), async (seqs) => {
          store.clearReportSeq('dev');
          const metrics = createSecurityMetrics(new Registry());
          const order = new ReportOrder(store, metrics, pino({ level: 'silent' }));
          let highest = -1;
          let ignored = 0;
          for (const seq of seqs) {
            const expected = seq === undefined || seq > highest;
            if (seq !== undefined && expected) highest = seq;
            if (!expected) ignored++;
            expect(order.accept('dev', seq, 'http')).toBe(expected);
          }
          const counted = (await metrics.reportsOutOfOrder.get()).values.reduce((sum, v) => sum + v.value, 0);
          expect(counted).toBe(ignored);
        }),
        { numRuns: 200 },
      );
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('report order in the fleet index (in memory, written with the batches)', () => {
  it('decides as the store does, and what it accepted survives a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cascade-order-index-'));
    const log = pino({ level: 'silent' });
    const open = () => new FleetIndex({ durable: SqliteStateStore.open(join(dir, 'data')), clock: () => 0, offlineAfterMs: () => 600_000, log });
    let index = open();
    try {
      index.enrollDevice('dev', {}, 'hash', 0);
      await index.whenWritten();
      await fc.assert(
        fc.asyncProperty(fc.array(fc.option(fc.integer({ min: 0, max: 50 }), { nil: undefined }), { maxLength: 40 }), async (seqs) => {
          index.clearReportSeq('dev');
          const order = new ReportOrder(index, createSecurityMetrics(new Registry()), log);
          let highest = -1;
          for (const seq of seqs) {
            const expected = seq === undefined || seq > highest;
            if (seq !== undefined && expected) highest = seq;
            expect(order.accept('dev', seq, 'mqtt')).toBe(expected);
          }
        }),
        { numRuns: 100 },
      );
      index.clearReportSeq('dev');
      expect(index.acceptReportSeq('dev', 7)).toBe(true);
      expect(index.acceptReportSeq('unknown', 1)).toBe(false);
      index.close();
      index = open();
      expect(index.acceptReportSeq('dev', 7)).toBe(false);
      expect(index.acceptReportSeq('dev', 8)).toBe(true);
    } finally {
      index.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
