export interface PassRequest {
  /** Fetch the source first (interval, webhook, watched ref). Device events only re-plan. */
  fetch: boolean;
  reason: string;
}

/**
 * Runs reconcile passes one at a time. Requests that arrive while a pass runs are
 * coalesced into a single follow-up pass, so a burst of 2,500 device reports costs
 * a handful of passes, not 2,500. Device-triggered requests wait `settleMs` to gather, or twice
 * as long as the last pass took (at most MAX_SETTLE_MS): under a burst of reports, passes take at
 * most a third of the time and each gathers more of them, so the event loop keeps serving devices.
 */
const MAX_SETTLE_MS = 1_000;

export class PassScheduler {
  private lastPassMs = 0;
  private running: Promise<void> | null = null;
  private pending: PassRequest | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly runPass: (request: PassRequest) => Promise<void>,
    private readonly settleMs = 50,
  ) {}

  /** Asks for a pass now (fetch) or soon (device events). */
  request(request: PassRequest): void {
    if (this.closed) return;
    this.pending = this.pending
      ? {
          fetch: this.pending.fetch || request.fetch,
          // A burst of reports is one reason, not thousands.
          reason: this.pending.reason.split(', ').includes(request.reason) ? this.pending.reason : `${this.pending.reason}, ${request.reason}`,
        }
      : request;
    if (request.fetch) {
      if (this.settleTimer) clearTimeout(this.settleTimer);
      this.settleTimer = null;
      this.kick();
    } else if (!this.settleTimer) {
      this.scheduleSettled();
    }
  }

  private scheduleSettled(): void {
    const settle = Math.max(this.settleMs, Math.min(2 * this.lastPassMs, MAX_SETTLE_MS));
    this.settleTimer = setTimeout(() => {
      this.settleTimer = null;
      this.kick();
    }, settle);
  }

  /** Resolves when no pass is running or pending. */
  idle(): Promise<void> {
    if (!this.running && !this.pending) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pending = null;
    if (this.settleTimer) clearTimeout(this.settleTimer);
    await this.running;
  }

  private kick(): void {
    if (this.running || !this.pending || this.closed) {
      if (!this.running && !this.pending) this.releaseIdle();
      return;
    }
    const request = this.pending;
    this.pending = null;
    const started = performance.now();
    this.running = this.runPass(request)
      .catch(() => {
        // runPass reports its own failures; the scheduler must survive them.
      })
      .finally(() => {
        this.lastPassMs = performance.now() - started;
        this.running = null;
        if (this.pending?.fetch) this.kick();
        else if (this.pending && !this.settleTimer) this.scheduleSettled();
        else if (!this.pending) this.releaseIdle();
      });
  }

  private releaseIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
