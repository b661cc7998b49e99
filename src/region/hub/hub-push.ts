import type { Logger } from 'pino';
import { SIGNATURE_HEADER, signBody } from '../../protocol/hub-auth.js';
import { SUMMARY_PATH, type HubSummary, type HubSummaryInput } from '../../protocol/hub-summary.js';

export interface HubPushOptions {
  hubUrl: string;
  /** This region's token: `cascade hub region-token REGION --token <hub secret>`. */
  token: string;
  region: string;
  /**
   * Builds the current summary; called at push time, so a push always carries the latest state.
   * Null: nothing to report yet (e.g. before the region's first pass), and no push happens.
   */
  summary: () => HubSummaryInput | null;
  log: Logger;
  /** Heartbeat: a push at least this often, changed or not. Default 15 s. */
  intervalMs?: number;
  /** changed() calls within this time make one push. Default 250 ms. */
  debounceMs?: number;
  /** Longest wait between retries while the hub is down. Default 30 s. */
  maxBackoffMs?: number;
  timeoutMs?: number;
  clock?: () => number;
}

export interface HubPushState {
  /** The last push the hub accepted: its sequence and when (region clock); null before the first. */
  lastAccepted: { sequence: number; at: number } | null;
  /** Why the last push failed; null when it succeeded. */
  lastError: string | null;
  /** Consecutive failed pushes. */
  failures: number;
}

export interface HubPush {
  /** Something changed: push soon (debounced). Never blocks, never throws. */
  changed(): void;
  state(): HubPushState;
  /** Stops pushing; an in-flight push is abandoned. */
  close(): Promise<void>;
}

export const DEFAULT_HEARTBEAT_MS = 15_000;
const DEFAULT_DEBOUNCE_MS = 250;
const DEFAULT_MAX_BACKOFF_MS = 30_000;
const FIRST_RETRY_MS = 500;
const DEFAULT_TIMEOUT_MS = 10_000;

class PushError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly lastSequence: number | null = null,
  ) {
    super(message);
  }
}

/**
 * The region side of the cloud view: pushes a signed summary on changed() (debounced) and on every
 * heartbeat. While the hub is down it retries with backoff, always with the latest summary (only
 * the latest matters), and the region never waits for it.
 */
export function startHubPush(opts: HubPushOptions): HubPush {
  const clock = opts.clock ?? Date.now;
  const intervalMs = opts.intervalMs ?? DEFAULT_HEARTBEAT_MS;
  const debounceMs = opts.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  const maxBackoffMs = opts.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const url = new URL(SUMMARY_PATH(opts.region), opts.hubUrl).toString();
  const log = opts.log.child({ hub: opts.hubUrl });

  let sequence = 0;
  let closed = false;
  let inFlight: Promise<void> | null = null;
  let controller: AbortController | null = null;
  let pendingAfterFlight = false;
  let debounce: NodeJS.Timeout | null = null;
  let retry: NodeJS.Timeout | null = null;
  const state: HubPushState = { lastAccepted: null, lastError: null, failures: 0 };

  // Survives restarts without storing anything: the clock moves forward, and a hub that kept a
  // higher sequence says so in its 409, which moves ours past it.
  const nextSequence = () => (sequence = Math.max(sequence + 1, clock()));

  async function send(): Promise<void> {
    const input = opts.summary();
    if (input === null) return;
    const summary: HubSummary = { ...input, region: opts.region, sequence: nextSequence(), at: clock() };
    const body = JSON.stringify(summary);
    controller = new AbortController();
    const timer = setTimeout(() => controller?.abort(), timeoutMs);
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.token}`, [SIGNATURE_HEADER]: signBody(opts.token, body) },
        body,
        signal: controller.signal,
      });
    } catch (err) {
      const cause = (err as Error).cause as Error | undefined;
      throw new PushError(controller.signal.aborted ? `no answer within ${timeoutMs} ms` : (cause?.message ?? (err as Error).message), null);
    } finally {
      clearTimeout(timer);
      controller = null;
    }
    const text = await response.text().catch(() => '');
    if (response.ok) {
      state.lastAccepted = { sequence: summary.sequence, at: summary.at };
      return;
    }
    let answer: { error?: { code?: string; message?: string }; lastSequence?: number } = {};
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      // not JSON: reported as text below
    }
    const message = answer.error ? `${answer.error.message} [${answer.error.code}]` : text.slice(0, 200);
    throw new PushError(`hub answered ${response.status}: ${message}`, response.status, typeof answer.lastSequence === 'number' ? answer.lastSequence : null);
  }

  async function pushOnce(): Promise<void> {
    try {
      try {
        await send();
      } catch (err) {
        // The hub kept a newer sequence (e.g. from before a restart with a slower clock): move past it once.
        if (err instanceof PushError && err.status === 409 && err.lastSequence !== null && !closed) {
          sequence = Math.max(sequence, err.lastSequence);
          await send();
        } else throw err;
      }
      if (state.failures > 0) log.info({ failures: state.failures }, 'hub reachable again; pushed the latest summary');
      state.failures = 0;
      state.lastError = null;
    } catch (err) {
      if (closed) return;
      const message = err instanceof Error ? err.message : String(err);
      state.failures++;
      state.lastError = message;
      const delay = Math.min(FIRST_RETRY_MS * 2 ** (state.failures - 1), maxBackoffMs);
      // Say it once when it starts failing, then only now and then: the hub may be down for long.
      if (state.failures === 1 || state.failures % 20 === 0) {
        log.warn({ err: message, failures: state.failures, retryInMs: delay }, `cannot push the summary to the hub (${message}); the region keeps working and retries`);
      }
      scheduleRetry(delay);
    }
  }

  function scheduleRetry(delay: number): void {
    if (closed) return;
    if (retry) clearTimeout(retry);
    retry = setTimeout(() => {
      retry = null;
      pushNow();
    }, delay);
    retry.unref();
  }

  function pushNow(): void {
    if (closed) return;
    if (inFlight) {
      pendingAfterFlight = true;
      return;
    }
    // While the hub is down, the scheduled retry sends the latest summary: no extra pushes.
    if (retry) return;
    inFlight = pushOnce().finally(() => {
      inFlight = null;
      if (pendingAfterFlight && !closed) {
        pendingAfterFlight = false;
        pushNow();
      }
    });
  }

  const heartbeat = setInterval(pushNow, intervalMs);
  heartbeat.unref();
  pushNow();

  return {
    changed() {
      if (closed || debounce) return;
      debounce = setTimeout(() => {
        debounce = null;
        pushNow();
      }, debounceMs);
      debounce.unref();
    },
    state: () => ({ ...state, lastAccepted: state.lastAccepted ? { ...state.lastAccepted } : null }),
    async close() {
      closed = true;
      clearInterval(heartbeat);
      if (debounce) clearTimeout(debounce);
      if (retry) clearTimeout(retry);
      controller?.abort();
      await inFlight;
    },
  };
}
