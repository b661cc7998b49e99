import { describe, expect, it } from 'vitest';
import type { RolloutSpec } from '../../../src/desired/model.js';
import { DEFAULT_OFFLINE_AFTER_MS } from '../../../src/plan/rollout/defaults.js';
import { planRollouts } from '../../../src/plan/rollout/plan-rollouts.js';
import { releasedBy } from '../../../src/plan/rollout/released.js';
import type { RolloutDeploymentInput, RolloutDeviceInput, RolloutState } from '../../../src/plan/rollout/types.js';
import { MINUTE, RolloutSim, T0 } from './rollout-sim.js';

function deployment(name: string, rollout: RolloutSpec, devices: RolloutDeviceInput[], version = '2.0'): RolloutDeploymentInput {
  return { deployment: name, app: name, version, fingerprint: `fp-${name}-${version}-${JSON.stringify(rollout)}`, rollout, devices };
}

const online = (...ids: string[]): RolloutDeviceInput[] => ids.map((id) => ({ id, wave: 1, lastSeen: T0, report: { version: '1.0', state: 'healthy' }, handedVersion: '1.0' }));

describe('planRollouts: one bad Deployment stalls only itself', () => {
  it('a time zone Intl rejects makes that Deployment Stalled with a problem; the others go on', () => {
    const plan = planRollouts({
      now: T0,
      offlineAfterMs: DEFAULT_OFFLINE_AFTER_MS,
      revision: 'r1',
      previous: new Map(),
      deployments: [
        deployment('api', {}, online('a1', 'a2')),
        deployment('web', { window: { schedule: '0 2 * * *', duration: '2h', timezone: 'Mars/Olympus_Mons' } }, online('w1', 'w2')),
        deployment('zeta', { window: { schedule: 'every night', duration: '2h' } }, online('z1')),
      ],
    });
    expect(plan.statuses.map((s) => [s.deployment, s.state])).toEqual([
      ['api', 'Progressing'],
      ['web', 'Stalled'],
      ['zeta', 'Stalled'],
    ]);
    const web = plan.statuses[1]!;
    expect(web.problem).toEqual({
      code: 'bad-rollout',
      message: 'Deployment web: rollout.window.timezone "Mars/Olympus_Mons" is not an IANA time zone such as Europe/Berlin; fix the rollout settings in the fleet repository',
    });
    expect(web.message).toBe(`stalled: ${web.problem!.message}; no further device gets 2.0 until then`);
    expect(web.waves[0]).toMatchObject({ devices: 2, pending: 2, updating: 0 });
    expect(plan.statuses[2]!.problem?.message).toMatch(/Deployment zeta: rollout.window.schedule "every night" must have five fields/);
    // api is released; web and zeta release nothing new, and keep a state (so their memory survives).
    expect([...plan.release.get('api')!]).toEqual(['a1', 'a2']);
    expect([...plan.release.get('web')!]).toEqual([]);
    expect(plan.states.has('web')).toBe(true);
    const released = releasedBy(plan);
    expect(released('w1', 'web', { version: '2.0', deployment: 'web' })).toBe(false);
  });

  it('settings the schema should have refused stall the Deployment too (maxUnavailable 0, a bakeTime that is no duration)', () => {
    for (const rollout of [{ maxUnavailable: 0 }, { bakeTime: 'soon' }, { failureThreshold: '150%' }, { minSample: 0 }] as RolloutSpec[]) {
      const plan = planRollouts({ now: T0, offlineAfterMs: DEFAULT_OFFLINE_AFTER_MS, revision: 'r', previous: new Map(), deployments: [deployment('web', rollout, online('w1'))] });
      expect(plan.statuses[0]).toMatchObject({ state: 'Stalled', problem: { code: 'bad-rollout' } });
      expect(plan.release.get('web')!.size).toBe(0);
    }
  });

  it('keeps the memory of the last good state untouched, holds devices where they are, and resumes once fixed', () => {
    const good: RolloutSpec = { waves: [50, 100], maxUnavailable: 1 };
    const sim = new RolloutSim({ version: '1.0', rollout: good }).add(1, 'a').add(2, 'b').running('1.0', 'a', 'b');
    expect(sim.pass(T0).status.state).toBe('Complete');
    sim.commit({ version: '2.0' });
    expect(sim.pass(T0 + MINUTE).newlyReleased).toEqual(['a']);
    const before: RolloutState = structuredClone(sim.states.get('web')!);

    // A Fleet-level change the engine cannot apply (same fingerprint: the Deployment's own spec did not change).
    sim.rollout = { ...good, window: { schedule: '0 2 * * *', duration: '2h', timezone: 'Nowhere/Atlantis' } };
    sim.healthy('a');
    let pass = sim.pass(T0 + 2 * MINUTE);
    expect(pass.status).toMatchObject({ state: 'Stalled', version: '2.0', currentWave: 1, startedAt: T0 + MINUTE, rollback: false });
    expect(pass.newlyReleased).toEqual([]);
    expect(pass.released).toEqual(['a']); // a keeps 2.0
    expect(pass.state).toEqual(before);

    // Fixed: the rollout goes on from where it was.
    sim.rollout = good;
    pass = sim.pass(T0 + 3 * MINUTE);
    expect(pass.status.state).toBe('Progressing');
    expect(pass.newlyReleased).toEqual(['b']);
    expect(pass.state.completedVersions).toEqual(['1.0']);
  });

  it('a new version with bad settings holds every device on what it was handed', () => {
    const sim = new RolloutSim({ version: '1.0' }).add(1, 'a', 'b').running('1.0', 'a', 'b');
    sim.pass(T0);
    sim.commit({ version: '2.0', rollout: { window: { schedule: '0 2 * * *', duration: 'forever' } } });
    const pass = sim.pass(T0 + MINUTE);
    expect(pass.status).toMatchObject({ state: 'Stalled', version: '2.0', problem: { code: 'bad-rollout' } });
    expect(pass.released).toEqual([]);
    // The state it keeps is the 1.0 one: releasedBy lets no 2.0 through.
    expect(pass.state.version).toBe('1.0');
    expect(releasedBy(pass.plan)('a', 'web', { version: '2.0', deployment: 'web' })).toBe(false);
  });

  it('still throws for a caller\'s mistake: a Deployment listed twice', () => {
    expect(() =>
      planRollouts({ now: T0, offlineAfterMs: MINUTE, revision: 'r', previous: new Map(), deployments: [deployment('a', {}, []), deployment('a', {}, [])] }),
    ).toThrow(/listed twice/);
  });
});
