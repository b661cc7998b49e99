import { describe, expect, it } from 'vitest';
import { PassScheduler, type PassRequest } from '../../src/reconciler/pass-scheduler.js';

describe('PassScheduler', () => {
  it('runs one pass at a time and coalesces requests that arrive meanwhile', async () => {
    const runs: PassRequest[] = [];
    let active = 0;
    let maxActive = 0;
    const scheduler = new PassScheduler(async (request) => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs.push(request);
      await new Promise((resolve) => setTimeout(resolve, 20));
      active--;
    }, 5);
    scheduler.request({ fetch: true, reason: 'a' });
    for (let i = 0; i < 100; i++) scheduler.request({ fetch: false, reason: `report ${i}` });
    scheduler.request({ fetch: true, reason: 'b' });
    await scheduler.idle();
    expect(maxActive).toBe(1);
    expect(runs.length).toBe(2);
    expect(runs[1]!.fetch).toBe(true);
  });

  it('survives a failing pass and keeps serving requests', async () => {
    let calls = 0;
    const scheduler = new PassScheduler(async () => {
      calls++;
      if (calls === 1) throw new Error('boom');
    });
    scheduler.request({ fetch: true, reason: 'first' });
    await scheduler.idle();
    scheduler.request({ fetch: true, reason: 'second' });
    await scheduler.idle();
    expect(calls).toBe(2);
  });

  it('runs nothing after close', async () => {
    let calls = 0;
    const scheduler = new PassScheduler(async () => {
      calls++;
    });
    await scheduler.close();
    scheduler.request({ fetch: true, reason: 'late' });
    await scheduler.idle();
    expect(calls).toBe(0);
  });
});
