import type { Logger } from 'pino';
import type { DeviceId } from '../core/types.js';
import { EventStream, type EventStreamOptions } from '../http/event-stream.js';
import type { CascadeEvent, CommitInfo } from '../protocol/events.js';
import type { RegionStatus } from '../protocol/region-status.js';
import { attemptedVersion } from '../reconciler/failed-version.js';
import type { ReconcilerEvent } from '../reconciler/reconciler-events.js';
import { rolloutEvents } from '../reconciler/rollout-events.js';
import type { StateStore } from '../reconciler/state-store.js';
import { readCommitInfo } from '../source/commit-info.js';

export interface RegionEventsOptions {
  region: string;
  gitdir: string;
  store: StateStore;
  clock: () => number;
  log: Logger;
  stream?: EventStreamOptions;
  /** A commit's subject and author became known (the status and the hub summary now carry them). */
  onCommitInfo?: () => void;
}

/** Commits described at once; the status names at most two (applied, refused). */
const COMMITS_KEPT = 32;

/**
 * The region's event stream: turns what a pass reports (revisions applied or refused, rollout
 * transitions) and what devices report (a failed version) into `CascadeEvent`s, in the order they
 * happened. Reads each commit's subject and author from the local git objects once, for the events,
 * the status and the hub summary.
 */
export class RegionEvents {
  readonly stream: EventStream<CascadeEvent>;
  private readonly commits = new Map<string, CommitInfo | null>();
  private readonly reading = new Map<string, Promise<CommitInfo | null>>();
  /** Per device and app, the failed version already announced: a repeated report announces nothing. */
  private readonly failed = new Map<DeviceId, Map<string, string>>();
  private chain: Promise<void> = Promise.resolve();
  private readonly bootAt: number;

  constructor(private readonly options: RegionEventsOptions) {
    this.stream = new EventStream<CascadeEvent>({ clock: options.clock, ...options.stream });
    this.bootAt = options.clock();
  }

  /** The reconciler's `onEvent`. */
  onReconcilerEvent = (event: ReconcilerEvent): void => {
    const { region } = this.options;
    switch (event.type) {
      case 'revision.applied':
        this.enqueue(async () => {
          const info = await this.describe(event.revision);
          return [{ type: 'revision.applied', region, revision: event.revision, ...commitFields(info), message: `revision ${event.revision.slice(0, 8)} applied${info ? `: ${info.subject}` : ''}` }];
        });
        return;
      case 'revision.refused':
        this.enqueue(async () => {
          const info = await this.describe(event.revision);
          return [{
            type: 'revision.refused', region, revision: event.revision, ...commitFields(info), reason: event.reason,
            errors: event.errors.slice(0, 10), message: `revision ${event.revision.slice(0, 8)} refused (${event.reason}): ${event.errors[0] ?? ''}`,
          }];
        });
        return;
      case 'rollout.status': {
        const events = rolloutEvents(region, event.status, event.previous, this.bootAt);
        if (events.length > 0) this.enqueue(async () => events);
        return;
      }
    }
  };

  /** After a device's report is stored: announces each app that failed a version it did not fail before. */
  deviceReported(id: DeviceId): void {
    const device = this.options.store.getDevice(id);
    if (!device) return;
    const known = this.failed.get(id);
    const now = new Map<string, string>();
    const fresh: Array<Omit<CascadeEvent, 'id' | 'at'>> = [];
    let handed: ReturnType<StateStore['getHanded']> | undefined;
    for (const app in device.apps) {
      const report = device.apps[app]!;
      if (report.state !== 'failed') continue;
      handed ??= this.options.store.getHanded(id);
      const version = attemptedVersion(report, handed?.apps[app]) ?? report.version ?? '?';
      now.set(app, version);
      if (known?.get(app) === version) continue;
      fresh.push({
        type: 'device.failed', region: this.options.region, device: id, app, version, running: report.version,
        deployment: handed?.apps[app]?.deployment, revision: handed?.revision,
        message: `${id}: ${app} ${version} failed${report.version ? `, still running ${report.version}` : ''}${report.message ? `: ${report.message.slice(0, 300)}` : ''}`,
      });
    }
    if (now.size > 0) this.failed.set(id, now);
    else this.failed.delete(id);
    if (fresh.length > 0) this.enqueue(async () => fresh);
  }

  /** The revision part of the status, with the subject and author of the applied and the refused commit when known. */
  describeRevision(revision: RegionStatus['revision']): RegionStatus['revision'] {
    const out = { ...revision };
    const applied = revision.applied ? this.cached(revision.applied) : undefined;
    if (applied) {
      out.subject = applied.subject;
      out.author = applied.author;
    }
    if (revision.error && revision.attempted && revision.attempted !== revision.applied) {
      const refused = this.cached(revision.attempted);
      if (refused) out.refused = { subject: refused.subject, author: refused.author };
    }
    return out;
  }

  /** Resolves when every event so far is published (tests, shutdown). */
  idle(): Promise<void> {
    return this.chain;
  }

  close(): void {
    this.stream.close();
  }

  private enqueue(produce: () => Promise<Array<Omit<CascadeEvent, 'id' | 'at'>>>): void {
    this.chain = this.chain
      .then(produce)
      .then((events) => {
        for (const event of events) this.stream.publish({ ...event, at: this.options.clock() } as Omit<CascadeEvent, 'id'>);
      })
      .catch((err: unknown) => this.options.log.warn({ err }, 'could not publish an event'));
  }

  /** Known now, or read in the background (the next status has it). */
  private cached(sha: string): CommitInfo | undefined {
    if (this.commits.has(sha)) return this.commits.get(sha) ?? undefined;
    void this.describe(sha).then((info) => {
      if (info) this.options.onCommitInfo?.();
    });
    return undefined;
  }

  private describe(sha: string): Promise<CommitInfo | null> {
    if (this.commits.has(sha)) return Promise.resolve(this.commits.get(sha)!);
    let pending = this.reading.get(sha);
    if (!pending) {
      pending = readCommitInfo(this.options.gitdir, sha).then((info) => {
        this.reading.delete(sha);
        this.commits.set(sha, info);
        while (this.commits.size > COMMITS_KEPT) this.commits.delete(this.commits.keys().next().value!);
        return info;
      });
      this.reading.set(sha, pending);
    }
    return pending;
  }
}

function commitFields(info: CommitInfo | null): Pick<CascadeEvent, 'subject' | 'author'> {
  return info ? { subject: info.subject, author: info.author } : {};
}
