import type { DeviceId } from '../../core/types.js';

/**
 * One request waiting for its device's handed state to change. The long-poll handler keeps its
 * own request state on a subclass, so a held poll costs this one object and one timer.
 */
export abstract class DesiredWaiter {
  /** Armed while held: the waiter times out when it fires. */
  timer: NodeJS.Timeout | null = null;
  /** The next waiter of the same device (most devices hold one poll at a time, so no set per device). */
  nextOfDevice: DesiredWaiter | null = null;
  held = false;

  constructor(
    readonly deviceId: DeviceId,
    /** The generation the request already has. */
    public knownGeneration: number,
  ) {}

  /** Called once per `hold`, when released: notified, timed out, or closeAll. Never after `cancel`. */
  abstract wake(): void;
}

/** A timer callback shared by every waiter: no closure per waiting request. */
function expire(watchers: DesiredWatchers, waiter: DesiredWaiter): void {
  waiter.timer = null;
  watchers.release(waiter);
}

/** The waiter behind the promise of `DesiredWatchers.wait`. */
class PromiseWaiter extends DesiredWaiter {
  onAbort: (() => void) | null = null;

  constructor(
    deviceId: DeviceId,
    knownGeneration: number,
    private readonly resolve: () => void,
  ) {
    super(deviceId, knownGeneration);
  }

  wake(): void {
    this.resolve();
  }
}

/**
 * Long-poll requests waiting for a device's handed state to change, indexed by device, so
 * thousands of open polls cost little: one waiter object and one timer each.
 *
 * Whoever changes handed state (the reconciler, after `StateStore.handOut`) calls `notify` with the
 * devices it may have changed. With `generationOf`, a waiter is only woken when its device's
 * generation really moved; without it, every notify wakes the device's waiters and the caller
 * re-checks.
 */
export class DesiredWatchers {
  /** First waiter of each device with any; the rest follow `nextOfDevice`. */
  private readonly waiting = new Map<DeviceId, DesiredWaiter>();
  private count = 0;
  private closed = false;

  constructor(private readonly generationOf?: (deviceId: DeviceId) => number) {}

  /** Number of requests waiting now. */
  get size(): number {
    return this.count;
  }

  /** Does the device hold a long poll open right now (it is connected)? */
  isWaiting(deviceId: DeviceId): boolean {
    return this.waiting.has(deviceId);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Holds `waiter` until its device is notified (and, with `generationOf`, its generation differs
   * from `waiter.knownGeneration`), `timeoutMs` passes, or closeAll; then calls `waiter.wake()`.
   * Returns false, holding nothing, when it would wake at once: closed, no time left, or the
   * generation moved already.
   */
  hold(waiter: DesiredWaiter, timeoutMs: number): boolean {
    if (waiter.held) throw new Error(`a waiter of device ${waiter.deviceId} is held twice`);
    if (this.closed || timeoutMs <= 0) return false;
    if (this.generationOf && this.generationOf(waiter.deviceId) !== waiter.knownGeneration) return false;
    waiter.held = true;
    waiter.nextOfDevice = this.waiting.get(waiter.deviceId) ?? null;
    this.waiting.set(waiter.deviceId, waiter);
    this.count++;
    waiter.timer = setTimeout(expire, timeoutMs, this, waiter);
    return true;
  }

  /** Stops holding `waiter` without waking it (its client is gone). */
  cancel(waiter: DesiredWaiter): void {
    this.unlink(waiter);
  }

  /** Wakes `waiter` now, if held (its time is up). */
  release(waiter: DesiredWaiter): void {
    if (this.unlink(waiter)) waiter.wake();
  }

  /**
   * Resolves when the device is notified (and, with `generationOf`, its generation differs from
   * `knownGeneration`), when `timeoutMs` passes, when `signal` aborts (client gone) or on closeAll.
   * Never rejects.
   */
  wait(deviceId: DeviceId, knownGeneration: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const waiter = new PromiseWaiter(deviceId, knownGeneration, () => {
        if (waiter.onAbort) signal?.removeEventListener('abort', waiter.onAbort);
        resolve();
      });
      if (!this.hold(waiter, timeoutMs)) return resolve();
      if (signal) {
        waiter.onAbort = () => this.release(waiter);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
    });
  }

  notify(deviceIds: Iterable<DeviceId>): void {
    for (const deviceId of deviceIds) {
      let waiter: DesiredWaiter | null = this.waiting.get(deviceId) ?? null;
      if (!waiter) continue;
      const generation = this.generationOf?.(deviceId);
      // Unlink every waiter to wake before waking any: a woken waiter may be held again at once.
      let woken: DesiredWaiter[] | null = null;
      while (waiter) {
        const next: DesiredWaiter | null = waiter.nextOfDevice;
        if (generation === undefined || generation !== waiter.knownGeneration) {
          this.unlink(waiter);
          (woken ??= []).push(waiter);
        }
        waiter = next;
      }
      if (woken) for (const w of woken) w.wake();
    }
  }

  /** Releases every waiting request and makes later holds and waits return at once (the server is stopping). */
  closeAll(): void {
    this.closed = true;
    const woken: DesiredWaiter[] = [];
    for (const first of this.waiting.values()) {
      for (let waiter: DesiredWaiter | null = first; waiter; waiter = waiter.nextOfDevice) woken.push(waiter);
    }
    for (const waiter of woken) this.unlink(waiter);
    for (const waiter of woken) waiter.wake();
  }

  /** Takes `waiter` out of its device's chain; false when it was not held. */
  private unlink(waiter: DesiredWaiter): boolean {
    if (!waiter.held) return false;
    waiter.held = false;
    if (waiter.timer !== null) {
      clearTimeout(waiter.timer);
      waiter.timer = null;
    }
    const first = this.waiting.get(waiter.deviceId);
    if (first === waiter) {
      if (waiter.nextOfDevice) this.waiting.set(waiter.deviceId, waiter.nextOfDevice);
      else this.waiting.delete(waiter.deviceId);
    } else {
      for (let before: DesiredWaiter | null = first ?? null; before; before = before.nextOfDevice) {
        if (before.nextOfDevice === waiter) {
          before.nextOfDevice = waiter.nextOfDevice;
          break;
        }
      }
    }
    waiter.nextOfDevice = null;
    this.count--;
    return true;
  }
}
