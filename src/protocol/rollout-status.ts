import type { DeviceId } from '../core/types.js';

/** A Deployment's rollout as the region reports it: status API, hub summaries, dashboard, CLI. */

export interface HaltRecord {
  /** For a person, e.g. "3 of 10 attempted devices failed (30% >= 20%)". */
  reason: string;
  /** Failed devices when the rollout halted, sorted, at most MAX_HALTED_DEVICES. */
  devices: DeviceId[];
  /** `now` of the pass that halted. */
  at: number;
}

/**
 * Progressing, WaitingForWindow, Baking, Halted, Complete: see rule 8 of planRollouts.
 * Stalled: the Deployment's rollout settings cannot be applied (see `problem`); nothing new is handed out.
 */
export type RolloutPhase = 'Progressing' | 'WaitingForWindow' | 'Baking' | 'Halted' | 'Complete' | 'Stalled';

/**
 * Why a rollout that is neither halted nor complete does not move further, when its phase alone does not say:
 * - WaitingForFirstReport: the devices that hold it have not reported yet (no device of the
 *   Deployment has ever reported, or the started waves hold only `new` devices);
 * - WaitingForCanary: no device of the started waves has been healthy at the version yet, and those
 *   waves hold only offline devices: the next wave waits for one of them to come back and succeed.
 */
export type RolloutWaitReason = 'WaitingForFirstReport' | 'WaitingForCanary';

/** Why a Deployment's rollout is Stalled: one Deployment's problem, reported on it, while the others go on. */
export interface RolloutProblem {
  /** The error code, e.g. `bad-rollout`. */
  code: string;
  /** For a person: what is wrong and where, e.g. `Deployment web: rollout.window.timezone "Mars/Olympus" is not an IANA time zone ...`. */
  message: string;
}

/**
 * Where one device stands in one Deployment's rollout. `new`: enrolled, never reported, and
 * `offlineAfter` has not passed since it enrolled.
 */
export type DeviceRolloutState = 'new' | 'pending' | 'updating' | 'healthy' | 'failed' | 'offline';

export interface WaveStatus {
  wave: number;
  /** Cumulative percentage of the wave. */
  percent: number;
  devices: number;
  /** Enrolled and never reported (yet): not handed anything, not updating, but holding the wave. */
  new: number;
  pending: number;
  updating: number;
  healthy: number;
  failed: number;
  offline: number;
}

export interface WindowStatus {
  open: boolean;
  /** When the open window opened; null when closed. */
  openedAt: number | null;
  /** When the open window closes; null when closed. */
  closesAt: number | null;
  /** When the window next opens; null while open. */
  opensAt: number | null;
}

export interface DeploymentRolloutStatus {
  deployment: string;
  app: string;
  version: string;
  /** Revision that started this rollout. */
  revision: string;
  state: RolloutPhase;
  currentWave: number;
  /** Counts after this pass's releases: a device released now counts as updating. */
  waves: WaveStatus[];
  halted?: HaltRecord;
  rollback: boolean;
  startedAt: number;
  /** When Baking: when the next wave may start. */
  nextWaveAt?: number;
  /** The maintenance window, when the rollout has one. */
  window?: WindowStatus;
  /** Why it waits, when the phase does not say it (see RolloutWaitReason). */
  reason?: RolloutWaitReason;
  /** When Stalled: what is wrong with the Deployment's rollout settings. */
  problem?: RolloutProblem;
  /** One line for a person: what the rollout waits for. */
  message: string;
}
