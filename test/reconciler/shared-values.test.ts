import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { FleetIndex } from '../../src/reconciler/fleet-index.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';

/**
 * The fleet index shares one frozen copy of each label set and report (issue 11: memory per device).
 * Sharing must never hand a device what another device said: a hostile value with a NUL in it must
 * not spell the key of another device's set.
 */
describe('label sets and reports shared in the fleet index', () => {
  it('shares equal sets, and never confuses a set with a value that embeds the key separator', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cascade-shared-'));
    const index = new FleetIndex({ durable: SqliteStateStore.open(join(dir, 'data')), clock: () => 1_000, offlineAfterMs: () => 600_000, log: pino({ level: 'silent' }) });
    try {
      index.enrollDevice('honest-1', { ring: 'canary', hold: 'true' }, 'h1', 1_000);
      index.enrollDevice('honest-2', { ring: 'canary', hold: 'true' }, 'h2', 1_000);
      index.enrollDevice('hostile', { ring: 'canary\0hold\0true' }, 'h3', 1_000);
      expect(index.getDevice('honest-1')!.labels).toBe(index.getDevice('honest-2')!.labels);
      expect(index.getDevice('hostile')!.labels).toEqual({ ring: 'canary\0hold\0true' });

      index.recordReport('honest-1', { web: { version: '1.0.0', state: 'healthy' } }, 2_000);
      index.recordReport('honest-2', { web: { version: '1.0.0', state: 'healthy' } }, 2_000);
      index.recordReport('hostile', { 'web\u00001.0.0\u0000healthy\u0000x': { version: null, state: 'healthy' } } as never, 2_000);
      expect(index.getDevice('honest-1')!.apps).toBe(index.getDevice('honest-2')!.apps);
      expect(Object.keys(index.getDevice('hostile')!.apps)).toEqual(['web\u00001.0.0\u0000healthy\u0000x']);
      // A removed app (version null) and a version spelled like the marker stay apart.
      index.recordReport('honest-1', { web: { version: null, state: 'healthy' } }, 3_000);
      index.recordReport('honest-2', { web: { version: 'n', state: 'healthy' } }, 3_000);
      expect(index.getDevice('honest-1')!.apps['web']!.version).toBeNull();
      expect(index.getDevice('honest-2')!.apps['web']!.version).toBe('n');
      // Shared values are frozen: nothing changes one device's labels through another's.
      expect(Object.isFrozen(index.getDevice('honest-1')!.labels)).toBe(true);
    } finally {
      index.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
