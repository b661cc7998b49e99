import { sumWaves } from './totals.js';
import { isCascadeError, CascadeError } from '../../core/errors.js';
import { compareStrings as compareIds, plural } from '../../core/text.js';
import type { DeviceId } from '../../core/types.js';
import { alreadyThere, classifyDevice } from './classify.js';
import { DEFAULT_WAVE_PERCENTS } from './defaults.js';
import { rolloutSettings, type RolloutSettings } from './settings.js';
import { startingState } from './state.js';
import type {
  DeploymentRolloutStatus,
  DeviceRolloutState,
  RolloutDeploymentInput,
  RolloutPhase,
  RolloutPlan,
  RolloutPlanInput,
  RolloutProblem,
  RolloutState,
  RolloutWaitReason,
  WaveStatus,
  WindowStatus,
} from './types.js';
import { checkWindow } from './window.js';

/** Failed devices a halt lists; the reason still gives the full count. */
export const MAX_HALTED_DEVICES = 100;

/** Failed devices one retry re-attempts at most; a bigger halt is one a commit should answer. */
export const MAX_RETRIED_DEVICES = 10_000;

/**
 * The progressive-rollout rules. One region reconciler runs them on every pass for the Deployments
 * of its devices, each with its effective `spec.rollout` (the Deployment's, else its Region's, else
 * the Fleet's, field by field). Pure: time is `now`, memory is `previous` -> `states`, the offline
 * clock is `offlineAfterMs`.
 *
 * 1. Waves. A Deployment's devices move in deterministic waves (cumulative percentages, e.g.
 *    [1, 10, 50, 100]; one wave [100] by default). Wave 1 starts with the rollout. Wave N+1 starts
 *    when every device of waves 1..N that is not offline reports healthy at the new version (a new
 *    device holds its wave, rule 2), a canary has succeeded (below), and `bakeTime` (default 0) has
 *    passed since the first pass that saw both. A wave that had nothing to update when it started
 *    (no devices, all offline, or all already at the version) is not baked. A started wave never
 *    un-starts; a device of a started wave that turns unhealthy (e.g. comes back online behind)
 *    holds the next wave and restarts the bake once healthy. A failed device is not healthy: it
 *    holds the next wave until a commit changes the Deployment.
 *    A canary cannot be skipped: wave N+1 never starts before some device of waves 1..N has been
 *    seen healthy at the new version in this rollout, unless waves 1..N hold no device at all (empty
 *    waves lead to the first wave that holds one, which is the canary). When waves 1..N hold only
 *    offline devices, the rollout waits for one of them to come back and succeed, and says so
 *    (`reason` WaitingForCanary; WaitingForFirstReport when no device of the Deployment ever reported).
 * 2. New devices: a device that never reported is `new` until `offlineAfter` has passed since it
 *    enrolled. It is not handed the version (it is released in turn after its first report), it
 *    counts neither as updating nor as attempted, and it holds its wave, so a fleet that enrols at
 *    the moment of a commit still moves in waves and bakes (`reason` WaitingForFirstReport while only
 *    new devices hold the rollout). Past `offlineAfter` without a report, it is offline (rule 5).
 * 3. maxUnavailable (count, or percentage of the Deployment's devices in this region, rounded up,
 *    at least 1; default no limit): never more devices updating at once, updating = handed the new
 *    version, online, neither healthy at it nor failed. Pending devices of started waves are released
 *    by wave, then device id.
 * 4. failureThreshold: failed = online devices handed the new version that report the app failed;
 *    attempted = online devices handed the new version. A count N halts once failed >= max(N, 1) (so 0
 *    and 1 both halt at the first failure); a percentage P halts once failed / attempted >= P% and
 *    failed >= 1, judged once `minSample` (default 10) devices were attempted, or once every device
 *    of the started waves that is not offline was attempted (none pending or new), however few that
 *    is: minSample is capped by the devices there are to attempt. minSample does not apply to counts.
 *    So when every attempted device fails, the rollout halts inside the canary wave, before any
 *    device outside it is handed the version. A halt releases no further device, retries nothing
 *    (handed devices stay handed what they were handed), and holds until the Deployment's
 *    fingerprint changes. No failureThreshold: never halts (failed devices still hold their wave).
 * 5. Offline is not failed: a device silent for `offlineAfterMs` (the region's one clock, the same
 *    its status views, metrics and hub summary use; DEFAULT_OFFLINE_AFTER_MS = 10m) neither fails
 *    nor holds its wave, nor is it released while offline; back online, it is released in turn (its
 *    wave has started, a maxUnavailable slot is free). Offline canaries still hold later waves (rule 1).
 * 6. window {schedule, duration, timezone}: new devices are released only while the window is open
 *    (see checkWindow for DST); devices already handed keep going.
 * 7. Rollback: when a new fingerprint brings the Deployment back to a version whose rollout completed
 *    before, it is a rollback. `rollback: immediate` (default) releases every device at once, offline
 *    and new ones included: no waves, no canary, no maxUnavailable, no failureThreshold (a rollback is
 *    the way out), and the window only with `respectWindow: true`. `rollback: waves` is a normal
 *    rollout, window included unless `respectWindow: false`. Devices running the version already are
 *    not updated.
 * 8. Status: Halted > Complete (every wave started, every device that is not offline healthy at the
 *    version) > WaitingForWindow (window closed, pending devices in started waves) > Baking (waiting
 *    for bakeTime) > Progressing (with a `reason` when it waits for a first report or a canary).
 * 9. One bad Deployment stalls only itself: settings that cannot be applied (a value the schema let
 *    through, a time zone this machine's ICU does not know) make that Deployment `Stalled`, with a
 *    `problem` {code, message}; it releases nothing new, keeps its memory, and the other Deployments
 *    go on. planRollouts throws only for a caller's mistake (a Deployment listed twice).
 * 10. Pause: `paused: true` (spec.rollout, field by field like the others) releases no further
 *    device and starts no wave; devices already handed keep it; failures still count and can halt.
 *    The state (`Paused`, after Halted and Complete) keeps its memory: `paused` is not part of the
 *    fingerprint, so resuming continues where it stopped (a bake that ended meanwhile is over).
 * 11. Retry: an operator's retry (`retries`) of a Halted rollout lifts the halt for exactly the devices
 *    that failed, which are handed the version again as attempt `round` (the previous round + 1);
 *    a failure reported for an earlier attempt counts as updating, so the rollout halts again only
 *    if they fail again (or others do). It releases nobody else by itself; the rule of the rollout
 *    (waves, maxUnavailable, pause) then goes on as before. For when the cause was outside the version.
 *
 * Devices handed the version (or running it) are always in `release`, halted or not, window or not.
 */
export function planRollouts(input: RolloutPlanInput): RolloutPlan {
  const steps = planRolloutsInSteps(input);
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
  }
}

/** Devices looked at between two steps of planRolloutsInSteps. */
export const PLAN_STEP_DEVICES = 5_000;

/**
 * planRollouts in steps: the generator pauses (yields) after every `stepDevices` devices it looked at,
 * so a caller serving other work (a region's event loop) can go on between steps; what it returns at
 * the end is what planRollouts returns. Still pure: nothing happens between steps but what the caller does.
 */
export function* planRolloutsInSteps(input: RolloutPlanInput, stepDevices = PLAN_STEP_DEVICES): Generator<void, RolloutPlan, void> {
  const plan: RolloutPlan = { release: new Map(), states: new Map(), statuses: [] };
  const budget: StepBudget = { step: Math.max(1, stepDevices), left: Math.max(1, stepDevices) };
  for (const deployment of input.deployments) {
    if (plan.states.has(deployment.deployment)) {
      throw new CascadeError('duplicate-deployment', `Deployment ${deployment.deployment} is listed twice in one rollout pass; pass each Deployment once`);
    }
    const previous = input.previous.get(deployment.deployment);
    let planned: PlannedDeployment;
    try {
      planned = yield* planDeployment(deployment, input.now, input.revision, input.offlineAfterMs, previous, input.retries?.has(deployment.deployment) ?? false, budget);
    } catch (err) {
      planned = yield* stalled(deployment, input.now, input.revision, input.offlineAfterMs, previous, problemOf(err), budget);
    }
    plan.release.set(deployment.deployment, planned.release);
    plan.states.set(deployment.deployment, planned.state);
    plan.statuses.push(planned.status);
  }
  plan.statuses.sort((a, b) => compareIds(a.deployment, b.deployment));
  return plan;
}

/** How many more devices before the next step. */
export interface StepBudget {
  step: number;
  left: number;
}

/** Counts one device looked at; true when a step is due (the caller yields). */
export function stepDue(budget: StepBudget): boolean {
  budget.left--;
  if (budget.left > 0) return false;
  budget.left = budget.step;
  return true;
}

interface PlannedDeployment {
  release: Set<DeviceId>;
  state: RolloutState;
  status: DeploymentRolloutStatus;
}

/** What advanceWaves found: when the next wave may start while the current one bakes, or that it waits for a canary. */
interface Advance {
  nextWaveAt?: number;
  waitingForCanary?: boolean;
}

/** A Deployment's settings, window and starting state for one pass (rule 9: settings or a window that cannot be applied throw). */
export interface BegunDeployment {
  settings: RolloutSettings;
  window: WindowStatus | undefined;
  /** A copy of the starting state: the pass changes it and returns it as the next state. */
  state: RolloutState;
  fresh: boolean;
  immediate: boolean;
}

/** The rollout's settings, window and starting state (a copy the pass may change); throws what stalls the Deployment. */
export function beginDeployment(
  input: Pick<RolloutDeploymentInput, 'deployment' | 'version' | 'fingerprint' | 'rollout'>,
  deviceCount: number,
  now: number,
  revision: string,
  previous: RolloutState | undefined,
): BegunDeployment {
  const where = `Deployment ${input.deployment}`;
  const settings = rolloutSettings(input.rollout, deviceCount, where);
  // Checked before anything else, so a window this machine cannot read stalls the Deployment (rule 9).
  const window = settings.window ? checkWindow(settings.window, now, where) : undefined;
  const started = startingState(previous, input, now, revision);
  const state: RolloutState = {
    ...started.state,
    completedVersions: [...started.state.completedVersions],
    waveCompletedAt: { ...started.state.waveCompletedAt },
    wavesCompleteAtStart: [...started.state.wavesCompleteAtStart],
    canaryAt: started.state.canaryAt ?? null,
  };
  const immediate = state.rollback && settings.rollback.strategy === 'immediate';
  return { settings, window, state, fresh: started.fresh, immediate };
}

/** A device the rules may release this pass, with its wave; `pending` says it moves from pending to updating in the counts. */
export interface ReleaseCandidate {
  id: DeviceId;
  wave: number;
  pending: boolean;
}

/**
 * What the rules read of a Deployment's devices, however it was counted: by classifying every device
 * (planRollouts) or kept up to date device by device (DeploymentTracker). The rules themselves
 * (decideDeployment) are the same for both.
 */
export interface DeploymentTally {
  /** Per wave, before this pass's releases; decideDeployment moves the released pending devices to updating. */
  counts: WaveStatus[];
  /** Online devices handed the version (rule 4). */
  attempted: number;
  /** Whether a device of the Deployment ever reported. */
  anySeen: boolean;
  /** The devices that failed, in any order (read only when a halt is recorded). */
  failedIds(): DeviceId[];
  /**
   * The devices that may be released: pending devices of waves 1..upToWave, or, for an immediate
   * rollback, every device not there yet (handed the version or running it healthy), whatever its class.
   */
  candidates(upToWave: number, immediate: boolean, budget: StepBudget): Generator<void, ReleaseCandidate[], void>;
}

/** A budget that never asks for a step (a caller whose work is already small). */
export function noSteps(): StepBudget {
  return { step: Infinity, left: Infinity };
}

/**
 * The rules of one pass over a Deployment's tally (rules 1, 3, 4, 6, 7, 8, 10): halts, starts and
 * bakes waves, chooses the devices released now and says where the rollout stands. `begun.state` is
 * changed in place and returned as the next state.
 */
export function* decideDeployment(
  input: Pick<RolloutDeploymentInput, 'deployment' | 'app' | 'version'>,
  begun: BegunDeployment,
  tally: DeploymentTally,
  now: number,
  budget: StepBudget,
): Generator<void, { state: RolloutState; status: DeploymentRolloutStatus; chosen: DeviceId[] }, void> {
  const { settings, window, state, immediate } = begun;
  const counts = tally.counts;
  const waveCount = settings.waves.length;
  let updating = 0;
  let failedCount = 0;
  let toAttempt = 0;
  for (const count of counts) {
    updating += count.updating;
    failedCount += count.failed;
    if (count.wave <= state.currentWave) toAttempt += count.pending + count.new;
  }

  if (!state.halted && !immediate) {
    const reason = thresholdCrossed(settings, failedCount, tally.attempted, toAttempt);
    if (reason) state.halted = { reason, devices: [...tally.failedIds()].sort(compareIds).slice(0, MAX_HALTED_DEVICES), at: now, failed: failedCount, attempted: tally.attempted };
  }

  const windowApplies = !state.rollback || settings.rollback.respectWindow;
  const mayStart = !window || window.open || !windowApplies;

  let advance: Advance = {};
  if (immediate) {
    state.currentWave = waveCount;
  } else {
    state.currentWave = Math.min(Math.max(state.currentWave, 1), waveCount);
    // Paused: waves neither start nor bake on, and the memory is kept for when it resumes.
    if (!state.halted && !settings.paused) advance = advanceWaves(state, counts, settings.bakeMs, now, begun.fresh);
  }

  const chosenIds: DeviceId[] = [];
  if (!state.halted && mayStart && !settings.paused) {
    const chosen = yield* tally.candidates(state.currentWave, immediate, budget);
    if (!immediate && settings.maxUnavailable !== null) {
      const slots = Math.max(0, settings.maxUnavailable - updating);
      if (slots < chosen.length) {
        chosen.sort((a, b) => a.wave - b.wave || compareIds(a.id, b.id));
        chosen.length = slots;
      }
    }
    for (const device of chosen) {
      chosenIds.push(device.id);
      if (device.pending) {
        counts[device.wave - 1]!.pending--;
        counts[device.wave - 1]!.updating++;
      }
    }
  }

  const phase = phaseOf(state, counts, mayStart, advance, settings.paused);
  if (phase === 'Complete' && state.completedAt === null) state.completedAt = now;
  const reason = phase === 'Progressing' ? waitReason(state, counts, tally.anySeen, advance) : undefined;
  const status: DeploymentRolloutStatus = {
    deployment: input.deployment,
    app: input.app,
    version: input.version,
    revision: state.revision,
    state: phase,
    // An immediate rollback has no waves: it is drawn as the one wave it is, whatever the rollout's waves.
    currentWave: immediate ? 1 : state.currentWave,
    waves: immediate ? [oneWave(counts)] : counts,
    rollback: state.rollback,
    startedAt: state.startedAt,
    message: describe(phase, state, counts, input.version, immediate, window, advance.nextWaveAt, reason),
  };
  if (reason) status.reason = reason;
  if (state.halted) status.halted = state.halted;
  if (state.retry) status.retry = { ...state.retry, devices: state.retry.devices.slice(0, MAX_HALTED_DEVICES) };
  if (phase === 'Baking') status.nextWaveAt = advance.nextWaveAt;
  if (window) status.window = window;
  return { state, status, chosen: chosenIds };
}

function* planDeployment(
  input: RolloutDeploymentInput,
  now: number,
  revision: string,
  offlineAfterMs: number,
  previous: RolloutState | undefined,
  retryAsked: boolean,
  budget: StepBudget,
): Generator<void, PlannedDeployment, void> {
  const begun = beginDeployment(input, input.devices.length, now, revision, previous);
  const { settings, state } = begun;

  let devices = input.devices;
  let { classes, waves, counts } = yield* classifyAll(input, settings.waves, now, offlineAfterMs, state.startedAt, budget);
  if (retryAsked && state.halted && !begun.fresh) {
    // Rule 10: the halt is lifted for exactly the failed devices, handed the version again as a new attempt.
    const round = (state.retry?.round ?? 0) + 1;
    const retried = devices.filter((_, i) => classes[i] === 'failed').map((d) => d.id).sort(compareIds);
    const devicesRetried = retried.slice(0, MAX_RETRIED_DEVICES);
    state.retry = { round, devices: devicesRetried, count: devicesRetried.length, at: now, halt: state.halted.reason };
    state.halted = null;
    const again = new Set(state.retry.devices);
    devices = devices.map((d) => (again.has(d.id) ? { ...d, handedAttempt: round } : d));
    ({ classes, waves, counts } = yield* classifyAll({ ...input, devices }, settings.waves, now, offlineAfterMs, state.startedAt, budget));
  }
  let attempted = 0;
  let anySeen = false;
  const failed: DeviceId[] = [];
  const release = new Set<DeviceId>();
  for (let i = 0; i < devices.length; i++) {
    if (stepDue(budget)) yield;
    const cls = classes[i]!;
    const device = devices[i]!;
    if (cls === 'failed') failed.push(device.id);
    if (cls !== 'offline' && cls !== 'new' && device.handedVersion === input.version) attempted++;
    if (device.lastSeen !== null) anySeen = true;
    if (alreadyThere(device, input.version)) release.add(device.id);
  }
  const tally: DeploymentTally = {
    counts,
    attempted,
    anySeen,
    failedIds: () => failed,
    *candidates(upToWave, immediate, steps) {
      const chosen: ReleaseCandidate[] = [];
      for (let i = 0; i < devices.length; i++) {
        if (stepDue(steps)) yield;
        const id = devices[i]!.id;
        if (immediate ? !release.has(id) : classes[i] === 'pending' && waves[i]! <= upToWave) chosen.push({ id, wave: waves[i]!, pending: classes[i] === 'pending' });
      }
      return chosen;
    },
  };
  const decided = yield* decideDeployment(input, begun, tally, now, budget);
  for (const id of decided.chosen) release.add(id);
  return { release, state: decided.state, status: decided.status };
}

/** Each device's class and wave, and the per-wave counts (before this pass's releases). */
function* classifyAll(
  input: RolloutDeploymentInput,
  percents: readonly number[],
  now: number,
  offlineAfterMs: number,
  since: number,
  budget: StepBudget,
): Generator<void, { classes: DeviceRolloutState[]; waves: number[]; counts: WaveStatus[] }, void> {
  const devices = input.devices;
  const classes: DeviceRolloutState[] = new Array(devices.length);
  const waves: number[] = new Array(devices.length);
  const counts: WaveStatus[] = percents.map((percent, i) => ({
    wave: i + 1,
    percent,
    devices: 0,
    new: 0,
    pending: 0,
    updating: 0,
    healthy: 0,
    failed: 0,
    offline: 0,
  }));
  for (let i = 0; i < devices.length; i++) {
    if (stepDue(budget)) yield;
    const device = devices[i]!;
    const wave = clampWave(device.wave, percents.length);
    const cls = classifyDevice(device, input.version, now, offlineAfterMs, since);
    classes[i] = cls;
    waves[i] = wave;
    const count = counts[wave - 1]!;
    count.devices++;
    count[cls]++;
  }
  return { classes, waves, counts };
}

/**
 * Moves `state.currentWave` forward as far as rule 1 allows this pass, recording when waves completed
 * and when a canary first succeeded. Says when the next wave may start, while the current one bakes,
 * or that it waits for a canary.
 */
function advanceWaves(state: RolloutState, counts: WaveStatus[], bakeMs: number, now: number, fresh: boolean): Advance {
  const holding: number[] = [];
  const devicesUpTo: number[] = [];
  const healthyUpTo: number[] = [];
  let sum = 0;
  let deviceSum = 0;
  let healthySum = 0;
  for (const count of counts) {
    sum += count.new + count.pending + count.updating + count.failed;
    deviceSum += count.devices;
    healthySum += count.healthy;
    holding.push(sum);
    devicesUpTo.push(deviceSum);
    healthyUpTo.push(healthySum);
  }
  const startedNow = new Set<number>(fresh ? [1] : []);
  for (;;) {
    const wave = state.currentWave;
    if (state.canaryAt == null && healthyUpTo[wave - 1]! > 0) state.canaryAt = now;
    if (holding[wave - 1]! > 0) {
      // Not (or no longer) complete: the bake starts over once it is.
      delete state.waveCompletedAt[wave];
      state.wavesCompleteAtStart = state.wavesCompleteAtStart.filter((w) => w !== wave);
      return {};
    }
    if (state.waveCompletedAt[wave] === undefined) {
      state.waveCompletedAt[wave] = now;
      if (startedNow.has(wave)) state.wavesCompleteAtStart.push(wave);
    }
    if (wave >= counts.length) return {};
    // No canary yet, and waves 1..N hold devices (all offline, since none holds): wait for one.
    if (state.canaryAt == null && devicesUpTo[wave - 1]! > 0) return { waitingForCanary: true };
    let startsAt = state.waveCompletedAt[wave]! + (state.wavesCompleteAtStart.includes(wave) ? 0 : bakeMs);
    // The canary bakes too, unless it already ran the version healthy when the rollout started.
    if (state.canaryAt != null && state.canaryAt !== state.startedAt) startsAt = Math.max(startsAt, state.canaryAt + bakeMs);
    if (now < startsAt) return { nextWaveAt: startsAt };
    state.currentWave = wave + 1;
    startedNow.add(wave + 1);
  }
}

/**
 * The halt reason when the failures cross the threshold (rule 4), else null. `toAttempt`: devices of
 * the started waves that are not offline and not attempted yet (pending or new); a percentage is
 * judged once `attempted` reaches minSample or nothing is left to attempt.
 */
export function thresholdCrossed(
  settings: Pick<RolloutSettings, 'failureThreshold' | 'minSample'>,
  failed: number,
  attempted: number,
  toAttempt: number,
): string | null {
  const threshold = settings.failureThreshold;
  if (!threshold || failed === 0) return null;
  const head = `${failed} of ${attempted} attempted device${attempted === 1 ? '' : 's'} failed`;
  if (threshold.kind === 'count') {
    return failed >= Math.max(threshold.count, 1) ? `${head} (${failed} >= failureThreshold ${threshold.count})` : null;
  }
  if (attempted < settings.minSample && toAttempt > 0) return null;
  // The epsilon makes 1 of 3 reach "33.3333%" despite floating point.
  if (failed * 100 + 1e-9 < threshold.percent * attempted) return null;
  return `${head} (${formatPercent((failed / attempted) * 100)}% >= ${threshold.percent}%)`;
}

function phaseOf(state: RolloutState, counts: WaveStatus[], mayStart: boolean, advance: Advance, paused: boolean): RolloutPhase {
  if (state.halted) return 'Halted';
  let behind = 0;
  let pendingInStartedWaves = 0;
  for (const count of counts) {
    behind += count.new + count.pending + count.updating + count.failed;
    if (count.wave <= state.currentWave) pendingInStartedWaves += count.pending;
  }
  if (behind === 0 && !advance.waitingForCanary) return 'Complete';
  if (paused) return 'Paused';
  if (!mayStart && pendingInStartedWaves > 0) return 'WaitingForWindow';
  if (advance.nextWaveAt !== undefined) return 'Baking';
  return 'Progressing';
}

/** Why a Progressing rollout does not move, when only first reports or a canary can move it. */
function waitReason(state: RolloutState, counts: WaveStatus[], anySeen: boolean, advance: Advance): RolloutWaitReason | undefined {
  if (advance.waitingForCanary) return anySeen ? 'WaitingForCanary' : 'WaitingForFirstReport';
  let fresh = 0;
  let moving = 0;
  for (const count of counts) {
    if (count.wave > state.currentWave) continue;
    fresh += count.new;
    moving += count.pending + count.updating + count.failed;
  }
  return fresh > 0 && moving === 0 ? 'WaitingForFirstReport' : undefined;
}

function describe(
  phase: RolloutPhase,
  state: RolloutState,
  counts: WaveStatus[],
  version: string,
  immediate: boolean,
  window: WindowStatus | undefined,
  nextWaveAt: number | undefined,
  reason: RolloutWaitReason | undefined,
): string {
  const total = { new: 0, pending: 0, updating: 0, failed: 0, offline: 0 };
  let pendingInStartedWaves = 0;
  let offlineInStartedWaves = 0;
  for (const count of counts) {
    total.new += count.new;
    total.pending += count.pending;
    total.updating += count.updating;
    total.failed += count.failed;
    total.offline += count.offline;
    if (count.wave <= state.currentWave) {
      pendingInStartedWaves += count.pending;
      offlineInStartedWaves += count.offline;
    }
  }
  const offline = total.offline > 0 ? `; ${plural(total.offline, 'offline device')} will catch up when back` : '';
  const fresh = total.new > 0 ? `; ${plural(total.new, 'new device')} ${total.new === 1 ? 'waits' : 'wait'} for a first report` : '';
  const wave = state.currentWave;
  switch (phase) {
    case 'Halted':
      return `halted: ${state.halted!.reason}; no further device gets ${version} until a commit changes the Deployment`;
    case 'Paused':
      return `paused at wave ${wave} of ${counts.length} (spec.rollout.paused): ${total.updating} updating, ${total.pending} pending, ${total.failed} failed; no further device gets ${version} until it is resumed${fresh}${offline}`;
    case 'Complete':
      return `every online device runs ${version}${offline}`;
    case 'WaitingForWindow':
      return `${plural(pendingInStartedWaves, 'device')} wait for the maintenance window${window?.opensAt != null ? `, which opens at ${new Date(window.opensAt).toISOString()}` : ''}`;
    case 'Baking':
      return `wave ${wave} is complete; wave ${wave + 1} starts at ${new Date(nextWaveAt!).toISOString()} after bakeTime`;
    case 'Stalled':
      return 'stalled';
    case 'Progressing': {
      if (reason === 'WaitingForCanary') {
        return `wave ${wave + 1} waits for a canary: no device of ${waveRange(wave)} has been healthy on ${version} yet, and their ${plural(offlineInStartedWaves, 'device')} ${offlineInStartedWaves === 1 ? 'is' : 'are'} offline`;
      }
      if (reason === 'WaitingForFirstReport' && total.new === 0) {
        return `no device of this Deployment has reported yet: wave ${wave + 1} waits for a device of ${waveRange(wave)} to report healthy on ${version}${offline}`;
      }
      const where = immediate
        ? `rolling back to ${version} on every device at once`
        : `${state.rollback ? `rolling back to ${version} in waves, ` : ''}wave ${wave} of ${counts.length}`;
      return `${where}: ${total.updating} updating, ${total.pending} pending, ${total.failed} failed${fresh}${offline}`;
    }
  }
}

/**
 * The plan of a Deployment whose rollout settings cannot be applied (rule 9): Stalled with its
 * problem, nothing new released, the previous memory kept as it was (a fresh one when there is none).
 */
function* stalled(
  input: RolloutDeploymentInput,
  now: number,
  revision: string,
  offlineAfterMs: number,
  previous: RolloutState | undefined,
  problem: RolloutProblem,
  budget: StepBudget,
): Generator<void, PlannedDeployment, void> {
  const state = previous ?? startingState(undefined, input, now, revision).state;
  const percents = Array.isArray(input.rollout.waves) && input.rollout.waves.length > 0 ? input.rollout.waves : DEFAULT_WAVE_PERCENTS;
  const { counts } = yield* classifyAll(input, percents, now, offlineAfterMs, state.startedAt, budget);
  const release = new Set<DeviceId>();
  for (const device of input.devices) {
    if (stepDue(budget)) yield;
    if (alreadyThere(device, input.version)) release.add(device.id);
  }
  const sameRollout = state.version === input.version;
  const status: DeploymentRolloutStatus = {
    deployment: input.deployment,
    app: input.app,
    version: input.version,
    revision: sameRollout ? state.revision : revision,
    state: 'Stalled',
    currentWave: sameRollout ? Math.min(Math.max(state.currentWave, 1), counts.length) : 1,
    waves: counts,
    rollback: sameRollout && state.rollback,
    startedAt: sameRollout ? state.startedAt : now,
    problem,
    message: `stalled: ${problem.message}; no further device gets ${input.version} until then`,
  };
  return { release, state, status };
}

function problemOf(err: unknown): RolloutProblem {
  if (isCascadeError(err)) return { code: err.code, message: err.message };
  return { code: 'rollout-error', message: err instanceof Error ? err.message : String(err) };
}

function waveRange(wave: number): string {
  return wave === 1 ? 'wave 1' : `waves 1-${wave}`;
}

function clampWave(wave: number, waveCount: number): number {
  if (!Number.isFinite(wave) || wave < 1) return 1;
  return Math.min(Math.floor(wave), waveCount);
}

function formatPercent(value: number): string {
  return String(Math.round(value * 10) / 10);
}

/** Every wave's counts as one wave of 100%. */
function oneWave(counts: readonly WaveStatus[]): WaveStatus {
  return { wave: 1, percent: 100, ...sumWaves(counts) };
}
