import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AppReport } from '../../../src/core/types.js';
import type { RolloutSpec } from '../../../src/desired/model.js';
import { planRollouts, planRolloutsInSteps } from '../../../src/plan/rollout/plan-rollouts.js';
import type { DeploymentRolloutStatus, RolloutDeploymentInput, RolloutDeviceInput, RolloutPlan, RolloutState } from '../../../src/plan/rollout/types.js';
import { HOUR, MINUTE, SECOND, T0 } from './rollout-sim.js';
import { DeploymentTracker } from '../../../src/plan/rollout/tracker.js';
import { startingState } from '../../../src/plan/rollout/state.js';

/**
 * Property-based tests of the pure engine: random fleets (waves, some empty), enrolments before and
 * during the rollout, devices that never report, offline stretches, devices whose install fails, and
 * clock steps from a second to hours. Each scenario is one Deployment going from 1.0 (completed) to
 * 2.0, driven pass by pass the way the reconciler drives it: what a pass releases is handed.
 */

const DAY = 24 * HOUR;

interface DeviceScript {
  /** 1-based wave; waves may be empty. */
  wave: number;
  /** When it enrols, relative to the commit of 2.0 (negative: before). */
  enrolOffsetMs: number;
  /** Delay from enrolment to its first report; null: never reports. */
  firstReportDelayMs: number | null;
  /** Stretches of passes online (reporting) or not; the last stretch lasts. */
  pattern: Array<{ on: boolean; passes: number }>;
  /** Passes between being handed 2.0 and reporting the outcome. */
  installPasses: number;
  /** 2.0 fails on this device. */
  fails: boolean;
}

interface Scenario {
  waves: number[];
  rollout: RolloutSpec;
  bakeMs: number;
  offlineAfterMs: number;
  devices: DeviceScript[];
  /** Clock steps between passes. */
  steps: number[];
}

interface Live {
  id: string;
  script: DeviceScript;
  enrolledAt: number;
  firstReportAt: number | null;
  lastSeen: number | null;
  report?: AppReport;
  handedVersion?: string;
  handedAtPass?: number;
  /** `now` of the first pass whose input showed it online and healthy at 2.0. */
  healthySeenAt?: number;
}

interface Pass {
  index: number;
  now: number;
  version: string;
  inputs: RolloutDeviceInput[];
  status: DeploymentRolloutStatus;
  state: RolloutState;
  /** Released by this pass and not handed the version before. */
  newly: string[];
}

const BAKES: Record<string, number> = { none: 0, '30s': 30 * SECOND, '5m': 5 * MINUTE, '20m': 20 * MINUTE };

function scenarioArb(options: { allFail?: boolean; threshold?: boolean } = {}): fc.Arbitrary<Scenario> {
  const waves = fc.uniqueArray(fc.integer({ min: 1, max: 99 }), { maxLength: 3 }).map((cuts) => [...cuts.sort((a, b) => a - b), 100]);
  const threshold = fc.oneof(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 100 }).map((p) => `${p}%`));
  return waves.chain((w) =>
    fc.record({
      waves: fc.constant(w),
      maxUnavailable: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
      failureThreshold: options.threshold ? threshold : fc.option(threshold, { nil: undefined }),
      minSample: fc.option(fc.integer({ min: 1, max: 20 }), { nil: undefined }),
      bake: fc.constantFrom('none', '30s', '5m', '20m'),
      offlineAfterMs: fc.integer({ min: 1, max: 20 }).map((m) => m * MINUTE),
      devices: fc.array(
        fc.record({
          wave: fc.integer({ min: 1, max: w.length }),
          enrolOffsetMs: fc.oneof(fc.constant(-DAY), fc.integer({ min: -HOUR, max: HOUR })),
          firstReportDelayMs: fc.option(fc.integer({ min: 0, max: 30 * MINUTE }), { nil: null, freq: 6 }),
          pattern: fc.array(fc.record({ on: fc.boolean(), passes: fc.integer({ min: 1, max: 20 }) }), { minLength: 1, maxLength: 4 }),
          installPasses: fc.integer({ min: 0, max: 2 }),
          fails: options.allFail ? fc.constant(true) : fc.boolean(),
        }),
        { maxLength: 40 },
      ),
      steps: fc.array(fc.oneof(fc.integer({ min: 1, max: 120 }).map((s) => s * SECOND), fc.integer({ min: 1, max: 40 }).map((m) => m * MINUTE), fc.constant(3 * HOUR)), {
        minLength: 1,
        maxLength: 60,
      }),
    }).map(({ maxUnavailable, failureThreshold, minSample, bake, ...rest }): Scenario => {
      const rollout: RolloutSpec = { waves: rest.waves };
      if (maxUnavailable !== undefined) rollout.maxUnavailable = maxUnavailable;
      if (failureThreshold !== undefined) rollout.failureThreshold = failureThreshold;
      if (minSample !== undefined) rollout.minSample = minSample;
      if (bake !== 'none') rollout.bakeTime = bake;
      return { ...rest, rollout, bakeMs: BAKES[bake]! };
    }),
  );
}

function online(script: DeviceScript, pass: number): boolean {
  let at = 0;
  for (const stretch of script.pattern) {
    at += stretch.passes;
    if (pass < at) return stretch.on;
  }
  return script.pattern[script.pattern.length - 1]!.on;
}

/** A completed 1.0 rollout: the memory the 2.0 rollout starts from. */
function completed10(waveCount: number): RolloutState {
  return {
    fingerprint: 'fp-1.0',
    version: '1.0',
    revision: 'rev-1.0',
    completedVersions: [],
    startedAt: T0 - 2 * DAY,
    completedAt: T0 - 2 * DAY,
    rollback: false,
    currentWave: waveCount,
    waveCompletedAt: {},
    wavesCompleteAtStart: [],
    halted: null,
  };
}

class Harness {
  readonly devices: Live[];
  readonly trace: Pass[] = [];
  states: ReadonlyMap<string, RolloutState>;
  version = '2.0';
  fingerprint = 'fp-2.0';
  now = T0;
  /** Every device reports on every pass from now on (the settle phase). */
  everyoneOnline = false;
  /** The incremental engine the region runs, given only the devices whose input changed; checked against planRollouts every pass. */
  tracker: DeploymentTracker | null = null;
  private lastInputs = new Map<string, string>();

  constructor(readonly scenario: Scenario) {
    this.states = new Map([['web', completed10(scenario.waves.length)]]);
    this.devices = scenario.devices.map((script, i) => {
      const enrolledAt = T0 + script.enrolOffsetMs;
      const firstReportAt = script.firstReportDelayMs === null ? null : enrolledAt + script.firstReportDelayMs;
      const live: Live = { id: `d${String(i).padStart(2, '0')}`, script, enrolledAt, firstReportAt, lastSeen: null };
      // A device that reported before the commit runs 1.0, handed to it.
      if (firstReportAt !== null && firstReportAt < T0) {
        live.lastSeen = firstReportAt;
        live.report = { version: '1.0', state: 'healthy' };
        live.handedVersion = '1.0';
      }
      return live;
    });
  }

  /** One pass at `now`: devices report, the engine plans, what it releases is handed. */
  pass(): Pass {
    const index = this.trace.length;
    const { now } = this;
    const inputs: RolloutDeviceInput[] = [];
    for (const device of this.devices) {
      if (device.enrolledAt > now) continue;
      if (this.everyoneOnline && device.firstReportAt === null) device.firstReportAt = now;
      const reports = device.firstReportAt !== null && now >= device.firstReportAt && (this.everyoneOnline || online(device.script, index));
      if (reports) {
        device.lastSeen = now;
        device.report = this.reportOf(device, index);
        if (device.report.version === '2.0' && device.report.state === 'healthy') device.healthySeenAt ??= now;
      }
      const input: RolloutDeviceInput = { id: device.id, wave: device.script.wave, lastSeen: device.lastSeen, enrolledAt: device.enrolledAt };
      if (device.report) input.report = { ...device.report };
      if (device.handedVersion !== undefined) input.handedVersion = device.handedVersion;
      inputs.push(input);
    }
    const planInput = {
      now,
      offlineAfterMs: this.scenario.offlineAfterMs,
      revision: `rev-${this.version}`,
      deployments: [{ deployment: 'web', app: 'web', version: this.version, fingerprint: this.fingerprint, rollout: this.scenario.rollout, devices: inputs }],
    };
    // The region plans in steps (the event loop served between): the same plan, whatever the step.
    const stepDevices = 1 + (index % 3);
    const steps = planRolloutsInSteps({ ...planInput, previous: new Map([...this.states].map(([name, state]) => [name, JSON.parse(JSON.stringify(state)) as RolloutState])) }, stepDevices);
    let stepsTaken = 0;
    let step = steps.next();
    while (!step.done) {
      stepsTaken++;
      step = steps.next();
    }
    const plan = planRollouts({ ...planInput, previous: this.states });
    expect(step.value).toEqual(plan);
    this.checkTracker(planInput.deployments[0]!, inputs, plan);
    if (inputs.length > stepDevices) expect(stepsTaken).toBeGreaterThan(0);
    this.states = new Map([...plan.states].map(([name, state]) => [name, JSON.parse(JSON.stringify(state)) as RolloutState]));
    const newly: string[] = [];
    for (const id of plan.release.get('web')!) {
      const device = this.devices.find((d) => d.id === id)!;
      if (device.handedVersion === this.version) continue;
      newly.push(id);
      device.handedVersion = this.version;
      device.handedAtPass = index;
    }
    const pass: Pass = { index, now, version: this.version, inputs, status: plan.statuses[0]!, state: plan.states.get('web')!, newly };
    this.trace.push(pass);
    return pass;
  }

  /** The tracker, fed the devices whose input changed since the last pass, plans what planRollouts planned. */
  private checkTracker(deployment: Omit<RolloutDeploymentInput, 'devices'>, inputs: RolloutDeviceInput[], plan: RolloutPlan): void {
    const { now } = this;
    const previous = this.states.get('web');
    if (!this.tracker || this.tracker.deployment.fingerprint !== deployment.fingerprint) {
      this.tracker = new DeploymentTracker(deployment, this.scenario.offlineAfterMs, startingState(previous, deployment, now, `rev-${this.version}`).state.startedAt);
      this.lastInputs.clear();
    }
    const current = new Map(inputs.map((input) => [input.id, input]));
    for (const input of inputs) {
      const json = JSON.stringify(input);
      if (this.lastInputs.get(input.id) === json) continue;
      this.lastInputs.set(input.id, json);
      this.tracker.set(input.id, input, now);
    }
    const steps = this.tracker.plan(now, `rev-${this.version}`, previous && JSON.parse(JSON.stringify(previous)), (id) => current.get(id), { offlineAfterMs: this.scenario.offlineAfterMs });
    let step = steps.next();
    while (!step.done) step = steps.next();
    const tracked = step.value;
    expect(tracked.state).toEqual(plan.states.get('web'));
    expect(tracked.status).toEqual(plan.statuses[0]);
    const released = inputs.filter((input) => this.tracker!.isReleased(input.id)).map((input) => input.id).sort();
    expect(released).toEqual([...plan.release.get('web')!].sort());
  }

  private reportOf(device: Live, pass: number): AppReport {
    const handed = device.handedVersion;
    if (handed === undefined) return { version: '1.0', state: 'healthy' };
    if (pass - device.handedAtPass! < device.script.installPasses) return { version: handed, state: 'installing' };
    if (handed === '2.0' && device.script.fails) return { version: '2.0', state: 'failed' };
    return { version: handed, state: 'healthy' };
  }

  /** The scenario's passes: one at the commit, then one after each clock step. */
  runSteps(): void {
    this.pass();
    for (const step of this.scenario.steps) {
      this.now += step;
      this.pass();
    }
  }

  /** Every device enrolled and reporting, a minute apart, long enough for every started wave to be attempted. */
  settle(passes: number): void {
    this.everyoneOnline = true;
    for (let i = 0; i < passes; i++) {
      this.now = Math.max(this.now, ...this.devices.map((d) => d.enrolledAt)) + MINUTE;
      this.pass();
    }
  }

  wave(id: string): number {
    return this.devices.find((d) => d.id === id)!.script.wave;
  }

  isOnline(input: RolloutDeviceInput, now: number): boolean {
    return input.lastSeen !== null && now - input.lastSeen <= this.scenario.offlineAfterMs;
  }
}

const sum = (status: DeploymentRolloutStatus, key: 'new' | 'pending' | 'updating' | 'healthy' | 'failed' | 'offline') =>
  status.waves.reduce((n, w) => n + w[key], 0);

describe('planRollouts: properties over random fleets, enrolments, offline and failure patterns, clock steps', () => {
  it('no device outside the started waves is handed the new version, and no device before its first report', () => {
    fc.assert(
      fc.property(scenarioArb(), (scenario) => {
        const h = new Harness(scenario);
        h.runSteps();
        for (const pass of h.trace) {
          for (const id of pass.newly) {
            expect(h.wave(id)).toBeLessThanOrEqual(pass.status.currentWave);
            const input = pass.inputs.find((d) => d.id === id)!;
            expect(h.isOnline(input, pass.now)).toBe(true);
          }
        }
      }),
    );
  });

  it('a halt stops hand-outs for good (until a commit changes the Deployment)', () => {
    fc.assert(
      fc.property(scenarioArb({ threshold: true }), (scenario) => {
        const h = new Harness(scenario);
        h.runSteps();
        h.settle(20);
        const first = h.trace.findIndex((p) => p.status.state === 'Halted');
        if (first < 0) return;
        for (const pass of h.trace.slice(first)) {
          expect(pass.status.state).toBe('Halted');
          expect(pass.status.halted).toEqual(h.trace[first]!.status.halted);
          if (pass.index > first) expect(pass.newly).toEqual([]);
        }
        expect(h.trace[first]!.newly).toEqual([]);
      }),
    );
  });

  it('offline devices never count as failed (nor as updating), and a halt names only online failed devices', () => {
    fc.assert(
      fc.property(scenarioArb(), (scenario) => {
        const h = new Harness(scenario);
        h.runSteps();
        for (const pass of h.trace) {
          const online = new Set(pass.inputs.filter((d) => h.isOnline(d, pass.now)).map((d) => d.id));
          const failedOnline = pass.inputs.filter((d) => online.has(d.id) && d.handedVersion === '2.0' && d.report?.state === 'failed').map((d) => d.id);
          expect(sum(pass.status, 'failed')).toBe(failedOnline.length);
          const updatingBound = pass.inputs.filter((d) => online.has(d.id)).length;
          expect(sum(pass.status, 'updating')).toBeLessThanOrEqual(updatingBound);
          const neverReported = pass.inputs.filter((d) => d.lastSeen === null && pass.now - d.enrolledAt! <= scenario.offlineAfterMs).length;
          expect(sum(pass.status, 'new')).toBe(neverReported);
          expect(sum(pass.status, 'offline')).toBe(pass.inputs.length - online.size - neverReported);
          if (pass.state.halted && pass.state.halted.at === pass.now) {
            for (const id of pass.state.halted.devices) expect(failedOnline).toContain(id);
          }
        }
      }),
    );
  });

  it('a canary is never skipped: a later wave starts only after a device of the earlier waves was healthy on 2.0 for bakeTime', () => {
    fc.assert(
      fc.property(scenarioArb(), (scenario) => {
        const h = new Harness(scenario);
        h.runSteps();
        h.settle(10);
        let before = 1;
        for (const pass of h.trace) {
          const wave = pass.status.currentWave;
          if (wave > before) {
            const earlier = pass.inputs.filter((d) => d.wave < wave);
            if (earlier.length > 0) {
              const proven = h.devices.some((d) => d.script.wave < wave && d.healthySeenAt !== undefined && d.healthySeenAt <= pass.now - scenario.bakeMs);
              expect(proven, `wave ${wave} started at pass ${pass.index} without a canary`).toBe(true);
            }
          }
          before = Math.max(before, wave);
        }
      }),
    );
  });

  it('maxUnavailable: a pass that releases devices leaves at most maxUnavailable updating', () => {
    fc.assert(
      fc.property(scenarioArb(), (scenario) => {
        const max = scenario.rollout.maxUnavailable;
        if (typeof max !== 'number') return;
        const h = new Harness(scenario);
        h.runSteps();
        for (const pass of h.trace) if (pass.newly.length > 0) expect(sum(pass.status, 'updating')).toBeLessThanOrEqual(max);
      }),
    );
  });

  it('if every attempted device fails, the rollout halts before any device outside the first wave is handed 2.0', () => {
    fc.assert(
      fc.property(scenarioArb({ allFail: true, threshold: true }), (scenario) => {
        const h = new Harness(scenario);
        h.runSteps();
        h.settle(150);
        const firstHandOut = h.trace.find((p) => p.newly.length > 0);
        if (!firstHandOut) return; // nobody could be attempted (no device, or every device in waves that never started)
        // The wave the first hand-out went to is the canary wave: nothing beyond it is ever handed 2.0.
        const canaryWave = firstHandOut.status.currentWave;
        const beyond = h.devices.filter((d) => d.handedVersion === '2.0' && d.script.wave > canaryWave);
        expect(beyond.map((d) => d.id)).toEqual([]);
        // And the halt fires, whatever the wave's size: a percentage once the wave was attempted, a count once reached.
        const last = h.trace[h.trace.length - 1]!;
        const attempted = h.devices.filter((d) => d.handedVersion === '2.0').length;
        const threshold = scenario.rollout.failureThreshold!;
        if (typeof threshold === 'string' || attempted >= Math.max(threshold, 1)) expect(last.status.state).toBe('Halted');
        else expect(last.status.state).toBe('Progressing');
      }),
    );
  });

  it('a revert (rollback: immediate) hands the old version back to exactly the devices that were handed the new one', () => {
    fc.assert(
      fc.property(scenarioArb(), fc.integer({ min: 0, max: 60 }), (scenario, revertAfter) => {
        const h = new Harness(scenario);
        h.pass();
        for (const step of scenario.steps.slice(0, revertAfter)) {
          h.now += step;
          h.pass();
        }
        const moved = h.devices.filter((d) => d.handedVersion === '2.0').map((d) => d.id);
        h.version = '1.0';
        h.fingerprint = 'fp-1.0-revert';
        h.now += MINUTE;
        const pass = h.pass();
        expect(pass.status.rollback).toBe(true);
        // Devices that never reported get 1.0 too (an immediate rollback releases everyone), and devices
        // reporting 1.0 healthy are released as they are: neither moved.
        const stayed = new Set(
          pass.inputs
            .filter((d) => (d.lastSeen === null && d.handedVersion === undefined) || (d.report?.version === '1.0' && d.report.state === 'healthy'))
            .map((d) => d.id),
        );
        for (const id of moved) expect(pass.newly).toContain(id);
        for (const id of pass.newly) if (!moved.includes(id)) expect(stayed.has(id), `${id} did not move yet is handed 1.0`).toBe(true);
      }),
    );
  });

  it('hostile rollout settings never throw out of a pass: that Deployment is Stalled or planned, and the others plan as if alone', () => {
    const text = fc.oneof(fc.string(), fc.constantFrom('', '10%', '-1', '1e309', '0%', '101%', 'NaN', 'Mars/Olympus', 'Europe/Berlin', '0 2 * * *', '0 0 30 2 *', '99 99 99 99 99', '1h', '-5m'));
    const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, -1, Number.NaN, Number.POSITIVE_INFINITY));
    const hostile = fc.record(
      {
        waves: fc.array(number, { maxLength: 5 }),
        maxUnavailable: fc.oneof(number, text),
        failureThreshold: fc.oneof(number, text),
        minSample: number,
        bakeTime: text,
        offlineAfter: text,
        window: fc.record({ schedule: text, duration: text, timezone: text }, { requiredKeys: ['schedule', 'duration'] }),
        rollback: fc.oneof(text, fc.record({ strategy: text, respectWindow: fc.boolean() }, { requiredKeys: [] })),
      },
      { requiredKeys: [] },
    ) as fc.Arbitrary<RolloutSpec>;
    fc.assert(
      fc.property(scenarioArb(), hostile, (scenario, bad) => {
        const devices: RolloutDeviceInput[] = scenario.devices.map((d, i) => ({ id: `d${i}`, wave: d.wave, lastSeen: T0, report: { version: '1.0', state: 'healthy' }, handedVersion: '1.0' }));
        const good = { deployment: 'good', app: 'good', version: '2.0', fingerprint: 'fp-good', rollout: scenario.rollout, devices };
        const evil = { deployment: 'evil', app: 'evil', version: '2.0', fingerprint: 'fp-evil', rollout: bad, devices };
        const input = { now: T0, offlineAfterMs: scenario.offlineAfterMs, revision: 'r', previous: new Map<string, RolloutState>() };
        const both = planRollouts({ ...input, deployments: [evil, good] });
        const alone = planRollouts({ ...input, deployments: [good] });
        expect(both.statuses.find((st) => st.deployment === 'good')).toEqual(alone.statuses[0]);
        expect(both.release.get('good')).toEqual(alone.release.get('good'));
        // The region's incremental engine plans the hostile Deployment exactly as planRollouts does.
        const { devices: _evilDevices, ...evilDeployment } = evil;
        const tracker = new DeploymentTracker(evilDeployment, scenario.offlineAfterMs, T0);
        for (const device of devices) tracker.set(device.id, device, T0);
        const steps = tracker.plan(T0, 'r', undefined, (id) => devices.find((d) => d.id === id), { offlineAfterMs: scenario.offlineAfterMs });
        let step = steps.next();
        while (!step.done) step = steps.next();
        expect(step.value.status).toEqual(both.statuses.find((st) => st.deployment === 'evil'));
        expect(step.value.state).toEqual(both.states.get('evil'));
        expect(devices.filter((d) => tracker.isReleased(d.id)).map((d) => d.id).sort()).toEqual([...both.release.get('evil')!].sort());
        const evilStatus = both.statuses.find((st) => st.deployment === 'evil')!;
        if (evilStatus.state === 'Stalled') {
          expect(evilStatus.problem?.message).toBeTruthy();
          expect(both.release.get('evil')!.size).toBe(0);
        }
      }),
    );
  });

  it('a paused rollout hands the new version to no further device, and resuming continues where it stopped', () => {
    fc.assert(
      fc.property(scenarioArb(), fc.integer({ min: 0, max: 60 }), fc.integer({ min: 1, max: 30 }), (scenario, pauseAfter, pausedPasses) => {
        const h = new Harness(scenario);
        h.pass();
        for (const step of scenario.steps.slice(0, pauseAfter)) {
          h.now += step;
          h.pass();
        }
        const before = h.trace[h.trace.length - 1]!.state;
        // The commit of `cascade rollout pause`: same fingerprint, rollout.paused set.
        h.scenario.rollout.paused = true;
        const handed = new Set(h.devices.filter((d) => d.handedVersion === '2.0').map((d) => d.id));
        for (let i = 0; i < pausedPasses; i++) {
          h.now += scenario.steps[i % scenario.steps.length]!;
          const pass = h.pass();
          expect(pass.newly, `pass ${pass.index} handed 2.0 while paused`).toEqual([]);
          expect(pass.state.currentWave).toBe(before.currentWave);
          expect(pass.state.startedAt).toBe(before.startedAt);
          expect(['Paused', 'Halted', 'Complete']).toContain(pass.status.state);
        }
        h.settle(3);
        for (const pass of h.trace.slice(-3)) expect(pass.newly).toEqual([]);
        expect(h.devices.filter((d) => d.handedVersion === '2.0').map((d) => d.id).sort()).toEqual([...handed].sort());
        // Resumed: the same rollout state goes on (never restarted), waves never un-start.
        delete h.scenario.rollout.paused;
        const resumed = h.pass();
        expect(resumed.state.startedAt).toBe(before.startedAt);
        expect(resumed.state.currentWave).toBeGreaterThanOrEqual(before.currentWave);
        expect(resumed.status.state).not.toBe('Paused');
      }),
    );
  });
});
