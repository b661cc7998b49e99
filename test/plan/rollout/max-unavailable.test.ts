import { describe, expect, it } from 'vitest';
import { rolloutSettings } from '../../../src/plan/rollout/settings.js';
import { MINUTE, RolloutSim, T0, ids } from './rollout-sim.js';

describe('planRollouts: maxUnavailable', () => {
  it('caps the devices updating at once (count), releasing by device id as slots free up', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { maxUnavailable: 2 } }).add(1, 'e', 'd', 'c', 'b', 'a');
    let pass = sim.pass(T0);
    expect(pass.newlyReleased).toEqual(['a', 'b']);
    expect(pass.status.waves[0]).toMatchObject({ updating: 2, pending: 3 });
    expect(sim.pass(T0 + MINUTE).newlyReleased).toEqual([]);
    sim.report('installing', ['a', 'b']);
    expect(sim.pass(T0 + 2 * MINUTE).newlyReleased).toEqual([]);
    sim.healthy('a');
    expect(sim.pass(T0 + 3 * MINUTE).newlyReleased).toEqual(['c']);
    // A failed device is no longer updating: its slot goes to the next one.
    sim.failed('b');
    pass = sim.pass(T0 + 4 * MINUTE);
    expect(pass.newlyReleased).toEqual(['d']);
    expect(pass.status.waves[0]).toMatchObject({ healthy: 1, failed: 1, updating: 2, pending: 1 });
  });

  it('takes a percentage of the Deployment devices in the region, rounded up', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { maxUnavailable: '10%' } }).add(1, ...ids('d', 25));
    expect(sim.pass(T0).newlyReleased).toEqual(['d00', 'd01', 'd02']); // 2.5 -> 3
    const settings = (value: string, count: number) => rolloutSettings({ maxUnavailable: value }, count, 'Deployment web').maxUnavailable;
    expect(settings('10%', 30)).toBe(3); // not 4, although 30 * 0.1 is 3.0000000000000004
    expect(settings('10%', 31)).toBe(4);
    expect(settings('1%', 5)).toBe(1); // at least one
    expect(settings('1%', 0)).toBe(1);
    expect(settings('12.5%', 8)).toBe(1);
    expect(settings('100%', 7)).toBe(7);
  });

  it('counts offline devices in the percentage base, but not as updating', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { maxUnavailable: '50%' } }).add(1, 'a', 'b', 'c', 'd');
    expect(sim.pass(T0).newlyReleased).toEqual(['a', 'b']);
    // a goes silent while updating: it no longer holds a slot.
    sim.silence('a');
    expect(sim.pass(T0 + 20 * MINUTE).newlyReleased).toEqual(['c']);
  });

  it('releases pending devices of started waves by wave, then id', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100], maxUnavailable: 2 } })
      .add(1, 'c1', 'z1', 'y1')
      .add(2, 'a2', 'b2', 'c2')
      .silence('z1', 'y1');
    sim.get('z1').lastSeen = T0 - 20 * MINUTE;
    sim.get('y1').lastSeen = T0 - 20 * MINUTE;
    // z1 and y1 are offline: set aside, so wave 1 is the canary c1 alone.
    expect(sim.pass(T0).newlyReleased).toEqual(['c1']);
    sim.healthy('c1');
    expect(sim.pass(T0 + MINUTE).newlyReleased).toEqual(['a2', 'b2']);
    sim.wake('z1', 'y1').healthy('a2', 'b2');
    expect(sim.pass(T0 + 2 * MINUTE).newlyReleased).toEqual(['y1', 'z1']);
  });

  it('without maxUnavailable releases a whole started wave at once', () => {
    const sim = new RolloutSim({ version: '2.0' }).add(1, ...ids('d', 40));
    expect(sim.pass(T0).newlyReleased).toHaveLength(40);
  });
});
