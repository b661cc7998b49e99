import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
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
