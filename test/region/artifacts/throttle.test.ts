import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { wantedRange } from '../../../src/region/artifacts/artifact-routes.js';
import { Slots, TokenBucket } from '../../../src/region/artifacts/throttle.js';

describe('TokenBucket', () => {
  it('never lets more than rate x time + burst through, whatever the request sizes and timing', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1000, max: 10_000_000 }), fc.array(fc.tuple(fc.integer({ min: 1, max: 200_000 }), fc.integer({ min: 0, max: 500 })), { minLength: 1, maxLength: 200 }), (rate, requests) => {
        let now = 0;
        const bucket = new TokenBucket(rate, { now: () => now });
        let sentBy = 0; // when the last reservation may be sent
        let bytes = 0;
        for (const [size, gap] of requests) {
          now += gap;
          const wait = bucket.reserve(size);
          bytes += size;
          sentBy = Math.max(sentBy, now + wait);
        }
        // Everything reserved is allowed out by sentBy: rate x sentBy + burst covers it, and not by much more.
        expect(bytes).toBeLessThanOrEqual((rate * sentBy) / 1000 + bucket.burst + 1e-6);
      }),
    );
  });

  it('makes a caller wait exactly its deficit', () => {
    let now = 0;
    const bucket = new TokenBucket(1000, { now: () => now, burst: 100 });
    expect(bucket.reserve(100)).toBe(0);
    expect(bucket.reserve(500)).toBe(500);
    now = 500;
    expect(bucket.reserve(100)).toBe(100);
  });
});

describe('Slots', () => {
  it('lets at most `limit` in, the rest in order, and a waiter that gives up leaves the queue', async () => {
    const slots = new Slots(2);
    const a = await slots.acquire();
    await slots.acquire();
    const order: string[] = [];
    const gone = new AbortController();
    const c = slots.acquire().then((release) => (order.push('c'), release));
    const d = slots.acquire(gone.signal).catch(() => order.push('d gave up'));
    const e = slots.acquire().then((release) => (order.push('e'), release));
    gone.abort();
    await d;
    a();
    a(); // releasing twice frees one slot only
    await c;
    expect(order).toEqual(['d gave up', 'c']);
    expect(slots.inUse).toBe(2);
    (await c)();
    await e;
    expect(order).toEqual(['d gave up', 'c', 'e']);
  });
});

describe('wantedRange', () => {
  const etag = '"abc"';
  it.each([
    ['bytes=0-99', 1000, [0, 99]],
    ['bytes=900-', 1000, [900, 999]],
    ['bytes=-100', 1000, [900, 999]],
    ['bytes=990-5000', 1000, [990, 999]],
    ['bytes=1000-', 1000, 'unsatisfiable'],
    ['bytes=-0', 1000, 'unsatisfiable'],
    ['bytes=5-1', 1000, null],
    ['bytes=0-1,5-9', 1000, null],
    ['items=0-1', 1000, null],
    ['bytes=-', 1000, null],
    ['bytes=99999999999999999999-', 1000, null],
  ] as const)('%s of %d bytes', (header, size, expected) => {
    expect(wantedRange(header, undefined, etag, size)).toEqual(expected);
  });

  it('sends the whole file when If-Range names another version', () => {
    expect(wantedRange('bytes=10-', '"other"', etag, 1000)).toBeNull();
    expect(wantedRange('bytes=10-', etag, etag, 1000)).toEqual([10, 999]);
  });

  it('never answers a range outside the file', () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 0, max: 1e9 }), (header, size) => {
        const range = wantedRange(`bytes=${header}`, undefined, etag, size);
        if (Array.isArray(range)) {
          expect(range[0]).toBeGreaterThanOrEqual(0);
          expect(range[1]).toBeLessThan(size);
          expect(range[0]).toBeLessThanOrEqual(range[1]);
        }
      }),
    );
  });
});
