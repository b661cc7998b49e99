import type { DeviceId } from '../core/types.js';

interface Waiter {
  knownGeneration: number;
  release: () => void;
}

/**
 * Long-poll requests waiting for a device's handed state to change. One timer and one small
 * record per waiting request, indexed by device, so thousands of open polls cost little.
 *
 * Whoever changes handed state (the reconciler, after `StateStore.handOut`) calls `notify` with the
 * devices it may have changed. With `generationOf`, a waiter is only woken when its device's
 * generation really moved; without it, every notify wakes the device's waiters and the caller
 * re-checks.
 */
export class DesiredWatchers {
  private readonly waiting = new Map<DeviceId, Set<Waiter>>();
  private closed = false;

  constructor(private readonly generationOf?: (deviceId: DeviceId) => number) {}

  /** Number of requests waiting now. */
  get size(): number {
    let count = 0;
    for (const set of this.waiting.values()) count += set.size;
    return count;
  }

  /** Does the device hold a long poll open right now (it is connected)? */
  isWaiting(deviceId: DeviceId): boolean {
    return this.waiting.has(deviceId);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Resolves when the device is notified (and, with `generationOf`, its generation differs from
   * `knownGeneration`), when `timeoutMs` passes, when `signal` aborts (client gone) or on closeAll.
   * Never rejects.
   */
  wait(deviceId: DeviceId, knownGeneration: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || signal?.aborted || timeoutMs <= 0) return Promise.resolve();
    if (this.generationOf && this.generationOf(deviceId) !== knownGeneration) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let set = this.waiting.get(deviceId);
      if (!set) {
        set = new Set();
        this.waiting.set(deviceId, set);
      }
      const waiters = set;
      const onAbort = () => waiter.release();
      const timer = setTimeout(() => waiter.release(), timeoutMs);
      const waiter: Waiter = {
        knownGeneration,
        release: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          waiters.delete(waiter);
          if (waiters.size === 0 && this.waiting.get(deviceId) === waiters) this.waiting.delete(deviceId);
          resolve();
        },
      };
      waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  notify(deviceIds: Iterable<DeviceId>): void {
    for (const deviceId of deviceIds) {
      const set = this.waiting.get(deviceId);
      if (!set) continue;
      const generation = this.generationOf?.(deviceId);
      for (const waiter of [...set]) {
        if (generation === undefined || generation !== waiter.knownGeneration) waiter.release();
      }
    }
  }

  /** Releases every waiting request and makes later waits return at once (the server is stopping). */
  closeAll(): void {
    this.closed = true;
    for (const set of [...this.waiting.values()]) {
      for (const waiter of [...set]) waiter.release();
    }
    this.waiting.clear();
  }
}
