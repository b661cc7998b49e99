import { describe, expect, it } from 'vitest';
import { MINUTE, RolloutSim, T0 } from './rollout-sim.js';

const wave = (n: number, percent: number, counts: Partial<Record<'devices' | 'new' | 'pending' | 'updating' | 'healthy' | 'failed' | 'offline', number>>) => ({
  wave: n,
  percent,
  devices: 0,
  new: 0,
  pending: 0,
  updating: 0,
  healthy: 0,
  failed: 0,
  offline: 0,
  ...counts,
});

describe('planRollouts: waves and bakeTime', () => {
  const threeWaves = () =>
    new RolloutSim({ version: '2.0', rollout: { waves: [10, 50, 100], bakeTime: '10m' } })
      .add(1, 'a1')
      .add(2, 'b1', 'b2')
      .add(3, 'c1', 'c2', 'c3')
      .running('1.0', 'a1', 'b1', 'b2', 'c1', 'c2', 'c3');

  it('starts wave 2 only once every wave-1 device is healthy and bakeTime has passed, to the millisecond', () => {
    const sim = threeWaves();
    let pass = sim.pass(T0);
    expect(pass.newlyReleased).toEqual(['a1']);
    expect(pass.status).toMatchObject({ state: 'Progressing', currentWave: 1, version: '2.0', revision: 'rev-1', rollback: false, startedAt: T0 });
    expect(pass.status.waves).toEqual([
      wave(1, 10, { devices: 1, updating: 1 }),
      wave(2, 50, { devices: 2, pending: 2 }),
      wave(3, 100, { devices: 3, pending: 3 }),
    ]);
    expect(pass.status.message).toBe('wave 1 of 3: 1 updating, 5 pending, 0 failed');

    sim.report('installing', ['a1']);
    pass = sim.pass(T0 + MINUTE);
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.status.state).toBe('Progressing');

    sim.healthy('a1');
    pass = sim.pass(T0 + 2 * MINUTE);
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.status).toMatchObject({ state: 'Baking', currentWave: 1, nextWaveAt: T0 + 12 * MINUTE });
    expect(pass.status.message).toBe('wave 1 is complete; wave 2 starts at 2024-06-10T12:12:00.000Z after bakeTime');
    expect(pass.state.waveCompletedAt).toEqual({ 1: T0 + 2 * MINUTE });

    pass = sim.pass(T0 + 12 * MINUTE - 1);
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.status.state).toBe('Baking');

    pass = sim.pass(T0 + 12 * MINUTE);
    expect(pass.newlyReleased).toEqual(['b1', 'b2']);
    expect(pass.status).toMatchObject({ state: 'Progressing', currentWave: 2 });
    expect(pass.status.nextWaveAt).toBeUndefined();
    expect(pass.status.waves[1]).toEqual(wave(2, 50, { devices: 2, updating: 2 }));

    sim.healthy('b1');
    expect(sim.pass(T0 + 30 * MINUTE).newlyReleased).toEqual([]); // b2 still on its way
    sim.healthy('b2');
    pass = sim.pass(T0 + 31 * MINUTE);
    expect(pass.status).toMatchObject({ state: 'Baking', nextWaveAt: T0 + 41 * MINUTE });
    expect(sim.pass(T0 + 41 * MINUTE - 1).newlyReleased).toEqual([]);
    pass = sim.pass(T0 + 41 * MINUTE);
    expect(pass.newlyReleased).toEqual(['c1', 'c2', 'c3']);
    expect(pass.status.currentWave).toBe(3);

    sim.healthy('c1', 'c2', 'c3');
    pass = sim.pass(T0 + 45 * MINUTE);
    expect(pass.status).toMatchObject({ state: 'Complete', currentWave: 3, message: 'every online device runs 2.0' });
    expect(pass.state.completedAt).toBe(T0 + 45 * MINUTE);
    expect(pass.released).toEqual(['a1', 'b1', 'b2', 'c1', 'c2', 'c3']);
    expect(pass.status.waves.map((w) => w.healthy)).toEqual([1, 2, 3]);
  });

  it('without bakeTime, starts the next wave in the pass that sees the previous one complete', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100] } }).add(1, 'a').add(2, 'b');
    expect(sim.pass(T0).newlyReleased).toEqual(['a']);
    sim.healthy('a');
    expect(sim.pass(T0 + 1).newlyReleased).toEqual(['b']);
  });

  it('holds the next wave while a device of a started wave has failed (without failureThreshold: no halt)', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100] } }).add(1, 'a1', 'a2').add(2, 'b1');
    sim.pass(T0);
    sim.healthy('a1').failed('a2');
    for (const t of [T0 + MINUTE, T0 + 60 * MINUTE, T0 + 24 * 60 * MINUTE]) {
      const pass = sim.pass(t);
      expect(pass.newlyReleased).toEqual([]);
      expect(pass.status).toMatchObject({ state: 'Progressing', currentWave: 1, message: 'wave 1 of 2: 0 updating, 1 pending, 1 failed' });
      expect(pass.status.halted).toBeUndefined();
    }
  });

  it('starts the bake over when a device of the current wave turns unhealthy before the bake ends', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100], bakeTime: '10m' } }).add(1, 'a1', 'a2').add(2, 'b1');
    sim.pass(T0);
    sim.healthy('a1', 'a2');
    expect(sim.pass(T0 + MINUTE).status.nextWaveAt).toBe(T0 + 11 * MINUTE);
    sim.report('installing', ['a2']); // e.g. the app restarted and is checking its health again
    expect(sim.pass(T0 + 5 * MINUTE).status.state).toBe('Progressing');
    sim.healthy('a2');
    const pass = sim.pass(T0 + 6 * MINUTE);
    expect(pass.status.nextWaveAt).toBe(T0 + 16 * MINUTE);
    expect(sim.pass(T0 + 11 * MINUTE).newlyReleased).toEqual([]);
    expect(sim.pass(T0 + 16 * MINUTE).newlyReleased).toEqual(['b1']);
  });

  it('does not bake after waves that had nothing to update: empty waves and waves already at the version', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [1, 10, 50, 100], bakeTime: '1h' } })
      .add(2, 'b1')
      .add(3, 'c1')
      .add(4, 'd1')
      .running('2.0', 'b1');
    // Wave 1 is empty and wave 2 already runs 2.0: wave 3 starts in the first pass.
    let pass = sim.pass(T0);
    expect(pass.newlyReleased).toEqual(['c1']);
    expect(pass.status.currentWave).toBe(3);
    expect(pass.state.wavesCompleteAtStart).toEqual([1, 2]);
    sim.healthy('c1');
    pass = sim.pass(T0 + MINUTE);
    expect(pass.status).toMatchObject({ state: 'Baking', nextWaveAt: T0 + 61 * MINUTE });
    expect(sim.pass(T0 + 61 * MINUTE).newlyReleased).toEqual(['d1']);
  });

  it('is Complete at once, in the last wave, when every device already runs the version', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [10, 100], bakeTime: '1h' } }).add(1, 'a').add(2, 'b').running('2.0', 'a', 'b');
    const pass = sim.pass(T0);
    expect(pass.status).toMatchObject({ state: 'Complete', currentWave: 2 });
    expect(pass.released).toEqual(['a', 'b']);
    expect(pass.newlyReleased).toEqual([]);
  });

  it('never un-starts a wave: a wave-1 device coming back behind gets its update first, wave 2 keeps going', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100], maxUnavailable: 1 } })
      .add(1, 'a1', 'a2')
      .add(2, 'b1', 'b2', 'b3')
      .silence('a2');
    // a2 has been silent for 20 minutes: set aside, wave 1 is a1 alone.
    sim.get('a2').lastSeen = T0 - 20 * MINUTE;
    expect(sim.pass(T0).newlyReleased).toEqual(['a1']);
    sim.healthy('a1');
    expect(sim.pass(T0 + MINUTE).newlyReleased).toEqual(['b1']);
    sim.wake('a2');
    const pass = sim.pass(T0 + 2 * MINUTE);
    expect(pass.newlyReleased).toEqual([]); // b1 holds the only slot
    expect(pass.status.currentWave).toBe(2);
    sim.healthy('b1');
    expect(sim.pass(T0 + 3 * MINUTE).newlyReleased).toEqual(['a2']); // by wave, then id
    sim.healthy('a2');
    expect(sim.pass(T0 + 4 * MINUTE).newlyReleased).toEqual(['b2']);
  });

  it('clamps waves outside the rollout to its first and last wave', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100] } }).add(0, 'zero').add(7, 'seven');
    const pass = sim.pass(T0);
    expect(pass.newlyReleased).toEqual(['zero']);
    expect(pass.status.waves.map((w) => w.devices)).toEqual([1, 1]);
  });

  it('uses one wave of 100% when no waves are set', () => {
    const sim = new RolloutSim({ version: '2.0' }).add(1, 'a', 'b', 'c');
    const pass = sim.pass(T0);
    expect(pass.newlyReleased).toEqual(['a', 'b', 'c']);
    expect(pass.status.waves).toEqual([wave(1, 100, { devices: 3, updating: 3 })]);
  });

  it('does not mutate the previous states it is given', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100] } }).add(1, 'a').add(2, 'b');
    sim.pass(T0);
    const before = Object.freeze(structuredClone(sim.states.get('web')!));
    Object.freeze(before.waveCompletedAt);
    Object.freeze(before.wavesCompleteAtStart);
    sim.states = new Map([['web', before]]);
    sim.healthy('a');
    expect(sim.pass(T0 + 1).newlyReleased).toEqual(['b']);
    expect(before.currentWave).toBe(1);
  });
});
