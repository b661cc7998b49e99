import { EventStream, type EventStreamOptions } from '../http/event-stream.js';
import type { CascadeEvent } from '../protocol/events.js';
import type { HubSummary } from '../protocol/hub-summary.js';
import { rolloutEvents } from '../reconciler/rollout-events.js';

type NewEvent = Omit<CascadeEvent, 'id'>;

/**
 * What the hub learns from two consecutive summaries of one region: a revision applied or refused,
 * rollouts that started a wave, bake, halt or complete. The hub hears only what summaries carry, so
 * it relays no device-level events. A region's first summary (or one after the hub lost it) sets the
 * baseline and announces nothing. Pure.
 */
export function summaryEvents(previous: HubSummary | null, next: HubSummary, at: number): NewEvent[] {
  if (!previous) return [];
  const region = next.region;
  const events: NewEvent[] = [];
  const rev = next.revision;
  if (rev.applied && rev.applied !== previous.revision.applied) {
    events.push({
      type: 'revision.applied', at, region, revision: rev.applied,
      ...(rev.subject !== undefined ? { subject: rev.subject } : {}), ...(rev.author !== undefined ? { author: rev.author } : {}),
      message: `${region}: revision ${rev.applied.slice(0, 8)} applied${rev.subject ? `: ${rev.subject}` : ''}`,
    });
  }
  const refused = rev.attempted && rev.attempted !== rev.applied && rev.error && rev.error.length > 0;
  const wasRefused = previous.revision.attempted === rev.attempted && previous.revision.error && previous.revision.error.length > 0;
  if (refused && !wasRefused) {
    events.push({
      type: 'revision.refused', at, region, revision: rev.attempted!,
      ...(rev.refused ? { subject: rev.refused.subject, author: rev.refused.author } : {}),
      errors: rev.error!.slice(0, 10),
      message: `${region}: revision ${rev.attempted!.slice(0, 8)} refused: ${rev.error![0]}`,
    });
  }
  // A rollout the previous summary did not have started since: that is news.
  const before = new Map(previous.rollouts.map((r) => [r.deployment, r]));
  for (const status of next.rollouts) {
    for (const event of rolloutEvents(region, status, before.get(status.deployment) ?? null, -Infinity)) events.push({ ...event, at, message: `${region}: ${event.message}` });
  }
  return events;
}

/** The hub's `GET /api/v1/events`. */
export class HubEvents {
  readonly stream: EventStream<CascadeEvent>;

  constructor(private readonly clock: () => number, options: EventStreamOptions = {}) {
    this.stream = new EventStream<CascadeEvent>({ clock, ...options });
  }

  summaryAccepted(previous: HubSummary | null, next: HubSummary): void {
    for (const event of summaryEvents(previous, next, this.clock())) this.stream.publish(event);
  }

  close(): void {
    this.stream.close();
  }
}
