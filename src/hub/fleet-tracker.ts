import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { HubStore, PutSummaryResult, RegionRecord, RevisionUpdate, StoredRevision } from '../storage/hub-store.js';
import type { HubSummary } from '../protocol/hub-summary.js';
import { fleetView, referencedRevisions, revisionView, searchDevices, type DeviceSearch, type FleetView, type RevisionState, type RevisionView } from './views.js';
import { revisionStateEvent } from './webhooks.js';

export interface FleetTrackerOptions {
  store: HubStore;
  clock: () => number;
  staleAfterMs: number;
  /** Webhook URLs that get an event on each change of a commit's overall state. */
  webhooks: readonly string[];
  /** Called after events were queued, to deliver them. */
  onEventsQueued?: () => void;
  log?: Logger | false;
}

/**
 * The hub's model of the fleet: the latest summary of each region (kept in memory, persisted in the
 * store) and the history of the revisions they report, with their overall state.
 */
export class FleetTracker {
  private readonly records = new Map<string, RegionRecord>();

  constructor(private readonly options: FleetTrackerOptions) {
    for (const record of options.store.listRegions()) this.records.set(record.summary.region, record);
  }

  /** Keeps a newer summary of a region, then records revision states and queues webhook events. */
  accept(summary: HubSummary): PutSummaryResult {
    const now = this.options.clock();
    const result = this.options.store.putSummary(summary, now);
    if (!result.accepted) return result;
    const known = this.records.has(summary.region);
    this.records.set(summary.region, { summary, receivedAt: now });
    if (!known && this.options.log) this.options.log.info({ region: summary.region }, `region ${summary.region} reported for the first time`);
    this.recordRevisions(now);
    return result;
  }

  regions(): RegionRecord[] {
    return [...this.records.values()];
  }

  fleet(): FleetView {
    return fleetView(this.regions(), this.options.clock(), this.options.staleAfterMs);
  }

  /** A commit by full sha or unique prefix (at least 4 characters); null when unknown. */
  revision(shaOrPrefix: string): RevisionView | null {
    const sha = shaOrPrefix.toLowerCase();
    const referenced = referencedRevisions(this.regions());
    if (referenced.has(sha)) return this.withHistory(this.liveView(sha), this.options.store.getRevision<RevisionView>(sha));
    const stored = this.options.store.getRevision<RevisionView>(sha) ?? (sha.length >= 4 ? this.options.store.findRevisionByPrefix<RevisionView>(sha) : null);
    if (stored) return referenced.has(stored.sha) ? this.withHistory(this.liveView(stored.sha), stored) : supersededView(stored);
    if (sha.length < 4) return null;
    const matches = [...referenced].filter((s) => s.startsWith(sha));
    return matches.length === 1 ? this.liveView(matches[0]!) : null;
  }

  /** The most recently first-seen commits, newest first. */
  recentRevisions(limit: number): RevisionView[] {
    const referenced = referencedRevisions(this.regions());
    return this.options.store
      .recentRevisions<RevisionView>(limit)
      .map((stored) => (referenced.has(stored.sha) ? this.withHistory(this.liveView(stored.sha), stored) : supersededView(stored)));
  }

  devices(query: string, limit: number): DeviceSearch {
    return searchDevices(this.regions(), query, limit);
  }

  private liveView(sha: string): RevisionView {
    return revisionView(sha, this.regions(), this.options.clock(), this.options.staleAfterMs);
  }

  private withHistory(view: RevisionView, stored: StoredRevision<RevisionView> | null): RevisionView {
    if (!stored) return view;
    return { ...view, firstSeenAt: stored.firstSeenAt, stateChangedAt: stored.state === view.state ? stored.stateChangedAt : this.options.clock() };
  }

  private recordRevisions(now: number): void {
    const { store, webhooks } = this.options;
    const updates: RevisionUpdate<RevisionView>[] = [];
    const events: { url: string; body: string }[] = [];
    for (const sha of referencedRevisions(this.regions())) {
      const view = this.liveView(sha);
      const previous = (store.getRevision<RevisionView>(sha)?.state ?? null) as RevisionState | null;
      updates.push({ sha, state: view.state, view });
      if (previous === view.state) continue;
      if (this.options.log) {
        const fields = { revision: sha, state: view.state, previous, halted: view.halted.length > 0 ? view.halted : undefined };
        const line = `commit ${sha.slice(0, 8)}: ${previous ?? 'new'} -> ${view.state}`;
        if (view.state === 'Halted' || view.state === 'Refused') this.options.log.warn(fields, line);
        else this.options.log.info(fields, line);
      }
      if (webhooks.length > 0) {
        const body = JSON.stringify(revisionStateEvent(view, previous, now, randomUUID()));
        for (const url of webhooks) events.push({ url, body });
      }
    }
    store.recordRevisions(updates, events, now);
    if (events.length > 0) this.options.onEventsQueued?.();
  }
}

function supersededView(stored: StoredRevision<RevisionView>): RevisionView {
  return { ...stored.view, state: stored.state as RevisionState, superseded: true, firstSeenAt: stored.firstSeenAt, stateChangedAt: stored.stateChangedAt };
}
