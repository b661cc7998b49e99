import type { AppHealth } from '../../../src/core/types.js';
import type { RolloutSpec } from '../../../src/desired/model.js';
import { DEFAULT_OFFLINE_AFTER_MS } from '../../../src/plan/rollout/defaults.js';
import { planRollouts } from '../../../src/plan/rollout/plan-rollouts.js';
import type { DeploymentRolloutStatus, RolloutDeviceInput, RolloutPlan, RolloutState } from '../../../src/plan/rollout/types.js';

/** 2024-06-10T12:00:00Z: a Monday, summer time in Europe. */
export const T0 = Date.UTC(2024, 5, 10, 12, 0, 0);
export const SECOND = 1_000;
export const MINUTE = 60_000;
export const HOUR = 3_600_000;

interface SimDevice extends RolloutDeviceInput {
  /** A silent device keeps its last lastSeen; the others report on every pass. */
  silent: boolean;
}

export interface PassResult {
  plan: RolloutPlan;
  status: DeploymentRolloutStatus;
  state: RolloutState;
  /** Device ids the pass released that were not handed the version before, sorted. */
  newlyReleased: string[];
  /** Every device id in the release set, sorted. */
  released: string[];
}

/**
 * One Deployment and its devices, driven pass by pass through the pure planner: what a pass releases
 * is handed (as the reconciler would), and tests set what devices report. Time only moves through `now`.
 */
export class RolloutSim {
  readonly devices = new Map<string, SimDevice>();
  states = new Map<string, RolloutState>();
  version: string;
  rollout: RolloutSpec;
  fingerprint: string;
  revision = 'rev-1';
  /** The region's offline clock (`--offline-after`). */
  offlineAfterMs = DEFAULT_OFFLINE_AFTER_MS;

  constructor(
    options: { version: string; rollout?: RolloutSpec; fingerprint?: string },
    readonly name = 'web',
  ) {
    this.version = options.version;
    this.rollout = options.rollout ?? {};
    this.fingerprint = options.fingerprint ?? `fp-${options.version}`;
  }

  /** Adds devices in `wave`, online, reporting nothing yet. */
  add(wave: number, ...ids: string[]): this {
    for (const id of ids) this.devices.set(id, { id, wave, lastSeen: T0 - MINUTE, silent: false });
    return this;
  }

  /**
   * Devices in `wave` that enrolled at `enrolledAt` and have not reported yet (lastSeen null, silent):
   * `wake` them for their first report.
   */
  enrol(wave: number, enrolledAt: number, ...ids: string[]): this {
    for (const id of ids) this.devices.set(id, { id, wave, lastSeen: null, enrolledAt, silent: true });
    return this;
  }

  /** Devices that run `version` healthy and were handed it: where a fleet stands after a completed rollout. */
  running(version: string, ...ids: string[]): this {
    for (const id of ids) {
      const device = this.get(id);
      device.handedVersion = version;
      device.report = { version, state: 'healthy' };
    }
    return this;
  }

  /** What `ids` report about the app: `state` at `version` (default: the current target). */
  report(state: AppHealth, ids: string[], version: string = this.version): this {
    for (const id of ids) this.get(id).report = { version, state };
    return this;
  }

  healthy(...ids: string[]): this {
    return this.report('healthy', ids);
  }

  failed(...ids: string[]): this {
    return this.report('failed', ids);
  }

  /** The devices stop reporting (their lastSeen stays where it is). */
  silence(...ids: string[]): this {
    for (const id of ids) this.get(id).silent = true;
    return this;
  }

  /** The devices report again from the next pass on. */
  wake(...ids: string[]): this {
    for (const id of ids) this.get(id).silent = false;
    return this;
  }

  /** A commit changes the Deployment. */
  commit(change: { version?: string; rollout?: RolloutSpec; fingerprint?: string; revision?: string }): this {
    if (change.version !== undefined) this.version = change.version;
    if (change.rollout !== undefined) this.rollout = change.rollout;
    this.fingerprint = change.fingerprint ?? `fp-${this.version}-${JSON.stringify(this.rollout)}`;
    this.revision = change.revision ?? `rev-${this.version}`;
    return this;
  }

  get(id: string): SimDevice {
    const device = this.devices.get(id);
    if (!device) throw new Error(`no device ${id} in the simulation`);
    return device;
  }

  /** One reconciler pass at `now`: plan, then hand the released devices the version. */
  pass(now: number): PassResult {
    const inputs: RolloutDeviceInput[] = [];
    for (const device of this.devices.values()) {
      if (!device.silent) device.lastSeen = now;
      const { silent: _silent, ...input } = device;
      inputs.push(structuredClone(input));
    }
    const plan = planRollouts({
      now,
      offlineAfterMs: this.offlineAfterMs,
      revision: this.revision,
      previous: this.states,
      deployments: [{ deployment: this.name, app: 'web', version: this.version, fingerprint: this.fingerprint, rollout: this.rollout, devices: inputs }],
    });
    // What the reconciler does: persist the states (through JSON, as a store would), hand out.
    this.states = new Map([...plan.states].map(([name, state]) => [name, JSON.parse(JSON.stringify(state)) as RolloutState]));
    const release = plan.release.get(this.name)!;
    const newlyReleased: string[] = [];
    for (const id of release) {
      const device = this.get(id);
      if (device.handedVersion !== this.version) newlyReleased.push(id);
      device.handedVersion = this.version;
    }
    return {
      plan,
      status: plan.statuses[0]!,
      state: plan.states.get(this.name)!,
      newlyReleased: newlyReleased.sort(),
      released: [...release].sort(),
    };
  }
}

export function ids(prefix: string, count: number, from = 0): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i + from).padStart(2, '0')}`);
}
