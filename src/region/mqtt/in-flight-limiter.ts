/**
 * At most `size` holders at once, released in arrival order: keeps the QoS 1 messages in flight
 * within the Receive Maximum the broker announced.
 */
export class InFlightLimiter {
  private inUse = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private size: number) {}

  /** The broker may announce another maximum at each connection. */
  resize(size: number): void {
    this.size = Math.max(1, size);
    while (this.inUse < this.size && this.waiting.length > 0) {
      this.inUse++;
      this.waiting.shift()!();
    }
  }

  acquire(): Promise<void> {
    if (this.inUse < this.size) {
      this.inUse++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.inUse--;
  }
}
