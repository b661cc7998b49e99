import type { Logger } from 'pino';
import { describeHalt } from '../plan/rollout/totals.js';
import { signBody } from '../protocol/hub-auth.js';
import type { HubStore, WebhookEventRecord } from '../storage/hub-store.js';
import type { RevisionState, RevisionView } from './views.js';

/** The JSON body POSTed to every webhook when a commit's overall state changes. */
export interface RevisionStateEvent {
  type: 'revision.state';
  /** Unique per event and hub data dir: receivers can drop duplicates of a retried delivery. */
  id: string;
  revision: string;
  state: RevisionState;
  previous: RevisionState | null;
  regions: Record<
    string,
    {
      applied: boolean;
      refused: boolean;
      stale: boolean;
      errors?: string[];
      deployments: Record<
        string,
        {
          version: string;
          state: string;
          devices: number;
          converged: number;
          updating: number;
          pending: number;
          failed: number;
          offline: number;
          halted?: string;
          /** onHalt: the revert the region pushed (`outcome`, `commit`, `branch`), or why it did not. */
          revert?: { mode: string; outcome: string; commit?: string; branch?: string; message: string };
        }
      >;
    }
  >;
  /** Set when the commit halted or was refused: how to undo it. */
  undo?: { revert: string; rollbacks: string[] };
  at: number;
}

export function revisionStateEvent(view: RevisionView, previous: RevisionState | null, at: number, id: string): RevisionStateEvent {
  const regions: RevisionStateEvent['regions'] = {};
  for (const region of view.regions) {
    const deployments: RevisionStateEvent['regions'][string]['deployments'] = {};
    for (const d of region.deployments) {
      deployments[d.deployment] = {
        version: d.version,
        state: d.state,
        devices: d.counts.devices,
        converged: d.counts.converged,
        updating: d.counts.updating,
        pending: d.counts.pending,
        failed: d.counts.failed,
        offline: d.counts.offline,
        ...(d.halted ? { halted: describeHalt(d) ?? d.halted.reason } : {}),
        ...(d.revert
          ? { revert: { mode: d.revert.mode, outcome: d.revert.outcome, message: d.revert.message, ...(d.revert.commit ? { commit: d.revert.commit } : {}), ...(d.revert.branch ? { branch: d.revert.branch } : {}) } }
          : {}),
      };
    }
    regions[region.region] = {
      applied: region.applied,
      refused: region.refused,
      stale: region.stale,
      ...(region.errors ? { errors: region.errors } : {}),
      deployments,
    };
  }
  return {
    type: 'revision.state',
    id,
    revision: view.revision,
    state: view.state,
    previous,
    regions,
    ...(view.undo ? { undo: view.undo } : {}),
    at,
  };
}

export interface WebhookDispatcherOptions {
  store: HubStore;
  log: Logger | false;
  clock: () => number;
  /** Signs bodies: `X-Cascade-Signature: sha256=<HMAC(secret, body)>`. */
  secret?: string | null;
  /** First retry delay; each further retry doubles it. */
  baseDelayMs?: number;
  /** Attempts per event before giving up on it. */
  maxAttempts?: number;
  timeoutMs?: number;
  /** Deliveries in flight at once. */
  concurrency?: number;
  onResult?: (result: 'delivered' | 'retry' | 'gave-up') => void;
}

const DEFAULT_BASE_DELAY_MS = 1_000;
const DEFAULT_MAX_ATTEMPTS = 5;
const DEFAULT_TIMEOUT_MS = 5_000;
/** Even with nothing due, look again this often (the clock may be injected or jump). */
const MAX_SLEEP_MS = 30_000;

/**
 * Delivers queued events (the outbox in the hub's SQLite) in the background: a failed delivery is
 * retried after 1 s, 2 s, 4 s, ... up to maxAttempts, then kept as given up. Each URL gets its events
 * in order (a later one waits while an earlier one is retried). Nothing here blocks the hub: the
 * request that queued an event has long been answered, and a restart resumes the outbox.
 */
export class WebhookDispatcher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private closed = false;
  private readonly inFlight = new Set<AbortController>();
  private readonly baseDelayMs: number;
  private readonly maxAttempts: number;
  private readonly timeoutMs: number;
  private readonly concurrency: number;

  constructor(private readonly options: WebhookDispatcherOptions) {
    this.baseDelayMs = options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.concurrency = options.concurrency ?? 4;
  }

  /** Delivers what is due now, then sleeps until the next event is due. */
  kick(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.running = this.deliverDue()
      .catch((err: unknown) => {
        if (this.options.log) this.options.log.error({ err }, 'webhook delivery loop failed');
      })
      .finally(() => {
        this.running = null;
        if (this.closed) return;
        if (this.again) {
          this.again = false;
          this.kick();
        } else this.sleep();
      });
  }

  /** Resolves once nothing is being delivered (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const controller of this.inFlight) controller.abort();
    await this.running;
  }

  private sleep(): void {
    const next = this.options.store.nextEventDue();
    if (next === null) return;
    const delay = Math.min(Math.max(next - this.options.clock(), 0), MAX_SLEEP_MS);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.kick();
    }, delay);
    this.timer.unref();
  }

  private async deliverDue(): Promise<void> {
    const { store, clock } = this.options;
    for (;;) {
      if (this.closed) return;
      const due = store.dueEvents(clock(), this.concurrency);
      if (due.length === 0) return;
      await Promise.all(due.map((event) => this.deliver(event)));
    }
  }

  private async deliver(event: WebhookEventRecord): Promise<void> {
    const { store, clock, log, secret } = this.options;
    const controller = new AbortController();
    this.inFlight.add(controller);
    const timeout = setTimeout(() => controller.abort(), this.timeoutMs);
    let error: string | null = null;
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'cascade-hub' };
      if (secret) headers['x-cascade-signature'] = signBody(secret, event.body);
      const response = await fetch(event.url, { method: 'POST', headers, body: event.body, signal: controller.signal, redirect: 'error' });
      // The body is not needed; reading it frees the connection.
      await response.arrayBuffer().catch(() => undefined);
      if (!response.ok) error = `answered ${response.status}`;
    } catch (err) {
      error = controller.signal.aborted && !this.closed ? `no answer within ${this.timeoutMs} ms` : String((err as Error).cause ?? (err as Error).message);
    } finally {
      clearTimeout(timeout);
      this.inFlight.delete(controller);
    }
    if (this.closed && error !== null) return; // shutting down: the event stays due for the next start
    const attempts = event.attempts + 1;
    if (error === null) {
      store.markDelivered(event.id);
      this.options.onResult?.('delivered');
      if (log) log.debug({ url: event.url, id: event.id, attempts }, 'webhook delivered');
    } else if (attempts >= this.maxAttempts) {
      store.markGaveUp(event.id, error, clock());
      this.options.onResult?.('gave-up');
      if (log) log.error({ url: event.url, id: event.id, attempts, error }, `webhook ${event.url} failed ${attempts} times (${error}); giving up on this event`);
    } else {
      const delay = this.baseDelayMs * 2 ** (attempts - 1);
      store.markRetry(event.id, error, clock() + delay);
      this.options.onResult?.('retry');
      if (log) log.warn({ url: event.url, id: event.id, attempts, error, retryInMs: delay }, `webhook ${event.url} failed (${error}); retrying in ${delay} ms`);
    }
  }
}
