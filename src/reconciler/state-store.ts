import type { AppReport, DeviceDesired, DeviceId, Labels } from '../core/types.js';
import type { AppSpec } from '../desired/model.js';
import type { RolloutState } from '../plan/rollout/types.js';

/** App specs of the applied revision, by app name. */
export type AppCatalog = Record<string, AppSpec>;

/**
 * What a region keeps in --data (SQLite, WAL). Every write is one transaction:
 * state on disk is never half-written. Implemented by SqliteStateStore.
 */
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

export interface StateStore {
  // revisions
  getRevision(): RevisionRecord;
  recordAttempt(revision: string, errors: string[], at: number): void;
  /**
   * Records the revision as applied together with its resolved desired state and the specs of
   * its Apps (runtime, artifacts, health check: what agents need to install), in one transaction.
   */
  recordApplied(revision: string, resolved: Map<DeviceId, DeviceDesired>, catalog: AppCatalog, at: number): void;
  getCatalog(): AppCatalog;
  /** Resolved desired state of the applied revision (what git asks for, before rollout gating). */
  getResolved(): Map<DeviceId, DeviceDesired>;

  // devices
  enrollDevice(id: DeviceId, labels: Labels, tokenHash: string, at: number): void;
  getTokenHash(id: DeviceId): string | null;
  /** The device a token hash belongs to, or null (unknown or revoked): tells a foreign token (403) from a bad one (401). */
  deviceIdForTokenHash(tokenHash: string): DeviceId | null;
  recordReport(id: DeviceId, apps: Record<string, AppReport>, at: number, labels?: Labels): void;
  getDevice(id: DeviceId): DeviceRecord | null;
  /** Revokes a device: its token stops working at once and it cannot enrol again under that id. Returns false for an unknown id. */
  revokeDevice(id: DeviceId, at: number): boolean;
  /** A device asked for its desired state: it is alive even when it has nothing new to report. */
  markSeen(id: DeviceId, at: number): void;
  listDevices(): DeviceRecord[];

  // what was handed out
  /**
   * Replaces what each listed device is handed; counts, per device and app, each version that
   * differs from the last one handed. Returns that count. The rollout states of the same pass,
   * when given, are written in the same transaction.
   */
  handOut(changes: Map<DeviceId, DeviceDesired>, revision: string, at: number, rollouts?: ReadonlyMap<string, RolloutState>): number;
  /** What the rollout engine remembers per Deployment (waves started, halts, completed versions). */
  getRolloutStates(): Map<string, RolloutState>;
  getHanded(id: DeviceId): HandedState | null;
  listHanded(): Map<DeviceId, HandedState>;
  updatesSent(): number;

  close(): void;
}
