import { CascadeError } from '../core/errors.js';

/**
 * The whole-request deadline of one HTTP request to the git host (`--git-timeout`). The idle timeout
 * only notices a host that goes quiet; a host that trickles one byte every few seconds never is, and
 * would hold the region's pass (and every webhook queued behind it) for as long as it likes. When the
 * deadline passes, the socket is aborted and whatever waits on the request or its body fails with a
 * temporary `source-timeout` error: the pass reports it in `source.error`, and the next pass tries again.
 */
export class RequestDeadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly expiredPromise: Promise<never>;
  /** The error, once the deadline has passed. */
  expired: CascadeError | null = null;

  constructor(
    readonly deadlineMs: number,
    repoUrl: string,
    requestUrl: string,
    onExpired?: (err: CascadeError) => void,
  ) {
    let fail!: (err: CascadeError) => void;
    this.expiredPromise = new Promise<never>((_, reject) => (fail = reject));
    // Nobody may be waiting yet when it fires.
    this.expiredPromise.catch(() => undefined);
    this.timer = setTimeout(() => {
      const path = requestUrl.startsWith(repoUrl) ? requestUrl.slice(repoUrl.length) || '/' : requestUrl;
      this.expired = new CascadeError(
        'source-timeout',
        `the fleet repository ${repoUrl} did not complete a request (${path}) within ${Math.round(deadlineMs / 100) / 10} s (--git-timeout); gave up on it, the next pass tries again`,
        { repo: repoUrl, deadlineMs },
      );
      this.controller.abort(this.expired);
      onExpired?.(this.expired);
      fail(this.expired);
    }, deadlineMs);
    this.timer.unref();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** `promise`, or the deadline's error if that comes first. */
  race<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([promise, this.expiredPromise]);
  }

  /** The body, chunk by chunk, failing at the deadline even while a chunk is awaited; the deadline ends with the body. */
  async *iterate(body: AsyncIterable<Uint8Array> | AsyncIterableIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
    const iterator = (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await this.race(iterator.next());
        if (next.done) return;
        yield next.value;
      }
    } finally {
      this.done();
      if (this.expired) this.controller.abort(this.expired);
      void iterator.return?.();
    }
  }

  /** The request completed (or failed otherwise): the deadline no longer applies. */
  done(): void {
    clearTimeout(this.timer);
  }
}
