import type { AppReport, DeviceDesired, DeviceId, Labels } from '../core/types.js';
import type { AppCatalog, DeviceRecord, HandedState, RevisionRecord } from '../storage/region-records.js';
import type { HaltRevert, RolloutState } from '../plan/rollout/types.js';

export type { AppCatalog, DeviceRecord, HandedState, RevisionRecord } from '../storage/region-records.js';

/**
 * What the reconciler needs of the region's durable state; storage/region-state-store.ts implements it
 * (SQLite, WAL, one transaction per write: state on disk is never half-written).
 */
export interface StateStore {
  // revisions
  getRevision(): RevisionRecord;
  recordAttempt(revision: string, errors: string[], at: number): void;
  /**
   * Records the revision as applied together with its resolved desired state and the specs of
   * its Apps (runtime, artifacts, health check: what agents need to install), in one transaction.
   */
  recordApplied(revision: string, resolved: Map<DeviceId, DeviceDesired>, catalog: AppCatalog, at: number): void;
  /** The same over several turns of the event loop (`pause` between slices of `slice` devices), for a large fleet. */
  recordAppliedInSlices?(revision: string, resolved: ReadonlyMap<DeviceId, DeviceDesired>, catalog: AppCatalog, at: number, pause: () => Promise<void>, slice: number): Promise<void>;
  getCatalog(): AppCatalog;
  /** Resolved desired state of the applied revision (what git asks for, before rollout gating). */
  getResolved(): Map<DeviceId, DeviceDesired>;

  // devices
  /** Enrols a device, or re-enrols it (a new token, new labels). May be buffered: see whenWritten. */
  enrollDevice(id: DeviceId, labels: Labels, tokenHash: string, at: number): void;
  /** Resolves once every write made so far is durable (a store that writes at once may omit it). */
  whenWritten?(): Promise<void>;
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

  // rollout verbs
  /** `cascade rollout retry`: the next pass re-attempts the failed devices of that halted Deployment. */
  requestRetry(deployment: string, at: number): void;
  /** Retries asked for and not yet taken by a pass, with when. */
  pendingRetries(): Map<string, number>;
  clearRetries(deployments: Iterable<string>): void;
  /**
   * Claims the one revert of a halt (`onHalt: revert | revert-branch`): true the first time for a
   * (deployment, halt) key, false ever after, restarts included.
   */
  claimHaltRevert(deployment: string, halt: string, record: HaltRevert): boolean;
  /** Updates the record of a claimed halt revert (pushed, failed). */
  recordHaltRevert(deployment: string, halt: string, record: HaltRevert): void;
  /** The latest halt revert record per Deployment. */
  haltReverts(): Map<string, { halt: string; record: HaltRevert }>;

  close(): void;
}
