import { describe, expect, it } from 'vitest';
import { thresholdCrossed } from '../../../src/plan/rollout/plan-rollouts.js';
import { HOUR, MINUTE, RolloutSim, T0, ids } from './rollout-sim.js';

describe('planRollouts: failureThreshold', () => {
  it('halts on a count: no further releases, failed devices keep what they were handed, the halt is listed', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { maxUnavailable: 3, failureThreshold: 2 } }).add(1, ...ids('d', 10));
    expect(sim.pass(T0).newlyReleased).toEqual(['d00', 'd01', 'd02']);
    sim.failed('d01').healthy('d00');
    let pass = sim.pass(T0 + MINUTE);
    expect(pass.status.state).toBe('Progressing');
    expect(pass.newlyReleased).toEqual(['d03', 'd04']);
    sim.failed('d03');
    pass = sim.pass(T0 + 2 * MINUTE);
    const halted = { reason: '2 of 5 attempted devices failed (2 >= failureThreshold 2)', devices: ['d01', 'd03'], at: T0 + 2 * MINUTE, failed: 2, attempted: 5 };
    expect(pass.status).toMatchObject({ state: 'Halted', halted });
    expect(pass.status.message).toBe(
      'halted: 2 of 5 attempted devices failed (2 >= failureThreshold 2); no further device gets 2.0 until a commit changes the Deployment',
    );
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.released).toEqual(['d00', 'd01', 'd02', 'd03', 'd04']);
    expect(pass.state.halted).toEqual(halted);
  });

  it('with 0, halts at the first failure', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { maxUnavailable: 1, failureThreshold: 0 } }).add(1, 'a', 'b');
    sim.pass(T0);
    expect(sim.pass(T0 + 1).status.state).toBe('Progressing');
    sim.failed('a');
    const pass = sim.pass(T0 + 2);
    expect(pass.status.halted?.reason).toBe('1 of 1 attempted device failed (1 >= failureThreshold 0)');
    expect(pass.newlyReleased).toEqual([]);
  });

  it('halts on a percentage only after minSample attempts, at exactly the threshold', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { maxUnavailable: 4, failureThreshold: '20%', minSample: 5 } }).add(1, ...ids('d', 20));
    expect(sim.pass(T0).newlyReleased).toEqual(['d00', 'd01', 'd02', 'd03']);
    sim.failed('d00').healthy('d01', 'd02', 'd03');
    // 1 of 4 failed is 25%, but 4 attempts are fewer than minSample 5.
    let pass = sim.pass(T0 + MINUTE);
    expect(pass.status.state).toBe('Progressing');
    expect(pass.newlyReleased).toEqual(['d04', 'd05', 'd06', 'd07']);
    sim.healthy('d04', 'd05', 'd06', 'd07');
    pass = sim.pass(T0 + 2 * MINUTE); // 1 of 8: 12.5%
    expect(pass.newlyReleased).toEqual(['d08', 'd09', 'd10', 'd11']);
    sim.failed('d08').healthy('d09');
    pass = sim.pass(T0 + 3 * MINUTE); // 2 of 12: 16.7%; d10 and d11 still hold 2 slots
    expect(pass.status.state).toBe('Progressing');
    expect(pass.newlyReleased).toEqual(['d12', 'd13']);
    sim.failed('d10');
    pass = sim.pass(T0 + 4 * MINUTE); // 3 of 14: 21.4%
    expect(pass.status.halted?.reason).toBe('3 of 14 attempted devices failed (21.4% >= 20%)');
    expect(pass.status.halted?.devices).toEqual(['d00', 'd08', 'd10']);
    expect(pass.newlyReleased).toEqual([]);
  });

  it('compares percentages exactly at the boundary, after minSample', () => {
    const settings = { failureThreshold: { kind: 'percent' as const, percent: 20 }, minSample: 10 };
    expect(thresholdCrossed(settings, 2, 10, 5)).toBe('2 of 10 attempted devices failed (20% >= 20%)');
    expect(thresholdCrossed(settings, 1, 6, 4)).toBeNull(); // fewer than minSample, and more to attempt
    expect(thresholdCrossed(settings, 2, 6, 0)).toBe('2 of 6 attempted devices failed (33.3% >= 20%)'); // nothing more to attempt
    expect(thresholdCrossed(settings, 2, 11, 0)).toBeNull(); // 18.2%
    expect(thresholdCrossed(settings, 3, 11, 9)).toBe('3 of 11 attempted devices failed (27.3% >= 20%)');
    expect(thresholdCrossed({ failureThreshold: { kind: 'percent', percent: 33.3333 }, minSample: 1 }, 1, 3, 0)).not.toBeNull();
    expect(thresholdCrossed({ failureThreshold: { kind: 'percent', percent: 0 }, minSample: 1 }, 0, 5, 0)).toBeNull();
    expect(thresholdCrossed({ failureThreshold: { kind: 'percent', percent: 0 }, minSample: 1 }, 1, 5, 0)).not.toBeNull();
    expect(thresholdCrossed({ failureThreshold: { kind: 'count', count: 3 }, minSample: 10 }, 3, 3, 7)).toBe(
      '3 of 3 attempted devices failed (3 >= failureThreshold 3)',
    ); // minSample does not apply to counts
    expect(thresholdCrossed({ failureThreshold: null, minSample: 1 }, 100, 100, 0)).toBeNull();
  });

  it('lets a small Deployment halt on a percentage: minSample is capped by the devices there are to attempt', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { failureThreshold: '50%' } }).add(1, 'a', 'b', 'c', 'd');
    sim.pass(T0);
    sim.failed('a', 'b').healthy('c', 'd');
    expect(sim.pass(T0 + MINUTE).status.halted?.reason).toBe('2 of 4 attempted devices failed (50% >= 50%)');
  });

  it('halts with offline devices about: 10 devices, 5 offline, the 5 online all failed, 20% (issue 13)', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { failureThreshold: '20%' } }).add(1, ...ids('on', 5)).add(1, ...ids('off', 5));
    for (const id of ids('off', 5)) {
      sim.silence(id);
      sim.get(id).lastSeen = T0 - HOUR;
    }
    expect(sim.pass(T0).newlyReleased).toEqual(ids('on', 5));
    sim.failed(...ids('on', 5));
    const pass = sim.pass(T0 + MINUTE);
    expect(pass.status.state).toBe('Halted');
    expect(pass.status.halted?.reason).toBe('5 of 5 attempted devices failed (100% >= 20%)');
    // The offline ones come back: nothing more is handed out.
    sim.wake(...ids('off', 5));
    expect(sim.pass(T0 + 2 * MINUTE).newlyReleased).toEqual([]);
  });

  it('halts on a canary wave smaller than minSample: waves [1, 100], default minSample 10, 5 canaries (issue 13)', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [1, 100], failureThreshold: '50%' } }).add(1, ...ids('canary', 5)).add(2, ...ids('rest', 495, 10));
    expect(sim.pass(T0).newlyReleased).toEqual(ids('canary', 5));
    sim.failed('canary00', 'canary01').report('installing', ['canary02', 'canary03', 'canary04']);
    expect(sim.pass(T0 + MINUTE).status.state).toBe('Progressing'); // 2 of 5 is 40%
    sim.failed('canary02');
    const pass = sim.pass(T0 + 2 * MINUTE);
    expect(pass.status.halted?.reason).toBe('3 of 5 attempted devices failed (60% >= 50%)');
    expect(pass.status.currentWave).toBe(1);
    expect(pass.released).toEqual(ids('canary', 5));
  });

  it('judges a percentage once the started wave has been attempted, not before, when it is smaller than minSample', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [10, 100], maxUnavailable: 2, failureThreshold: '40%' } })
      .add(1, ...ids('c', 4))
      .enrol(1, T0, 'late')
      .add(2, ...ids('r', 20, 10));
    expect(sim.pass(T0).newlyReleased).toEqual(['c00', 'c01']);
    sim.failed('c00', 'c01');
    // 2 of 2 failed, but 2 more canaries and a new one are still to be attempted (minSample 10 by default).
    let pass = sim.pass(T0 + MINUTE);
    expect(pass.status.state).toBe('Progressing');
    expect(pass.newlyReleased).toEqual(['c02', 'c03']); // failed devices hold no slot
    sim.healthy('c02', 'c03');
    pass = sim.pass(T0 + 2 * MINUTE);
    expect(pass.status.state).toBe('Progressing'); // 2 of 4 is 50%, but "late" has not reported yet
    sim.wake('late');
    expect(sim.pass(T0 + 3 * MINUTE).newlyReleased).toEqual(['late']);
    sim.healthy('late');
    pass = sim.pass(T0 + 4 * MINUTE);
    expect(pass.status.halted?.reason).toBe('2 of 5 attempted devices failed (40% >= 40%)');
    expect(pass.released.filter((id) => id.startsWith('r'))).toEqual([]);
  });

  it('keeps the halt across passes with the same fingerprint, even when the failed devices recover', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { maxUnavailable: 1, failureThreshold: 1 } }).add(1, 'a', 'b', 'c');
    sim.pass(T0);
    sim.failed('a');
    const halted = sim.pass(T0 + MINUTE).status.halted;
    expect(halted).toBeDefined();
    sim.healthy('a');
    for (const t of [T0 + 2 * MINUTE, T0 + 24 * 60 * MINUTE]) {
      const pass = sim.pass(t);
      expect(pass.status.state).toBe('Halted');
      expect(pass.status.halted).toEqual(halted);
      expect(pass.newlyReleased).toEqual([]);
      expect(pass.released).toEqual(['a']);
    }
  });

  it('lifts the halt when a commit changes the Deployment, and halts again if the new settings are crossed too', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { maxUnavailable: 2, failureThreshold: 1 } }).add(1, 'a', 'b', 'c', 'd');
    sim.pass(T0);
    sim.failed('a').healthy('b');
    expect(sim.pass(T0 + MINUTE).status.state).toBe('Halted');

    // Raising the threshold is a new fingerprint: a fresh state, same version, and the rollout resumes.
    sim.commit({ rollout: { maxUnavailable: 2, failureThreshold: 2 } });
    let pass = sim.pass(T0 + 2 * MINUTE);
    expect(pass.status.state).toBe('Progressing');
    expect(pass.status.halted).toBeUndefined();
    expect(pass.state.startedAt).toBe(T0 + 2 * MINUTE);
    expect(pass.newlyReleased).toEqual(['c', 'd']);
    // The failed device was not retried: it was and stays handed 2.0, and still counts.
    sim.failed('c');
    pass = sim.pass(T0 + 3 * MINUTE);
    expect(pass.status.halted?.devices).toEqual(['a', 'c']);

    // A new version starts over: nothing failed at 2.0.1 yet.
    sim.commit({ version: '2.0.1' });
    pass = sim.pass(T0 + 4 * MINUTE);
    expect(pass.status.state).toBe('Progressing');
    expect(pass.newlyReleased).toEqual(['a', 'b']);
  });

  it('never halts without a failureThreshold', () => {
    const sim = new RolloutSim({ version: '2.0' }).add(1, ...ids('d', 10));
    sim.pass(T0);
    sim.failed(...ids('d', 10));
    const pass = sim.pass(T0 + MINUTE);
    expect(pass.status.state).toBe('Progressing');
    expect(pass.status.waves[0]!.failed).toBe(10);
  });

  it('does not count offline devices as failed nor as attempted', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { failureThreshold: 1 } }).add(1, 'a', 'b');
    sim.pass(T0);
    sim.failed('a').silence('a');
    const pass = sim.pass(T0 + 11 * MINUTE);
    expect(pass.status.state).toBe('Progressing');
    expect(pass.status.waves[0]).toMatchObject({ offline: 1, failed: 0, updating: 1 });
  });

  it('lists at most 100 failed devices, sorted, and counts them all in the reason', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { failureThreshold: '10%' } }).add(1, ...Array.from({ length: 150 }, (_, i) => `d${149 - i}`));
    sim.pass(T0);
    sim.failed(...Array.from({ length: 120 }, (_, i) => `d${i}`));
    const halted = sim.pass(T0 + MINUTE).status.halted!;
    expect(halted.reason).toBe('120 of 150 attempted devices failed (80% >= 10%)');
    expect(halted.devices).toHaveLength(100);
    expect(halted.devices.slice(0, 4)).toEqual(['d0', 'd1', 'd10', 'd100']);
  });
});
