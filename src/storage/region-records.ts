import type { AppReport, DeviceDesired, DeviceId, Labels } from '../core/types.js';
import type { AppSpec } from '../desired/model.js';

/** The records a region keeps in --data. */

/** App specs of the applied revision, by app name. */
export type AppCatalog = Record<string, AppSpec>;

export interface RevisionRecord {
  /** Commit id of the last revision that passed validation and is being served. */
  applied: string | null;
  /** Commit id of the last revision a pass looked at, good or bad. */
  attempted: string | null;
  /** Problems of the attempted revision (`path:line:col: message`), empty when it was applied. */
  errors: string[];
  appliedAt: number | null;
  attemptedAt: number | null;
}

export interface DeviceRecord {
  id: DeviceId;
  labels: Labels;
  enrolledAt: number;
  /** Epoch ms of the last report; null before the first. */
  lastSeen: number | null;
  apps: Record<string, AppReport>;
  revoked: boolean;
}

/** What the region last handed one device: served as its desired state. */
export interface HandedState {
  revision: string;
  apps: DeviceDesired;
  /** Changes each time `apps` changes for this device; used as the ETag. */
  generation: number;
}

