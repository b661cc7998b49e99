import { describe, expect, it } from 'vitest';
import { waveOf } from '../../../src/plan/waves.js';
import { HOUR, MINUTE, RolloutSim, SECOND, T0, ids } from './rollout-sim.js';

describe('planRollouts: devices that have not reported yet are new, not offline', () => {
  it('a fleet enrolling at the moment of a commit still moves in waves and bakes (the 13-second "Complete" of issue 13)', () => {
    const waves = [1, 10, 50, 100];
    const fleet = ids('cam-', 30);
    const sim = new RolloutSim({ version: '2.0', rollout: { waves, bakeTime: '10m' } });
    for (const id of fleet) sim.enrol(waveOf(id, 'web', waves), T0, id);
    const canaryWave = Math.min(...fleet.map((id) => waveOf(id, 'web', waves)));

    // Nobody has reported: nothing is handed, nothing is Complete, and the status says why.
    let pass = sim.pass(T0);
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.status).toMatchObject({ state: 'Progressing', reason: 'WaitingForFirstReport', currentWave: canaryWave });
    expect(pass.status.waves.reduce((n, w) => n + w.new, 0)).toBe(30);
    expect(pass.status.waves.reduce((n, w) => n + w.offline + w.updating, 0)).toBe(0);
    expect(pass.status.message).toMatch(/30 new devices wait for a first report/);

    // They report within seconds; each released device installs and is healthy by the next pass.
    sim.wake(...fleet);
    const firstHanded = new Map<string, number>();
    let now = T0;
    for (let i = 0; i < 400 && pass.status.state !== 'Complete'; i++) {
      now += 10 * SECOND;
      for (const id of pass.newlyReleased) firstHanded.set(id, now - 10 * SECOND);
      sim.healthy(...pass.newlyReleased);
      pass = sim.pass(now);
    }
    expect(pass.status.state).toBe('Complete');
    // Three bakes of 10 minutes at least: waves 2, 3 and 4 each waited for one.
    const used = new Set(fleet.map((id) => waveOf(id, 'web', waves)));
    expect(now - T0).toBeGreaterThanOrEqual((used.size - 1) * 10 * MINUTE);
    // Each wave was handed out only after the previous waves had a healthy device for bakeTime.
    const startOf = (w: number) => Math.min(...fleet.filter((id) => waveOf(id, 'web', waves) === w).map((id) => firstHanded.get(id)!));
    const sorted = [...used].sort();
    for (let i = 1; i < sorted.length; i++) expect(startOf(sorted[i]!) - startOf(sorted[i - 1]!)).toBeGreaterThanOrEqual(10 * MINUTE);
  });

  it('a new device is neither set aside nor updating: it holds its wave and is released after its first report', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100], maxUnavailable: 1 } })
      .add(1, 'a')
      .enrol(1, T0 - MINUTE, 'n')
      .add(2, 'b');
    let pass = sim.pass(T0);
    expect(pass.newlyReleased).toEqual(['a']);
    expect(pass.status.waves[0]).toMatchObject({ devices: 2, new: 1, updating: 1, offline: 0 });
    sim.healthy('a');
    pass = sim.pass(T0 + MINUTE);
    expect(pass.newlyReleased).toEqual([]); // n holds wave 1 and cannot take the free slot before reporting
    expect(pass.status).toMatchObject({ state: 'Progressing', currentWave: 1, reason: 'WaitingForFirstReport' });
    sim.wake('n');
    pass = sim.pass(T0 + 2 * MINUTE);
    expect(pass.newlyReleased).toEqual(['n']);
    expect(pass.status.reason).toBeUndefined();
    sim.healthy('n');
    expect(sim.pass(T0 + 3 * MINUTE).newlyReleased).toEqual(['b']);
  });

  it('a device that never reports is new for offlineAfter after it enrolled, then offline and set aside, to the millisecond', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100] } }).add(1, 'a').enrol(1, T0, 'n').add(2, 'b');
    sim.pass(T0);
    sim.healthy('a');
    let pass = sim.pass(T0 + 10 * MINUTE);
    expect(pass.status.waves[0]).toMatchObject({ new: 1, offline: 0 });
    expect(pass.newlyReleased).toEqual([]);
    pass = sim.pass(T0 + 10 * MINUTE + 1);
    expect(pass.status.waves[0]).toMatchObject({ new: 0, offline: 1 });
    expect(pass.newlyReleased).toEqual(['b']);
  });

  it('the region\'s offline clock decides how long a device is new', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100] } }).add(1, 'a').enrol(1, T0, 'n').add(2, 'b');
    sim.offlineAfterMs = 30 * SECOND;
    sim.pass(T0);
    sim.healthy('a');
    expect(sim.pass(T0 + 30 * SECOND).newlyReleased).toEqual([]);
    expect(sim.pass(T0 + 30 * SECOND + 1).newlyReleased).toEqual(['b']);
  });

  it('without an enrolment time, a never-seen device is new for offlineAfter after the rollout started', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100] } }).add(1, 'a').enrol(1, T0, 'n').add(2, 'b');
    delete sim.get('n').enrolledAt;
    sim.pass(T0 + HOUR);
    sim.healthy('a');
    expect(sim.pass(T0 + HOUR + 10 * MINUTE).status.waves[0]).toMatchObject({ new: 1 });
    expect(sim.pass(T0 + HOUR + 10 * MINUTE + 1).status.waves[0]).toMatchObject({ new: 0, offline: 1 });
  });

  it('an immediate rollback hands new devices the old version too', () => {
    const sim = new RolloutSim({ version: '1.0' }).add(1, 'a').running('1.0', 'a');
    expect(sim.pass(T0).status.state).toBe('Complete');
    sim.commit({ version: '2.0' });
    sim.pass(T0 + MINUTE);
    sim.enrol(1, T0 + MINUTE, 'n');
    sim.commit({ version: '1.0' });
    const pass = sim.pass(T0 + 2 * MINUTE);
    expect(pass.status.rollback).toBe(true);
    expect(pass.released).toEqual(['a', 'n']);
    expect(pass.status.waves[0]).toMatchObject({ new: 1 });
  });
});

describe('planRollouts: a canary cannot be skipped', () => {
  it('when every device of wave 1 is offline, wave 2 waits for one of them to come back healthy, and bakes after it', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [10, 100], bakeTime: '10m' } })
      .add(1, 'c1', 'c2')
      .add(2, 'b1', 'b2')
      .silence('c1', 'c2');
    sim.get('c1').lastSeen = T0 - HOUR;
    sim.get('c2').lastSeen = T0 - HOUR;
    for (const t of [T0, T0 + HOUR, T0 + 24 * HOUR]) {
      const pass = sim.pass(t);
      expect(pass.newlyReleased).toEqual([]);
      expect(pass.status).toMatchObject({ state: 'Progressing', currentWave: 1, reason: 'WaitingForCanary' });
      expect(pass.status.message).toBe('wave 2 waits for a canary: no device of wave 1 has been healthy on 2.0 yet, and their 2 devices are offline');
    }
    sim.wake('c1');
    expect(sim.pass(T0 + 25 * HOUR).newlyReleased).toEqual(['c1']);
    sim.healthy('c1');
    let pass = sim.pass(T0 + 25 * HOUR + MINUTE);
    expect(pass.status).toMatchObject({ state: 'Baking', nextWaveAt: T0 + 25 * HOUR + 11 * MINUTE });
    expect(pass.state.canaryAt).toBe(T0 + 25 * HOUR + MINUTE);
    pass = sim.pass(T0 + 25 * HOUR + 11 * MINUTE);
    expect(pass.newlyReleased).toEqual(['b1', 'b2']);
  });

  it('bakes after the canary\'s first healthy report, even when its wave looked complete earlier (it went offline mid-update)', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [10, 100], bakeTime: '10m' } }).add(1, 'c').add(2, 'b');
    expect(sim.pass(T0).newlyReleased).toEqual(['c']);
    sim.silence('c');
    expect(sim.pass(T0 + 20 * MINUTE).status.reason).toBe('WaitingForCanary');
    sim.wake('c').healthy('c');
    const pass = sim.pass(T0 + 40 * MINUTE);
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.status).toMatchObject({ state: 'Baking', nextWaveAt: T0 + 50 * MINUTE });
    expect(sim.pass(T0 + 50 * MINUTE).newlyReleased).toEqual(['b']);
  });

  it('a Deployment none of whose devices ever reported waits, and says so', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100] } }).enrol(1, T0 - HOUR, 'a').enrol(2, T0 - HOUR, 'b');
    const pass = sim.pass(T0);
    expect(pass.status.waves.map((w) => w.offline)).toEqual([1, 1]);
    expect(pass.status).toMatchObject({ state: 'Progressing', currentWave: 1, reason: 'WaitingForFirstReport' });
    expect(pass.status.message).toBe('no device of this Deployment has reported yet: wave 2 waits for a device of wave 1 to report healthy on 2.0; 2 offline devices will catch up when back');
    expect(pass.newlyReleased).toEqual([]);
  });

  it('empty first waves lead to the first wave that holds a device: that one is the canary', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [1, 10, 50, 100], bakeTime: '5m' } }).add(3, 'c').add(4, 'd');
    let pass = sim.pass(T0);
    expect(pass.status.currentWave).toBe(3);
    expect(pass.newlyReleased).toEqual(['c']);
    sim.failed('c');
    for (const t of [T0 + MINUTE, T0 + HOUR]) expect(sim.pass(t).newlyReleased).toEqual([]);
    sim.healthy('c');
    pass = sim.pass(T0 + 2 * HOUR);
    expect(pass.status.state).toBe('Baking');
    expect(sim.pass(T0 + 2 * HOUR + 5 * MINUTE).newlyReleased).toEqual(['d']);
  });

  it('a canary that was proven stays proven when it later goes offline', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [10, 50, 100] } }).add(1, 'a').add(2, 'b').add(3, 'c');
    sim.pass(T0);
    sim.healthy('a');
    expect(sim.pass(T0 + MINUTE).newlyReleased).toEqual(['b']);
    sim.silence('a').healthy('b');
    sim.silence('b');
    // a and b both offline by now; the canary (a) succeeded before, so wave 3 starts.
    expect(sim.pass(T0 + HOUR).newlyReleased).toEqual(['c']);
  });

  it('is not Complete while later waves wait for a canary, even with every device offline', () => {
    const sim = new RolloutSim({ version: '2.0', rollout: { waves: [50, 100] } }).add(1, 'a').add(2, 'b').silence('a', 'b');
    sim.get('a').lastSeen = T0 - HOUR;
    sim.get('b').lastSeen = T0 - HOUR;
    const pass = sim.pass(T0);
    expect(pass.status.state).toBe('Progressing');
    expect(pass.state.completedAt).toBeNull();
  });
});
