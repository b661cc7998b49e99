import { describe, expect, it } from 'vitest';
import { classifyDevice } from '../../../src/plan/rollout/classify.js';
import { HOUR, MINUTE, RolloutSim, SECOND, T0 } from './rollout-sim.js';

describe('planRollouts: offline devices', () => {
  it('sets aside a device silent for longer than offlineAfter (default 10m), to the millisecond', () => {
    const device = { id: 'a', wave: 1, lastSeen: T0 };
    expect(classifyDevice(device, '2.0', T0 + 10 * MINUTE, 10 * MINUTE)).toBe('pending');
    expect(classifyDevice(device, '2.0', T0 + 10 * MINUTE + 1, 10 * MINUTE)).toBe('offline');
    // Never reported: new for offlineAfter after enrolment, then offline.
    expect(classifyDevice({ id: 'b', wave: 1, lastSeen: null, enrolledAt: T0 }, '2.0', T0 + 10 * MINUTE, 10 * MINUTE)).toBe('new');
    expect(classifyDevice({ id: 'b', wave: 1, lastSeen: null, enrolledAt: T0 }, '2.0', T0 + 10 * MINUTE + 1, 10 * MINUTE)).toBe('offline');

    const sim = new RolloutSim({ version: '2.0' }).add(1, 'a', 'b').silence('b');
    sim.get('b').lastSeen = T0;
    expect(sim.pass(T0 + 10 * MINUTE).newlyReleased).toEqual(['a', 'b']);
    const late = new RolloutSim({ version: '2.0' }).add(1, 'a', 'b').silence('b');
    late.get('b').lastSeen = T0;
    expect(late.pass(T0 + 10 * MINUTE + 1).newlyReleased).toEqual(['a']);
  });

  it('honours the region\'s offline clock (--offline-after), not a Deployment\'s own offlineAfter', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { offlineAfter: '1h' } }).add(1, 'a', 'b').silence('b');
    sim.offlineAfterMs = 30 * SECOND;
    sim.get('b').lastSeen = T0;
    const pass = sim.pass(T0 + 30 * SECOND + 1);
    expect(pass.newlyReleased).toEqual(['a']);
    expect(pass.status.waves[0]).toMatchObject({ offline: 1, updating: 1 });
  });

  it('neither fails nor blocks a wave, is not released while offline, and gets its update in turn when back', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100], failureThreshold: 0, maxUnavailable: 1 } })
      .add(1, 'a1', 'a2')
      .add(2, 'b1');
    expect(sim.pass(T0).newlyReleased).toEqual(['a1']);
    // a2 goes silent before its turn; a1 finishes.
    sim.silence('a2').healthy('a1');
    let pass = sim.pass(T0 + 11 * MINUTE);
    expect(pass.newlyReleased).toEqual(['b1']); // wave 1 without a2 is complete: wave 2 starts
    expect(pass.status.waves[0]).toMatchObject({ offline: 1, healthy: 1, pending: 0 });
    expect(pass.status.state).toBe('Progressing');
    sim.healthy('b1');
    pass = sim.pass(T0 + 12 * MINUTE);
    expect(pass.status).toMatchObject({ state: 'Complete', message: 'every online device runs 2.0; 1 offline device will catch up when back' });
    expect(pass.released).toEqual(['a1', 'b1']);
    // Back online: released in its (started) wave.
    sim.wake('a2');
    pass = sim.pass(T0 + 60 * MINUTE);
    expect(pass.newlyReleased).toEqual(['a2']);
    expect(pass.status.state).toBe('Progressing');
  });

  it('a device that went offline while updating stays handed, and does not count as updating', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { maxUnavailable: 1 } }).add(1, 'a', 'b');
    expect(sim.pass(T0).newlyReleased).toEqual(['a']);
    sim.silence('a');
    const pass = sim.pass(T0 + 11 * MINUTE);
    expect(pass.newlyReleased).toEqual(['b']);
    expect(pass.released).toEqual(['a', 'b']);
  });

  it('a failed device that goes offline stops counting as failed, but a halt it caused holds', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { failureThreshold: 1, maxUnavailable: 1 } }).add(1, 'a', 'b');
    sim.pass(T0);
    sim.failed('a');
    expect(sim.pass(T0 + MINUTE).status.state).toBe('Halted');
    sim.silence('a');
    const pass = sim.pass(T0 + 20 * MINUTE);
    expect(pass.status.state).toBe('Halted');
    expect(pass.status.waves[0]).toMatchObject({ failed: 0, offline: 1, pending: 1 });
    expect(pass.newlyReleased).toEqual([]);
  });

  it('is Complete when every online device is healthy, however many are offline', () => {
    const sim = new RolloutSim({ version: '2.0' }).add(1, 'a', 'b').silence('a', 'b');
    sim.get('a').lastSeen = T0 - HOUR;
    // b never reported, and enrolled longer than offlineAfter ago: offline too.
    sim.get('b').lastSeen = null;
    sim.get('b').enrolledAt = T0 - HOUR;
    const pass = sim.pass(T0);
    expect(pass.status.state).toBe('Complete');
    expect(pass.released).toEqual([]);
  });
});
