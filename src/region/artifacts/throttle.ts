/**
 * The relay's limits on the site's link: one token bucket for the bytes of all devices together
 * (`--relay-rate`) and a number of downloads served at once (`--relay-concurrency`).
 *
 * Promise: over any stretch of time T the bucket lets through at most rate × T + burst bytes. Callers
 * reserve before they write; a caller that overdraws waits until the bucket is back at zero, so
 * waiting callers are served in the order they asked and none starves.
 */

export class TokenBucket {
  private tokens: number;
  private updatedAt: number;
  readonly burst: number;

  constructor(
    readonly bytesPerSecond: number,
    opts: { burst?: number; now?: () => number } = {},
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError('a token bucket needs a positive rate');
    this.now = opts.now ?? (() => performance.now());
    // A small burst (1/20 s of traffic, at least 16 KiB): the rate holds over short stretches too.
    this.burst = opts.burst ?? Math.max(16 * 1024, Math.floor(bytesPerSecond / 20));
    this.tokens = this.burst;
    this.updatedAt = this.now();
  }

  private readonly now: () => number;

  /** Milliseconds to wait before sending `bytes` (0 when they may go now); the bytes are reserved either way. */
  reserve(bytes: number): number {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.updatedAt) / 1000) * this.bytesPerSecond);
    this.updatedAt = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.bytesPerSecond) * 1000;
  }

  /** Resolves when `bytes` may be sent; rejects when `signal` aborts. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const waitMs = this.reserve(bytes);
    if (waitMs <= 0) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.ceil(waitMs));
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** At most `limit` holders at once; the others wait in order. */
export class Slots {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError('at least one slot');
  }

  get inUse(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves with a release function once a slot is free; rejects (and leaves the queue) when `signal` aborts. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    const release = once(() => {
      this.active--;
      const next = this.waiting.shift();
      if (next) next();
    });
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        this.active++;
        resolve(release);
      };
      const onAbort = () => {
        const at = this.waiting.indexOf(grant);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(signal!.reason);
      };
      if (signal?.aborted) return onAbort();
      this.waiting.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
