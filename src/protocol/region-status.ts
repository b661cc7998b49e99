import type { DeploymentRolloutStatus } from './rollout-status.js';

/** `GET /api/v1/status` of a region: what `cascade status`, the hub summary and the dashboard read. */

export interface DeviceCounts {
  total: number;
  converged: number;
  /** Handed a version they do not run yet. */
  updating: number;
  /** Behind git, but held back by their rollout (a later wave, a window, a halt). Absent in summaries of older regions. */
  pending?: number;
  failed: number;
  offline: number;
}

export interface RegionStatus {
  region: string;
  revision: { attempted: string | null; applied: string | null; error: string[] | null };
  source: { reachable: boolean; head: string | null; error: string | null };
  devices: DeviceCounts;
  updatesSent: number;
  /** Per Deployment with devices in this region: its rollout. */
  rollouts: DeploymentRolloutStatus[];
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

export type DeviceState = 'converged' | 'updating' | 'pending' | 'failed' | 'offline';
