import type { AppReport, DeviceId } from '../../core/types.js';
import type { RolloutSpec } from '../../desired/model.js';

/** One device resolved to a Deployment, in the region that runs the engine. */
export interface RolloutDeviceInput {
  id: DeviceId;
  /** 1-based wave of the device in this Deployment (see waveOf); clamped to the rollout's waves. */
  wave: number;
  /** Epoch ms of the device's last report; null before the first. Silent for `offlineAfter` = offline. */
  lastSeen: number | null;
  /**
   * Epoch ms of the device's enrolment. A device that never reported is `new` until `offlineAfter`
   * has passed since; without it, since the rollout started.
   */
  enrolledAt?: number;
  /** What the device last reported about the Deployment's app. */
  report?: AppReport;
  /** Version of the app the device was last handed, if any. */
  handedVersion?: string;
}

export interface RolloutDeploymentInput {
  deployment: string;
  app: string;
  /** The version the Deployment asks for. */
  version: string;
  /** deploymentFingerprint of the Deployment's spec: a change starts a fresh rollout state. */
  fingerprint: string;
  /** Effective rollout settings (Deployment > Region > Fleet). */
  rollout: RolloutSpec;
  /** Every device resolved to this Deployment in this region, online or not. */
  devices: RolloutDeviceInput[];
}

export interface HaltRecord {
  /** For a person, e.g. "3 of 10 attempted devices failed (30% >= 20%)". */
  reason: string;
  /** Failed devices when the rollout halted, sorted, at most MAX_HALTED_DEVICES. */
  devices: DeviceId[];
  /** `now` of the pass that halted. */
  at: number;
}

/**
 * What the engine remembers about one Deployment's rollout between passes. Plain JSON-able data:
 * the caller persists it and passes it back as `previous` on the next pass.
 */
export interface RolloutState {
  /** Fingerprint of the Deployment spec this state belongs to. */
  fingerprint: string;
  version: string;
  /** Revision of the pass that started this state. */
  revision: string;
  /**
   * Versions this Deployment targeted and completed before (oldest first, deduplicated, at most
   * MAX_COMPLETED_VERSIONS): going back to one of them is a rollback.
   */
  completedVersions: string[];
  /** `now` of the pass that started this state. */
  startedAt: number;
  /** `now` of the first pass that saw this rollout Complete; null until then. */
  completedAt: number | null;
  /** This state rolls back to a version in completedVersions. */
  rollback: boolean;
  /** Highest wave started; waves never un-start. */
  currentWave: number;
  /** Per wave: `now` of the first pass that saw it and every wave before it complete. */
  waveCompletedAt: Record<number, number>;
  /** Waves that were already complete in the pass they started (nothing to update): no bake after them. */
  wavesCompleteAtStart: number[];
  /**
   * `now` of the first pass that saw a device of a started wave healthy at the version: the canary
   * that lets later waves start. Absent in states written before this field existed.
   */
  canaryAt?: number | null;
  halted: HaltRecord | null;
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

export interface RolloutPlanInput {
  now: number;
  /**
   * The region's one offline clock (regionOfflineAfterMs: `--offline-after`, or the Region's or
   * Fleet's `rollout.offlineAfter`): a device silent this long, or enrolled this long ago without a
   * report, is offline.
   */
  offlineAfterMs: number;
  /** Revision of this pass; recorded in states that start now. */
  revision: string;
  deployments: RolloutDeploymentInput[];
  /** States returned by the previous pass. */
  previous: ReadonlyMap<string, RolloutState>;
}

export interface RolloutPlan {
  /**
   * Per Deployment, the devices that may be handed its version now: those already handed it or
   * running it, plus the ones released by this pass.
   */
  release: Map<string, Set<DeviceId>>;
  /** Per Deployment of the input, its state after this pass: persist it and pass it back. */
  states: Map<string, RolloutState>;
  /** One per Deployment of the input, sorted by Deployment name; a Deployment with a problem is `Stalled`. */
  statuses: DeploymentRolloutStatus[];
}
