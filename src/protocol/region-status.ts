import type { DeploymentRolloutStatus } from './rollout-status.js';

/** `GET /api/v1/status` of a region: what `cascade status`, the hub summary and the dashboard read. */

export interface DeviceCounts {
  total: number;
  converged: number;
  /** Enrolled within offlineAfter and not reported yet: neither offline nor updating (the rollout engine's `new`). */
  new?: number;
  /** Handed a version they do not run yet. */
  updating: number;
  /** Behind git, but held back by their rollout (a later wave, a window, a halt). Absent in summaries of older regions. */
  pending?: number;
  failed: number;
  offline: number;
}

export interface RegionStatus {
  region: string;
  revision: RevisionState;
  source: { reachable: boolean; head: string | null; error: string | null };
  devices: DeviceCounts;
  updatesSent: number;
  /** Per Deployment with devices in this region: its rollout. */
  rollouts: DeploymentRolloutStatus[];
  /** Ready, Reconciling, Stalled. Absent from regions older than conditions. */
  conditions?: Condition[];
  /** The artifact relay (absent when off, or from regions older than it). */
  artifacts?: ArtifactRelayStatus;
}

/** Where one relayed artifact stands. */
export type RelayedArtifactState = 'fetching' | 'ready' | 'failed';

export interface RelayedArtifactStatus {
  app: string;
  version: string;
  sha256: string;
  size: number;
  state: RelayedArtifactState;
  /** Why it is not ready (a failed verification, an unreachable origin). */
  message?: string;
  /** Bytes of it fetched from its origin (1x the size when each artifact crosses the uplink once). */
  originBytes: number;
  /** Bytes of it (whole or as deltas) sent to devices. */
  servedBytes: number;
  /** Bytes devices did not download because they got a delta instead. */
  deltaSavedBytes: number;
  /** Downloads served (whole files and deltas). */
  downloads: number;
  deltas: number;
}

/** The region's artifact relay: `GET /api/v1/status` field `artifacts`, and the same figures on /metrics. */
export interface ArtifactRelayStatus {
  cacheBytes: number;
  cacheLimitBytes: number;
  cachedArtifacts: number;
  originBytes: number;
  servedBytes: number;
  deltaSavedBytes: number;
  cacheHits: number;
  cacheMisses: number;
  /** Per artifact a rollout of this region hands out. */
  artifacts: RelayedArtifactStatus[];
}

export interface RevisionState {
  attempted: string | null;
  applied: string | null;
  error: string[] | null;
  /** The applied commit's first message line and author (`Name <email>`), once read from git. */
  subject?: string;
  author?: string;
  /** When the attempted commit was refused: its subject and author. */
  refused?: { subject: string; author: string };
}

export type DeviceState = 'converged' | 'new' | 'updating' | 'pending' | 'failed' | 'offline';

export type ConditionType = 'Ready' | 'Reconciling' | 'Stalled';

/**
 * Flux's conditions: each says one thing about the region, with a reason a script can match, a
 * message for a person, and when it last changed.
 * - `Ready`: True when the region serves the head of its branch; False with why not (no revision yet,
 *   git unreachable, the head refused, a pass failing).
 * - `Reconciling`: True while a rollout is under way or a failed step is being retried.
 * - `Stalled`: True when nothing will move without a new commit or an operator (the head was refused:
 *   invalid, unsigned, not a fast-forward, a mass removal).
 */
export interface Condition {
  type: ConditionType;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  /** Epoch ms of the last change of `status`. */
  since: number;
}
