/**
 * At most `size` holders at once, served in arrival order: keeps the QoS 1 messages in flight
 * within the Receive Maximum the broker announced. Callback-based and synchronous while there is
 * room, so a batch of 50,000 publishes costs no promise per message.
 */
export class InFlightLimiter {
  private inUse = 0;
  private waiting: (() => void)[] = [];
  /** Index of the next waiter in `waiting` (a queue without O(n) shifts). */
  private head = 0;
  /** A holder released inside `drain` (a callback that failed at once) is served by that same loop, not by a nested one. */
  private draining = false;

  constructor(private size: number) {}

  /** The broker may announce another maximum at each connection. */
  resize(size: number): void {
    this.size = Math.max(1, size);
    this.drain();
  }

  /** Holders now, and holders waiting for room. */
  get active(): number {
    return this.inUse;
  }

  get queued(): number {
    return this.waiting.length - this.head;
  }

  /** Runs `run` now when there is room (synchronously), otherwise once a holder releases. */
  run(run: () => void): void {
    if (this.inUse < this.size && this.queued === 0) {
      this.inUse++;
      run();
    } else {
      this.waiting.push(run);
    }
  }

  acquire(): Promise<void> {
    return new Promise((resolve) => this.run(resolve));
  }

  release(): void {
    this.inUse--;
    this.drain();
  }

  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      this.serve();
    } finally {
      this.draining = false;
    }
  }

  private serve(): void {
    while (this.inUse < this.size && this.head < this.waiting.length) {
      const next = this.waiting[this.head]!;
      this.waiting[this.head++] = undefined as unknown as () => void;
      if (this.head === this.waiting.length) {
        this.waiting = [];
        this.head = 0;
      }
      this.inUse++;
      next();
    }
  }
}
