import { describe, expect, it } from 'vitest';
import type { DeviceDesired } from '../../../src/core/types.js';
import type { RolloutSpec } from '../../../src/desired/model.js';
import { computeHandOut } from '../../../src/plan/hand-out.js';
import { planRollouts } from '../../../src/plan/rollout/plan-rollouts.js';
import { releasedBy } from '../../../src/plan/rollout/released.js';
import { MAX_COMPLETED_VERSIONS, startingState } from '../../../src/plan/rollout/state.js';
import type { RolloutState } from '../../../src/plan/rollout/types.js';
import { MINUTE, RolloutSim, T0 } from './rollout-sim.js';

const nightly = { schedule: '0 2 * * *', duration: '2h', timezone: 'Europe/Berlin' };
const night = Date.parse('2024-06-11T00:30:00Z'); // 02:30 Berlin
const noon = Date.parse('2024-06-11T10:00:00Z');

/**
 * 1.0 completed; 2.0 reached a (wave 1), b1 (healthy) and b2 (failed, then offline) of wave 2;
 * c1..c3 never left 1.0. Ready for a commit at `noon`, outside the window.
 */
function halfwayTo2(rollout: RolloutSpec): RolloutSim {
  const base: RolloutSpec = { waves: [10, 50, 100], maxUnavailable: 1, window: nightly };
  const sim = new RolloutSim({ version: '1.0', rollout: base })
    .add(1, 'a')
    .add(2, 'b1', 'b2')
    .add(3, 'c1', 'c2', 'c3')
    .running('1.0', 'a', 'b1', 'b2', 'c1', 'c2', 'c3');
  expect(sim.pass(night - 60 * MINUTE).status.state).toBe('Complete');
  sim.commit({ version: '2.0' });
  expect(sim.pass(night).newlyReleased).toEqual(['a']);
  sim.healthy('a');
  expect(sim.pass(night + 1).newlyReleased).toEqual(['b1']);
  sim.healthy('b1');
  expect(sim.pass(night + 2).newlyReleased).toEqual(['b2']);
  sim.failed('b2').silence('b2');
  expect(sim.pass(night + 3).status).toMatchObject({ state: 'Progressing', currentWave: 2, rollback: false });
  sim.commit({ version: '1.0', rollout: { ...base, ...rollout } });
  return sim;
}

function handedOf(sim: RolloutSim): Map<string, DeviceDesired> {
  const handed = new Map<string, DeviceDesired>();
  for (const device of sim.devices.values()) handed.set(device.id, { web: { version: device.handedVersion!, deployment: 'web' } });
  return handed;
}

describe('planRollouts: rollback fast path', () => {
  it('sends every affected device back at once: no waves, no maxUnavailable, no window; devices on 1.0 get nothing', () => {
    const sim = halfwayTo2({});
    const handedBefore = handedOf(sim);
    const pass = sim.pass(noon);
    expect(pass.status).toMatchObject({ rollback: true, currentWave: 1, state: 'Progressing', version: '1.0', revision: 'rev-1.0' });
    // Drawn as the one wave it is, not as the rollout's three.
    expect(pass.status.waves).toHaveLength(1);
    expect(pass.status.waves[0]).toMatchObject({ wave: 1, percent: 100 });
    expect(pass.status.message).toBe('rolling back to 1.0 on every device at once: 2 updating, 0 pending, 0 failed; 1 offline device will catch up when back');
    // b2 is offline, but handed 1.0 already: it picks it up when it comes back.
    expect(pass.newlyReleased).toEqual(['a', 'b1', 'b2']);
    expect(pass.released).toEqual(['a', 'b1', 'b2', 'c1', 'c2', 'c3']);

    // What computeHandOut makes of it: only the devices that left 1.0 get a change.
    const resolved = new Map([...handedBefore.keys()].map((id) => [id, { web: { version: '1.0', deployment: 'web' } }]));
    const changes = computeHandOut({ resolved, handed: handedBefore, installed: new Map(), released: releasedBy(pass.plan) });
    expect([...changes.keys()].sort()).toEqual(['a', 'b1', 'b2']);

    sim.report('healthy', ['a', 'b1'], '1.0');
    expect(sim.pass(noon + MINUTE).status.state).toBe('Complete');
  });

  it('does not halt a rollback on failures', () => {
    const sim = halfwayTo2({ failureThreshold: 0 });
    sim.pass(noon);
    sim.report('failed', ['a'], '1.0');
    const pass = sim.pass(noon + MINUTE);
    expect(pass.status.state).toBe('Progressing');
    expect(pass.status.waves[0]!.failed).toBe(1);
  });

  it('waits for the window with respectWindow: true, then sends everything at once', () => {
    const sim = halfwayTo2({ rollback: { strategy: 'immediate', respectWindow: true } });
    let pass = sim.pass(noon);
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.status).toMatchObject({ state: 'WaitingForWindow', rollback: true });
    expect(pass.released).toEqual(['c1', 'c2', 'c3']);
    pass = sim.pass(night + 24 * 60 * MINUTE);
    expect(pass.newlyReleased).toEqual(['a', 'b1', 'b2']);
  });

  it('with strategy waves, is a normal rollout: waves, maxUnavailable and the window', () => {
    const sim = halfwayTo2({ rollback: 'waves' });
    let pass = sim.pass(noon);
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.status).toMatchObject({ state: 'WaitingForWindow', rollback: true, currentWave: 1 });
    pass = sim.pass(night + 24 * 60 * MINUTE);
    expect(pass.newlyReleased).toEqual(['a']);
    sim.report('healthy', ['a'], '1.0');
    pass = sim.pass(night + 24 * 60 * MINUTE + 1);
    expect(pass.newlyReleased).toEqual(['b1']); // b2 is offline; wave 3 never left 1.0
    expect(pass.status.currentWave).toBe(2);
    expect(pass.status.message).toBe('rolling back to 1.0 in waves, wave 2 of 3: 1 updating, 0 pending, 0 failed; 1 offline device will catch up when back');
  });

  it('with {strategy: waves, respectWindow: false}, goes in waves outside the window', () => {
    const sim = halfwayTo2({ rollback: { strategy: 'waves', respectWindow: false } });
    expect(sim.pass(noon).newlyReleased).toEqual(['a']);
  });

  it('rolls a revert of the revert out in waves again: only completed versions are rollback targets', () => {
    const sim = halfwayTo2({});
    sim.pass(noon);
    sim.report('healthy', ['a', 'b1'], '1.0');
    expect(sim.pass(noon + MINUTE).state.completedVersions).toEqual(['1.0']);
    sim.commit({ version: '2.0' });
    const pass = sim.pass(night + 24 * 60 * MINUTE);
    expect(pass.status.rollback).toBe(false);
    expect(pass.newlyReleased).toEqual(['a']);
  });

  it('keeps a rollback a rollback when a later commit only changes its rollout settings', () => {
    const sim = halfwayTo2({});
    sim.pass(noon);
    sim.commit({ rollout: { maxUnavailable: 2 } });
    expect(sim.pass(noon + MINUTE).status.rollback).toBe(true);
  });
});

describe('startingState', () => {
  const input = (version: string, fingerprint = `fp-${version}`) => ({ deployment: 'web', app: 'web', version, fingerprint, rollout: {}, devices: [] });
  const state = (version: string, completedVersions: string[], completedAt: number | null): RolloutState => ({
    fingerprint: `fp-${version}`,
    version,
    revision: 'r',
    completedVersions,
    startedAt: 0,
    completedAt,
    rollback: false,
    currentWave: 2,
    waveCompletedAt: { 1: 5 },
    wavesCompleteAtStart: [],
    halted: { reason: 'x', devices: [], at: 1 },
  });

  it('keeps the previous state while the fingerprint is the same', () => {
    const previous = state('2.0', [], null);
    expect(startingState(previous, input('2.0'), 10, 'r2')).toEqual({ state: previous, fresh: false });
  });

  it('starts fresh on a new fingerprint, remembering the previous version only if it completed', () => {
    const fresh = startingState(state('2.0', ['1.0'], 7), input('3.0'), 10, 'r3');
    expect(fresh).toEqual({
      fresh: true,
      state: {
        fingerprint: 'fp-3.0',
        version: '3.0',
        revision: 'r3',
        completedVersions: ['1.0', '2.0'],
        startedAt: 10,
        completedAt: null,
        rollback: false,
        currentWave: 1,
        waveCompletedAt: {},
        wavesCompleteAtStart: [],
        halted: null,
      },
    });
    expect(startingState(state('2.0', ['1.0'], null), input('1.0'), 10, 'r').state).toMatchObject({ completedVersions: ['1.0'], rollback: true });
    expect(startingState(state('2.0', ['1.0'], null), input('3.0'), 10, 'r').state.completedVersions).toEqual(['1.0']);
    expect(startingState(undefined, input('1.0'), 10, 'r').state).toMatchObject({ completedVersions: [], rollback: false, startedAt: 10 });
  });

  it('deduplicates completed versions, keeping the latest MAX_COMPLETED_VERSIONS', () => {
    const many = Array.from({ length: MAX_COMPLETED_VERSIONS }, (_, i) => `1.${i}`);
    const next = startingState(state('1.3', many, 1), input('9.0'), 10, 'r').state.completedVersions;
    expect(next).toHaveLength(MAX_COMPLETED_VERSIONS);
    expect(next.at(-1)).toBe('1.3');
    expect(next.filter((v) => v === '1.3')).toHaveLength(1);
    const overflow = startingState(state('2.0', many, 1), input('9.0'), 10, 'r').state.completedVersions;
    expect(overflow[0]).toBe('1.1');
    expect(overflow.at(-1)).toBe('2.0');
  });
});

describe('planRollouts: several Deployments', () => {
  it('plans each on its own and sorts the statuses by name; refuses a Deployment listed twice', () => {
    const device = { id: 'd', wave: 1, lastSeen: T0 };
    const deployment = (name: string) => ({ deployment: name, app: name, version: '1', fingerprint: name, rollout: {}, devices: [device] });
    const plan = planRollouts({ now: T0, offlineAfterMs: 10 * MINUTE, revision: 'r', previous: new Map(), deployments: [deployment('zeta'), deployment('alpha')] });
    expect(plan.statuses.map((s) => s.deployment)).toEqual(['alpha', 'zeta']);
    expect([...plan.release.get('zeta')!]).toEqual(['d']);
    expect(() => planRollouts({ now: T0, offlineAfterMs: 10 * MINUTE, revision: 'r', previous: new Map(), deployments: [deployment('a'), deployment('a')] })).toThrow(/listed twice/);
  });
});
