import type { DeviceId } from '../core/types.js';

/** A Deployment's rollout as the region reports it: status API, hub summaries, dashboard, CLI. */

export interface HaltRecord {
  /** For a person, e.g. "3 of 10 attempted devices failed (30% >= 20%)". */
  reason: string;
  /** Failed devices when the rollout halted, sorted, at most MAX_HALTED_DEVICES. */
  devices: DeviceId[];
  /** `now` of the pass that halted. */
  at: number;
  /** Failed devices at the halt (the whole count; `devices` lists at most MAX_HALTED_DEVICES). Absent in records of older regions. */
  failed?: number;
  /** Attempted devices at the halt: online devices handed the version. Absent in records of older regions. */
  attempted?: number;
}

/**
 * Progressing, WaitingForWindow, Baking, Paused, Halted, Complete: see rule 8 of planRollouts.
 * Paused: `spec.rollout.paused: true`; no further device is handed the version until a commit removes it.
 * Stalled: the Deployment's rollout settings cannot be applied (see `problem`); nothing new is handed out.
 */
export type RolloutPhase = 'Progressing' | 'WaitingForWindow' | 'Baking' | 'Paused' | 'Halted' | 'Complete' | 'Stalled';

/** Every RolloutPhase, for schemas and checks. */
export const ROLLOUT_PHASES: readonly RolloutPhase[] = ['Progressing', 'WaitingForWindow', 'Baking', 'Paused', 'Halted', 'Complete', 'Stalled'];

/**
 * An operator's retry of a halted rollout (`cascade rollout retry`): the halt was lifted for exactly
 * these devices, handed the version again with attempt `round`; if they fail again, it halts again.
 */
export interface RetryRecord {
  /** 1 for the first retry of this rollout, then 2, ...: the attempt number the devices are handed. */
  round: number;
  /** The devices re-attempted (the failed devices of the halt), sorted; in statuses the first MAX_HALTED_DEVICES. */
  devices: DeviceId[];
  /** How many devices were re-attempted. */
  count: number;
  /** `now` of the pass that lifted the halt. */
  at: number;
  /** The reason of the halt it lifted. */
  halt: string;
}

/**
 * What the region did about a halt under `spec.rollout.onHalt: revert | revert-branch`: at most once
 * per halt, never for a halt of a version that a revert brought back.
 */
export interface HaltRevert {
  mode: 'revert' | 'revert-branch';
  /** pushed: the revert commit is on the remote; failed/skipped: see message. */
  outcome: 'pushed' | 'failed' | 'skipped';
  /** The commit the region wrote and pushed. */
  commit?: string;
  /** The commit it reverts (the change that halted). */
  reverted?: string;
  /** The remote branch it was pushed to. */
  branch?: string;
  at: number;
  message: string;
}

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
  /** The last operator retry of this rollout, when there was one. */
  retry?: RetryRecord;
  /** What the region pushed (or failed to) about the halt, under onHalt revert or revert-branch. */
  revert?: HaltRevert;
  /** One line for a person: what the rollout waits for. */
  message: string;
  /** Set while no device is released because the region's copy of the artifact is not ready: why. */
  waitingForArtifact?: string;
  /** The version's file artifact through the region's relay (absent when not relayed). */
  artifact?: RolloutArtifactFigures;
}

/** Bytes of one rollout's artifact through the region's relay. */
export interface RolloutArtifactFigures {
  size: number;
  /** Fetched from the origin (the artifact's size when it crossed the uplink once). */
  originBytes: number;
  /** Sent to devices, whole or as deltas. */
  servedBytes: number;
  /** Not sent because devices got deltas. */
  deltaSavedBytes: number;
  downloads: number;
  deltas: number;
}
