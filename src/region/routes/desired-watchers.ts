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

/** Waiters one turn of the event loop wakes after a notify; the rest wait for the next turns. */
export const DEFAULT_WAKE_BATCH = 500;

/** A timer callback shared by every waiter: no closure per waiting request. */
function expire(watchers: DesiredWatchers, waiter: DesiredWaiter): void {
  waiter.timer = null;
  watchers.release(waiter);
}

function wakeNext(watchers: DesiredWatchers): void {
  DesiredWatchers.wakeNext(watchers);
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
  /** Waiters taken off by `notify`, still to be woken, in order; `wakeFrom` is the next one. */
  private toWake: DesiredWaiter[] = [];
  private wakeFrom = 0;
  private wakeScheduled = false;
  private readonly wakeBatch: number;

  /**
   * @param generationOf the generation each device has now (see `notify`).
   * @param options.wakeBatch how many waiters one turn of the event loop wakes (default 500): a commit that
   * changes 15,000 devices answers their polls over many turns, so reports, status calls and new polls go on
   * in between instead of waiting for the last answer.
   */
  constructor(
    private readonly generationOf?: (deviceId: DeviceId) => number,
    options: { wakeBatch?: number } = {},
  ) {
    this.wakeBatch = Math.max(1, options.wakeBatch ?? DEFAULT_WAKE_BATCH);
  }

  /** Waiters notified and not woken yet (they wake over the next turns of the event loop). */
  get pendingWakes(): number {
    return this.toWake.length - this.wakeFrom;
  }

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

  /**
   * The devices' handed state may have changed: wakes their waiters (with `generationOf`, only those
   * whose generation moved). Every such waiter is taken off at once (a later `hold` of the device waits
   * for the next change), but they are woken `wakeBatch` per turn of the event loop: the first batch
   * now, the rest from setImmediate, in the order notified.
   */
  notify(deviceIds: Iterable<DeviceId>): void {
    const before = this.toWake.length;
    for (const deviceId of deviceIds) {
      let waiter: DesiredWaiter | null = this.waiting.get(deviceId) ?? null;
      if (!waiter) continue;
      const generation = this.generationOf?.(deviceId);
      // Unlink every waiter to wake before waking any: a woken waiter may be held again at once.
      while (waiter) {
        const next: DesiredWaiter | null = waiter.nextOfDevice;
        if (generation === undefined || generation !== waiter.knownGeneration) {
          this.unlink(waiter);
          this.toWake.push(waiter);
        }
        waiter = next;
      }
    }
    if (this.toWake.length > before && !this.wakeScheduled) this.wakeSome();
  }

  /** Wakes the next batch of notified waiters, and schedules the following one. */
  private wakeSome(): void {
    this.wakeScheduled = false;
    const end = Math.min(this.toWake.length, this.wakeFrom + this.wakeBatch);
    // A wake may notify again (and push more): those wait for a later batch.
    while (this.wakeFrom < end) {
      const waiter = this.toWake[this.wakeFrom]!;
      this.toWake[this.wakeFrom++] = undefined as unknown as DesiredWaiter;
      waiter.wake();
    }
    if (this.wakeFrom < this.toWake.length) {
      this.wakeScheduled = true;
      setImmediate(wakeNext, this);
    } else {
      this.toWake = [];
      this.wakeFrom = 0;
    }
  }

  /** @internal setImmediate callback (no closure per notify). */
  static wakeNext(watchers: DesiredWatchers): void {
    if (watchers.wakeScheduled) watchers.wakeSome();
  }

  /** Releases every waiting request and makes later holds and waits return at once (the server is stopping). */
  closeAll(): void {
    this.closed = true;
    // Notified waiters still queued are woken now, with the rest.
    const woken: DesiredWaiter[] = this.toWake.slice(this.wakeFrom);
    this.toWake = [];
    this.wakeFrom = 0;
    this.wakeScheduled = false;
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
