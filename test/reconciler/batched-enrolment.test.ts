import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { FleetIndex } from '../../src/reconciler/fleet-index.js';
import { SqliteStateStore, type StateBatch } from '../../src/storage/region-state-store.js';

describe('enrolments in the fleet index', () => {
  it('are written in batches: 500 enrolments with their keys and report-order resets in a few transactions, durable once whenWritten resolves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cascade-enrol-batch-'));
    const log = pino({ level: 'silent' });
    const durable = SqliteStateStore.open(join(dir, 'data'));
    let transactions = 0;
    const writeBatch = durable.writeBatch.bind(durable);
    durable.writeBatch = (batch: StateBatch) => {
      transactions++;
      writeBatch(batch);
    };
    const index = new FleetIndex({ durable, clock: () => 1_000, offlineAfterMs: () => 600_000, log });
    try {
      const answers: Array<Promise<void>> = [];
      for (let i = 0; i < 500; i++) {
        const id = `d-${String(i).padStart(3, '0')}`;
        index.enrollDevice(id, { site: String(i % 3) }, `hash-${i}`, 1_000);
        index.setDeviceKey(id, `key-${i}`);
        index.clearReportSeq(id);
        answers.push(index.whenWritten());
      }
      // Nothing is on disk before the batch is written; everything is once its answers resolve.
      const peek = SqliteStateStore.open(join(dir, 'data'));
      expect(peek.listDevices()).toHaveLength(0);
      peek.close();
      await Promise.all(answers);
      expect(transactions).toBeLessThanOrEqual(2);
      expect(index.acceptReportSeq('d-007', 3)).toBe(true);
      index.close();
      const reopened = SqliteStateStore.open(join(dir, 'data'));
      expect(reopened.listDevices()).toHaveLength(500);
      expect(reopened.getDevice('d-042')?.labels).toEqual({ site: '0' });
      expect(reopened.getDeviceKey('d-042')).toBe('key-42');
      expect(reopened.deviceIdForTokenHash('hash-42')).toBe('d-042');
      // The seq accepted after the batch went with the index's last write (close).
      expect(reopened.acceptReportSeq('d-007', 3)).toBe(false);
      expect(reopened.acceptReportSeq('d-007', 4)).toBe(true);
      reopened.close();
    } finally {
      index.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
