import type { AppReport, DeviceId } from '../../core/types.js';
import type { RolloutSpec } from '../../desired/model.js';
import type { DeploymentRolloutStatus, HaltRecord, RetryRecord } from '../../protocol/rollout-status.js';

// The rollout status is an API type (status API, hub summary, dashboard): it lives in protocol/.
export type {
  DeploymentRolloutStatus,
  DeviceRolloutState,
  HaltRecord,
  HaltRevert,
  RetryRecord,
  RolloutPhase,
  RolloutProblem,
  RolloutWaitReason,
  WaveStatus,
  WindowStatus,
} from '../../protocol/rollout-status.js';

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
  /**
   * The attempt it was handed (DesiredApp.attempt, absent = 0). A failure reported for a lower attempt
   * is an old one: the device was asked to try again (an operator's retry) and is updating.
   */
  handedAttempt?: number;
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
  /** The last operator retry (`cascade rollout retry`) of this rollout; absent before one. */
  retry?: RetryRecord | null;
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
  /**
   * Deployments an operator asked to retry (`cascade rollout retry`), with when they asked: a halted
   * one lifts its halt for its failed devices, which are handed the version again (attempt + 1). A
   * Deployment that is not halted ignores it.
   */
  retries?: ReadonlyMap<string, number>;
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
