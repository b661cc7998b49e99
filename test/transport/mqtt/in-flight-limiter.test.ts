import { describe, expect, it } from 'vitest';
import { InFlightLimiter } from '../../../src/region/mqtt/in-flight-limiter.js';

describe('InFlightLimiter', () => {
  it('runs at most `size` holders at once, the rest in arrival order as holders release', () => {
    const limiter = new InFlightLimiter(2);
    const ran: number[] = [];
    for (let i = 0; i < 5; i++) limiter.run(() => ran.push(i));
    expect(ran).toEqual([0, 1]);
    expect(limiter.queued).toBe(3);
    limiter.release();
    expect(ran).toEqual([0, 1, 2]);
    limiter.resize(4);
    expect(ran).toEqual([0, 1, 2, 3, 4]);
    expect(limiter.active).toBe(4);
  });

  it('serves holders that release at once (a publish that fails synchronously) without nesting', () => {
    const limiter = new InFlightLimiter(1);
    let ran = 0;
    let depth = 0;
    let deepest = 0;
    limiter.run(() => ran++);
    for (let i = 0; i < 100_000; i++) {
      limiter.run(() => {
        ran++;
        depth++;
        deepest = Math.max(deepest, depth);
        limiter.release();
        depth--;
      });
    }
    limiter.release();
    expect(ran).toBe(100_001);
    expect(deepest).toBe(1);
    expect(limiter.active).toBe(0);
    expect(limiter.queued).toBe(0);
  });
});
