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
