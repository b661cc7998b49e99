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
}

export type DeviceState = 'converged' | 'updating' | 'pending' | 'failed' | 'offline';
