/**
 * `GET /api/v1/events` of a region and of the hub: Server-Sent Events, one `event:` per change, its
 * `id:` growing by one per event of that server, its `data:` this JSON. A client that reconnects
 * with `Last-Event-ID` gets what it missed from a bounded buffer; `GET /api/v1/events?format=json`
 * returns that buffer once. Fields are additive: a client ignores what it does not know.
 */

export type CascadeEventType =
  | 'revision.applied'
  | 'revision.refused'
  | 'rollout.wave-started'
  | 'rollout.baking'
  | 'rollout.halted'
  | 'rollout.complete'
  | 'device.failed';

export const CASCADE_EVENT_TYPES: readonly CascadeEventType[] = [
  'revision.applied',
  'revision.refused',
  'rollout.wave-started',
  'rollout.baking',
  'rollout.halted',
  'rollout.complete',
  'device.failed',
];

/** Who wrote a commit and what its first line says: read from git when the revision is applied or refused. */
export interface CommitInfo {
  /** The first line of the commit message, at most 200 characters. */
  subject: string;
  /** `Name <email>`. */
  author: string;
  /** Author time, epoch ms. */
  authoredAt?: number;
}

export interface CascadeEvent {
  /** Grows by one per event of the server that sent it (region or hub); not comparable across servers. */
  id: number;
  type: CascadeEventType;
  /** Epoch ms on the clock of the server that sent it. */
  at: number;
  region: string;
  /** The commit the event is about: applied or refused, or the revision that started the rollout. */
  revision?: string;
  subject?: string;
  author?: string;
  /** revision.refused: why (`invalid`, `unsigned`, `not-fast-forward`, ...) and the first problems. */
  reason?: string;
  errors?: string[];
  deployment?: string;
  app?: string;
  /** Rollout events: the version the rollout hands out. device.failed: the version the device failed to run. */
  version?: string;
  /** rollout.wave-started: the wave now started (1-based). */
  wave?: number;
  /** device.failed: the device, the version it still runs (null: none) and what it said. */
  device?: string;
  running?: string | null;
  /** For a person: one line. */
  message: string;
}

/** Events that name devices: a region with an operator token sends them only to operators. */
export function isDeviceLevel(event: Pick<CascadeEvent, 'type'>): boolean {
  return event.type === 'device.failed';
}

export const EVENTS_PATH = '/api/v1/events';
