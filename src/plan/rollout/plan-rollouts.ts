import { CascadeError } from '../../core/errors.js';
import type { DeviceId } from '../../core/types.js';
import { alreadyThere, classifyDevice } from './classify.js';
import { rolloutSettings, type RolloutSettings } from './settings.js';
import { startingState } from './state.js';
import type {
  DeploymentRolloutStatus,
  DeviceRolloutState,
  RolloutDeploymentInput,
  RolloutPhase,
  RolloutPlan,
  RolloutPlanInput,
  RolloutState,
  WaveStatus,
  WindowStatus,
} from './types.js';
import { checkWindow } from './window.js';

/** Failed devices a halt lists; the reason still gives the full count. */
export const MAX_HALTED_DEVICES = 100;

/**
 * The progressive-rollout rules. One region reconciler runs them on every pass for the Deployments
 * of its devices, each with its effective `spec.rollout` (the Deployment's, else its Region's, else
 * the Fleet's, field by field). Pure: time is `now`, memory is `previous` -> `states`.
 *
 * 1. Waves. A Deployment's devices move in deterministic waves (cumulative percentages, e.g.
 *    [1, 10, 50, 100]; one wave [100] by default). Wave 1 starts with the rollout. Wave N+1 starts
 *    when every device of waves 1..N that is not offline reports healthy at the new version, and
 *    `bakeTime` (default 0) has passed since the first pass that saw that. A wave that had nothing to
 *    update when it started (no devices, all offline, or all already at the version) is not baked.
 *    A started wave never un-starts; a device of a started wave that turns unhealthy (e.g. comes back
 *    online behind) holds the next wave and restarts the bake once healthy. A failed device is not
 *    healthy: it holds the next wave until a commit changes the Deployment.
 * 2. maxUnavailable (count, or percentage of the Deployment's devices in this region, rounded up,
 *    at least 1; default no limit): never more devices updating at once, updating = handed the new
 *    version, online, neither healthy at it nor failed. Pending devices of started waves are released
 *    by wave, then device id.
 * 3. failureThreshold: failed = online devices handed the new version that report the app failed;
 *    attempted = online devices handed the new version. A count N halts once failed >= max(N, 1) (so 0
 *    and 1 both halt at the first failure); a percentage P halts once failed / attempted >= P% and
 *    failed >= 1, but only after `minSample` attempts (default 10, capped at the Deployment's device
 *    count in this region, so a small Deployment can halt). minSample does not apply to counts. A halt
 *    releases no further device, retries nothing (handed devices stay handed what they were handed),
 *    and holds until the Deployment's fingerprint changes. No failureThreshold: never halts.
 * 4. Offline is not failed: a device silent for `offlineAfter` (default 10m) neither fails nor holds
 *    its wave, nor is it released while offline; back online, it is released in turn (its wave has
 *    started, a maxUnavailable slot is free).
 * 5. window {schedule, duration, timezone}: new devices are released only while the window is open
 *    (see checkWindow for DST); devices already handed keep going.
 * 6. Rollback: when a new fingerprint brings the Deployment back to a version whose rollout completed
 *    before, it is a rollback. `rollback: immediate` (default) releases every device at once, offline
 *    ones included: no waves, no maxUnavailable, no failureThreshold (a rollback is the way out), and
 *    the window only with `respectWindow: true`. `rollback: waves` is a normal rollout, window included
 *    unless `respectWindow: false`. Devices running the version already are not updated.
 * 7. Status: Halted > Complete (every online device healthy at the version) > WaitingForWindow
 *    (window closed, pending devices in started waves) > Baking (waiting for bakeTime) > Progressing.
 *
 * Devices handed the version (or running it) are always in `release`, halted or not, window or not.
 * Throws CascadeError `bad-rollout` for settings the schema should have refused.
 */
export function planRollouts(input: RolloutPlanInput): RolloutPlan {
  const plan: RolloutPlan = { release: new Map(), states: new Map(), statuses: [] };
  for (const deployment of input.deployments) {
    if (plan.states.has(deployment.deployment)) {
      throw new CascadeError('duplicate-deployment', `Deployment ${deployment.deployment} is listed twice in one rollout pass; pass each Deployment once`);
    }
    const planned = planDeployment(deployment, input.now, input.revision, input.previous.get(deployment.deployment));
    plan.release.set(deployment.deployment, planned.release);
    plan.states.set(deployment.deployment, planned.state);
    plan.statuses.push(planned.status);
  }
  plan.statuses.sort((a, b) => compareIds(a.deployment, b.deployment));
  return plan;
}

interface PlannedDeployment {
  release: Set<DeviceId>;
  state: RolloutState;
  status: DeploymentRolloutStatus;
}

function planDeployment(input: RolloutDeploymentInput, now: number, revision: string, previous: RolloutState | undefined): PlannedDeployment {
  const where = `Deployment ${input.deployment}`;
  const settings = rolloutSettings(input.rollout, input.devices.length, where);
  const started = startingState(previous, input, now, revision);
  const state: RolloutState = {
    ...started.state,
    completedVersions: [...started.state.completedVersions],
    waveCompletedAt: { ...started.state.waveCompletedAt },
    wavesCompleteAtStart: [...started.state.wavesCompleteAtStart],
  };
  const waveCount = settings.waves.length;
  const immediate = state.rollback && settings.rollback.strategy === 'immediate';

  const devices = input.devices;
  const classes: DeviceRolloutState[] = new Array(devices.length);
  const waves: number[] = new Array(devices.length);
  const counts: WaveStatus[] = settings.waves.map((percent, i) => ({
    wave: i + 1,
    percent,
    devices: 0,
    pending: 0,
    updating: 0,
    healthy: 0,
    failed: 0,
    offline: 0,
  }));
  let attempted = 0;
  let updating = 0;
  const failed: DeviceId[] = [];
  for (let i = 0; i < devices.length; i++) {
    const device = devices[i]!;
    const wave = clampWave(device.wave, waveCount);
    const cls = classifyDevice(device, input.version, now, settings.offlineAfterMs);
    classes[i] = cls;
    waves[i] = wave;
    const count = counts[wave - 1]!;
    count.devices++;
    count[cls]++;
    if (cls !== 'offline' && device.handedVersion === input.version) attempted++;
    if (cls === 'failed') failed.push(device.id);
    else if (cls === 'updating') updating++;
  }

  if (!state.halted && !immediate) {
    const reason = thresholdCrossed(settings, failed.length, attempted);
    if (reason) state.halted = { reason, devices: [...failed].sort(compareIds).slice(0, MAX_HALTED_DEVICES), at: now };
  }

  const window = settings.window ? checkWindow(settings.window, now, where) : undefined;
  const windowApplies = !state.rollback || settings.rollback.respectWindow;
  const mayStart = !window || window.open || !windowApplies;

  let nextWaveAt: number | undefined;
  if (immediate) {
    state.currentWave = waveCount;
  } else {
    state.currentWave = Math.min(Math.max(state.currentWave, 1), waveCount);
    if (!state.halted) nextWaveAt = advanceWaves(state, counts, settings.bakeMs, now, started.fresh);
  }

  const release = new Set<DeviceId>();
  for (const device of devices) if (alreadyThere(device, input.version)) release.add(device.id);
  if (!state.halted && mayStart) {
    const chosen: number[] = [];
    for (let i = 0; i < devices.length; i++) {
      if (immediate ? !release.has(devices[i]!.id) : classes[i] === 'pending' && waves[i]! <= state.currentWave) chosen.push(i);
    }
    if (!immediate && settings.maxUnavailable !== null) {
      const slots = Math.max(0, settings.maxUnavailable - updating);
      if (slots < chosen.length) {
        chosen.sort((a, b) => waves[a]! - waves[b]! || compareIds(devices[a]!.id, devices[b]!.id));
        chosen.length = slots;
      }
    }
    for (const i of chosen) {
      release.add(devices[i]!.id);
      if (classes[i] === 'pending') {
        counts[waves[i]! - 1]!.pending--;
        counts[waves[i]! - 1]!.updating++;
      }
    }
  }

  const phase = phaseOf(state, counts, mayStart, nextWaveAt);
  if (phase === 'Complete' && state.completedAt === null) state.completedAt = now;
  const status: DeploymentRolloutStatus = {
    deployment: input.deployment,
    app: input.app,
    version: input.version,
    revision: state.revision,
    state: phase,
    currentWave: state.currentWave,
    waves: counts,
    rollback: state.rollback,
    startedAt: state.startedAt,
    message: describe(phase, state, counts, input.version, immediate, window, nextWaveAt),
  };
  if (state.halted) status.halted = state.halted;
  if (phase === 'Baking') status.nextWaveAt = nextWaveAt;
  if (window) status.window = window;
  return { release, state, status };
}

/**
 * Moves `state.currentWave` forward as far as rule 1 allows this pass, recording when waves completed.
 * Returns when the next wave may start, while the current one bakes.
 */
function advanceWaves(state: RolloutState, counts: WaveStatus[], bakeMs: number, now: number, fresh: boolean): number | undefined {
  const holding: number[] = [];
  let sum = 0;
  for (const count of counts) {
    sum += count.pending + count.updating + count.failed;
    holding.push(sum);
  }
  const startedNow = new Set<number>(fresh ? [1] : []);
  for (;;) {
    const wave = state.currentWave;
    if (holding[wave - 1]! > 0) {
      // Not (or no longer) complete: the bake starts over once it is.
      delete state.waveCompletedAt[wave];
      state.wavesCompleteAtStart = state.wavesCompleteAtStart.filter((w) => w !== wave);
      return undefined;
    }
    if (state.waveCompletedAt[wave] === undefined) {
      state.waveCompletedAt[wave] = now;
      if (startedNow.has(wave)) state.wavesCompleteAtStart.push(wave);
    }
    if (wave >= counts.length) return undefined;
    const startsAt = state.waveCompletedAt[wave]! + (state.wavesCompleteAtStart.includes(wave) ? 0 : bakeMs);
    if (now < startsAt) return startsAt;
    state.currentWave = wave + 1;
    startedNow.add(wave + 1);
  }
}

/** The halt reason when the failures cross the threshold (rule 3), else null. */
export function thresholdCrossed(settings: Pick<RolloutSettings, 'failureThreshold' | 'minSample'>, failed: number, attempted: number): string | null {
  const threshold = settings.failureThreshold;
  if (!threshold || failed === 0) return null;
  const head = `${failed} of ${attempted} attempted device${attempted === 1 ? '' : 's'} failed`;
  if (threshold.kind === 'count') {
    return failed >= Math.max(threshold.count, 1) ? `${head} (${failed} >= failureThreshold ${threshold.count})` : null;
  }
  if (attempted < settings.minSample) return null;
  // The epsilon makes 1 of 3 reach "33.3333%" despite floating point.
  if (failed * 100 + 1e-9 < threshold.percent * attempted) return null;
  return `${head} (${formatPercent((failed / attempted) * 100)}% >= ${threshold.percent}%)`;
}

function phaseOf(state: RolloutState, counts: WaveStatus[], mayStart: boolean, nextWaveAt: number | undefined): RolloutPhase {
  if (state.halted) return 'Halted';
  let behind = 0;
  let pendingInStartedWaves = 0;
  for (const count of counts) {
    behind += count.pending + count.updating + count.failed;
    if (count.wave <= state.currentWave) pendingInStartedWaves += count.pending;
  }
  if (behind === 0) return 'Complete';
  if (!mayStart && pendingInStartedWaves > 0) return 'WaitingForWindow';
  if (nextWaveAt !== undefined) return 'Baking';
  return 'Progressing';
}

function describe(
  phase: RolloutPhase,
  state: RolloutState,
  counts: WaveStatus[],
  version: string,
  immediate: boolean,
  window: WindowStatus | undefined,
  nextWaveAt: number | undefined,
): string {
  const total = { pending: 0, updating: 0, failed: 0, offline: 0 };
  let pendingInStartedWaves = 0;
  for (const count of counts) {
    total.pending += count.pending;
    total.updating += count.updating;
    total.failed += count.failed;
    total.offline += count.offline;
    if (count.wave <= state.currentWave) pendingInStartedWaves += count.pending;
  }
  const offline = total.offline > 0 ? `; ${plural(total.offline, 'offline device')} will catch up when back` : '';
  switch (phase) {
    case 'Halted':
      return `halted: ${state.halted!.reason}; no further device gets ${version} until a commit changes the Deployment`;
    case 'Complete':
      return `every online device runs ${version}${offline}`;
    case 'WaitingForWindow':
      return `${plural(pendingInStartedWaves, 'device')} wait for the maintenance window${window?.opensAt != null ? `, which opens at ${new Date(window.opensAt).toISOString()}` : ''}`;
    case 'Baking':
      return `wave ${state.currentWave} is complete; wave ${state.currentWave + 1} starts at ${new Date(nextWaveAt!).toISOString()} after bakeTime`;
    case 'Progressing': {
      const where = immediate
        ? `rolling back to ${version} on every device at once`
        : `${state.rollback ? `rolling back to ${version} in waves, ` : ''}wave ${state.currentWave} of ${counts.length}`;
      return `${where}: ${total.updating} updating, ${total.pending} pending, ${total.failed} failed${offline}`;
    }
  }
}

function clampWave(wave: number, waveCount: number): number {
  if (!Number.isFinite(wave) || wave < 1) return 1;
  return Math.min(Math.floor(wave), waveCount);
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function formatPercent(value: number): string {
  return String(Math.round(value * 10) / 10);
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
