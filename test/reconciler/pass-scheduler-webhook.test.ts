import { describe, expect, it } from 'vitest';
import { PassScheduler, type PassRequest } from '../../src/reconciler/pass-scheduler.js';

describe('a webhook during a stuck pass', () => {
  it('is not lost: a fresh fetching pass runs once the stuck one ends, however it ends', async () => {
    const runs: PassRequest[] = [];
    let release!: () => void;
    const stuck = new Promise<void>((resolve) => (release = resolve));
    const scheduler = new PassScheduler(async (request) => {
      runs.push(request);
      if (runs.length === 1) {
        await stuck;
        throw new Error('source-timeout');
      }
    });
    scheduler.request({ fetch: true, reason: 'interval' });
    scheduler.request({ fetch: true, reason: 'POST /api/v1/reconcile' });
    scheduler.request({ fetch: false, reason: 'device reported' });
    expect(runs).toHaveLength(1);
    release();
    await scheduler.idle();
    expect(runs).toEqual([
      { fetch: true, reason: 'interval' },
      { fetch: true, reason: 'POST /api/v1/reconcile, device reported' },
    ]);
    await scheduler.close();
  });
});
