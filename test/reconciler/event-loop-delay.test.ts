import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { watchEventLoopDelay } from '../../src/reconciler/event-loop-delay.js';

/** Holds the event loop for `ms` of wall-clock time, as a synchronous pass or a start-up would. */
function stall(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

/** Lets the overdue sampling timer run (it expired before this one, so it fires first). */
const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('the event loop lateness the enrolment limiter reads', () => {
  let stop: (() => void) | null = null;
  afterEach(() => {
    stop?.();
    stop = null;
  });

  it('is not "behind" after one stall (start-up, a checkpoint): the loop is free again right after it', async () => {
    const watch = watchEventLoopDelay(new Registry());
    stop = watch.stop;
    await new Promise((resolve) => setTimeout(resolve, 100));
    stall(600);
    await turn();
    expect(watch.lagMs()).toBeLessThan(500);
  });

  it('is "behind" when the loop has been late sample after sample', async () => {
    const watch = watchEventLoopDelay(new Registry());
    stop = watch.stop;
    for (let i = 0; i < 3; i++) {
      stall(600);
      await turn();
    }
    expect(watch.lagMs()).toBeGreaterThanOrEqual(500);
    // Once it keeps up again, it is not behind any more.
    for (let i = 0; i < 100 && watch.lagMs() >= 500; i++) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(watch.lagMs()).toBeLessThan(500);
  });
});
