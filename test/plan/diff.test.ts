import { describe, expect, it } from 'vitest';
import { createResolver } from '../../src/desired/resolve.js';
import { buildPlan, createPlanContext, diffDevice, planWith } from '../../src/plan/diff.js';
import type { PlanStep } from '../../src/plan/types.js';
import { waveOf } from '../../src/plan/waves.js';
import { deployment, device, makeFleet, region } from './fleet-fixture.js';

const fleet = makeFleet({
  revision: 'abc1234',
  deployments: [
    deployment('web-eu', 'web', '2.1.0', { priority: 10, selector: { regions: ['eu-west'] }, rollout: { waves: [10, 100] } }),
    deployment('web-all', 'web', '2.0.0'),
    deployment('agent', 'agent', '1.4'),
  ],
  regions: [region('eu-west', { waves: [1, 50, 100] })],
});

describe('buildPlan', () => {
  it('plans nothing for a device that runs its desired versions', () => {
    const plan = buildPlan(fleet, [device('d1', 'eu-west', {}, { web: '2.1.0', agent: '1.4' })]);
    expect(plan).toEqual({ revision: 'abc1234', steps: [], conflicts: [] });
  });

  it('plans install, upgrade, downgrade and remove with from, to, deployment, wave and reason', () => {
    const plan = buildPlan(fleet, [
      device('up', 'eu-west', {}, { web: '2.0.3', agent: '1.4' }),
      device('down', 'us-east', {}, { web: '2.0.10', agent: '1.4' }),
      device('new', 'us-east', {}, {}),
      device('old', 'us-east', {}, { web: '2.0.0', agent: '1.4', legacy: '0.1', zeta: '9' }),
    ]);
    const byKey = new Map(plan.steps.map((s) => [`${s.device}/${s.app}`, s]));
    expect(byKey.get('up/web')).toEqual<PlanStep>({
      device: 'up',
      region: 'eu-west',
      app: 'web',
      action: 'upgrade',
      from: '2.0.3',
      to: '2.1.0',
      deployment: 'web-eu',
      wave: waveOf('up', 'web-eu', [10, 100]),
      reason: 'deployment web-eu asks for 2.1.0 (priority 10), device runs 2.0.3',
    });
    expect(byKey.get('down/web')).toMatchObject({ action: 'downgrade', from: '2.0.10', to: '2.0.0', deployment: 'web-all' });
    expect(byKey.get('down/web')!.reason).toBe('deployment web-all asks for 2.0.0 (priority 0), device runs 2.0.10');
    expect(byKey.get('new/web')).toMatchObject({ action: 'install', from: null, to: '2.0.0', reason: 'deployment web-all asks for 2.0.0 (priority 0), app not installed' });
    expect(byKey.get('new/agent')).toMatchObject({ action: 'install', from: null, to: '1.4', deployment: 'agent' });
    expect(byKey.get('old/legacy')).toEqual<PlanStep>({
      device: 'old',
      region: 'us-east',
      app: 'legacy',
      action: 'remove',
      from: '0.1',
      to: null,
      deployment: null,
      wave: null,
      reason: 'no deployment selects legacy for this device anymore, device runs 0.1',
    });
    expect(byKey.get('old/zeta')!.action).toBe('remove');
    expect(plan.steps).toHaveLength(6);
    expect(byKey.has('up/agent')).toBe(false);
    expect(byKey.has('old/web')).toBe(false);
  });

  it('takes waves from the Deployment, else the Region, else the Fleet, else one wave', () => {
    const layered = makeFleet({
      deployments: [deployment('own', 'a', '1', { rollout: { waves: [50, 100] } }), deployment('inherits', 'b', '1')],
      regions: [region('r1', { waves: [20, 40, 60, 80, 100] })],
      fleetRollout: { waves: [30, 60, 100] },
    });
    const devices = Array.from({ length: 400 }, (_, i) => device(`d${i}`, i % 2 ? 'r1' : 'r2'));
    const plan = buildPlan(layered, devices);
    for (const step of plan.steps) {
      const waves = step.deployment === 'own' ? [50, 100] : step.region === 'r1' ? [20, 40, 60, 80, 100] : [30, 60, 100];
      expect(step.wave).toBe(waveOf(step.device, step.deployment!, waves));
    }
    const maxWave = (deploymentName: string, regionName: string) =>
      Math.max(...plan.steps.filter((s) => s.deployment === deploymentName && s.region === regionName).map((s) => s.wave!));
    expect([maxWave('own', 'r1'), maxWave('inherits', 'r1'), maxWave('inherits', 'r2')]).toEqual([2, 5, 3]);
    const single = buildPlan(makeFleet({ deployments: [deployment('x', 'a', '1')] }), devices);
    expect(new Set(single.steps.map((s) => s.wave))).toEqual(new Set([1]));
  });

  it('sorts steps by region, deployment (removals last), wave, device, app, whatever the input order', () => {
    const devices = Array.from({ length: 300 }, (_, i) =>
      device(`dev-${(i * 7919) % 300}`, ['us-east', 'eu-west', 'ap-south'][i % 3]!, {}, i % 5 === 0 ? { web: '1.0.0', old: '1', older: '2' } : { web: '1.0.0' }),
    );
    const plan = buildPlan(fleet, devices);
    const key = (s: PlanStep) => [s.region, s.deployment ?? '\uffff', String(s.wave ?? 0).padStart(3, '0'), s.device, s.app];
    const expected = [...plan.steps].sort((a, b) => {
      const ka = key(a);
      const kb = key(b);
      for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i]! < kb[i]! ? -1 : 1;
      return 0;
    });
    expect(plan.steps).toEqual(expected);
    expect(buildPlan(fleet, [...devices].reverse())).toEqual(plan);
    expect(buildPlan(fleet, new Set(devices))).toEqual(plan);
  });

  it('reports conflicts, plans nothing for them and does not remove the app', () => {
    const conflicting = makeFleet({
      deployments: [
        deployment('web-a', 'web', '2.0.0', { selector: { regions: ['eu'] } }),
        deployment('web-b', 'web', '3.0.0', { selector: { matchLabels: { hw: 'rpi' } } }),
      ],
    });
    const plan = buildPlan(conflicting, [device('both', 'eu', { hw: 'rpi' }, { web: '1.0.0' }), device('a-only', 'eu', {}, { web: '1.0.0' })]);
    expect(plan.steps.map((s) => `${s.device}/${s.app}/${s.action}`)).toEqual(['a-only/web/upgrade']);
    expect(plan.conflicts).toMatchObject([{ device: 'both', app: 'web', deployments: ['web-a', 'web-b'], priority: 0 }]);
  });

  it('calls any change of version an upgrade or downgrade by version order, even between equal-precedence strings', () => {
    const f = makeFleet({ deployments: [deployment('w', 'web', '1.4.0')] });
    const plan = buildPlan(f, [
      device('a', 'r', {}, { web: '1.4' }),
      device('b', 'r', {}, { web: 'latest' }),
      device('c', 'r', {}, { web: '1.10.0' }),
      device('d', 'r', {}, { web: '1.4.0-rc.2' }),
    ]);
    expect(plan.steps.map((s) => `${s.device}:${s.action}`)).toEqual(['a:upgrade', 'b:downgrade', 'c:downgrade', 'd:upgrade']);
  });
});

describe('diffDevice and planWith', () => {
  it('diffs one device with a resolver and context kept across calls, like a region would', () => {
    const resolver = createResolver(fleet);
    const context = createPlanContext(fleet);
    const d = device('x', 'eu-west', {}, { web: '2.0.3', stray: '1' });
    const steps = diffDevice(d, resolver.resolve(d), context);
    expect(steps.map((s) => `${s.app}:${s.action}`)).toEqual(['agent:install', 'stray:remove', 'web:upgrade']);
    expect(planWith(resolver, context, [d]).steps).toEqual(buildPlan(fleet, [d]).steps);
  });

  it('accepts a desired state built by hand, without remembering it for the Deployment', () => {
    const context = createPlanContext(fleet);
    const d = device('x', 'eu-west', {}, { web: '2.0.3' });
    const [handmade] = diffDevice(d, { desired: { web: { version: '1.0.0', deployment: 'web-eu' } } }, context);
    expect(handmade).toMatchObject({ action: 'downgrade', to: '1.0.0', reason: 'deployment web-eu asks for 1.0.0 (priority 10), device runs 2.0.3' });
    const [real] = diffDevice(d, { desired: { web: { version: '2.1.0', deployment: 'web-eu' } } }, context);
    expect(real).toMatchObject({ action: 'upgrade', to: '2.1.0' });
    const [unknown] = diffDevice(d, { desired: { web: { version: '3.0.0', deployment: 'gone' } } }, context);
    expect(unknown).toMatchObject({ action: 'upgrade', wave: waveOf('x', 'gone', [1, 50, 100]), reason: 'deployment gone asks for 3.0.0, device runs 2.0.3' });
  });
});
