import { describe, expect, it } from 'vitest';
import type { AppReport, DeviceDesired } from '../../../src/core/types.js';
import { resolveDesired } from '../../../src/desired/resolve.js';
import { computeHandOut } from '../../../src/plan/hand-out.js';
import { deploymentFingerprint, stableJson } from '../../../src/plan/rollout/fingerprint.js';
import { collectRolloutInputs, type RolloutDeviceRecord } from '../../../src/plan/rollout/inputs.js';
import { planRollouts } from '../../../src/plan/rollout/plan-rollouts.js';
import { releasedBy } from '../../../src/plan/rollout/released.js';
import { regionOfflineAfterMs, rolloutSettings } from '../../../src/plan/rollout/settings.js';
import type { RolloutDeviceInput, RolloutState } from '../../../src/plan/rollout/types.js';
import { waveOf } from '../../../src/plan/waves.js';
import { deployment, device, makeFleet, region } from '../fleet-fixture.js';
import { MINUTE, T0 } from './rollout-sim.js';

describe('deploymentFingerprint', () => {
  it('ignores key order and priority; changes with app, version, selector and rollout', () => {
    const base = deployment('web', 'web', '2.0', { selector: { matchLabels: { a: '1', b: '2' } }, rollout: { waves: [10, 100], bakeTime: '1m' } }).spec;
    const reordered = { rollout: { bakeTime: '1m', waves: [10, 100] }, selector: { matchLabels: { b: '2', a: '1' } }, version: '2.0', app: 'web', priority: 5 };
    expect(deploymentFingerprint(reordered)).toBe(deploymentFingerprint(base));
    expect(deploymentFingerprint(base)).toMatch(/^[0-9a-f]{64}$/);
    const changed = [
      { ...base, version: '2.0.1' },
      { ...base, app: 'api' },
      { ...base, selector: { matchLabels: { a: '1' } } },
      { ...base, rollout: { waves: [10, 100], bakeTime: '2m' } },
      { ...base, rollout: undefined },
    ];
    for (const spec of changed) expect(deploymentFingerprint(spec)).not.toBe(deploymentFingerprint(base));
  });

  it('stableJson sorts keys at every level and drops undefined ones', () => {
    expect(stableJson({ b: [{ d: 1, c: undefined, a: null }], a: 'x' })).toBe('{"a":"x","b":[{"a":null,"d":1}]}');
  });
});

describe('rolloutSettings', () => {
  it('applies the defaults', () => {
    expect(rolloutSettings({}, 30, 'Deployment web')).toEqual({
      waves: [100],
      maxUnavailable: null,
      failureThreshold: null,
      minSample: 10,
      bakeMs: 0,
      window: null,
      rollback: { strategy: 'immediate', respectWindow: false },
      paused: false,
    });
    expect(rolloutSettings({ paused: true }, 1, 'x').paused).toBe(true);
    expect(rolloutSettings({ rollback: 'waves' }, 1, 'x').rollback).toEqual({ strategy: 'waves', respectWindow: true });
    // Not capped at the device count any more: the engine caps it by the devices there are to attempt.
    expect(rolloutSettings({ minSample: 50 }, 20, 'x').minSample).toBe(50);
  });

  it('refuses what the schema should have refused, saying where', () => {
    expect(() => rolloutSettings({ maxUnavailable: 0 }, 3, 'Deployment web')).toThrow(/Deployment web: rollout.maxUnavailable 0 is not a count/);
    expect(() => rolloutSettings({ maxUnavailable: '0%' }, 3, 'Deployment web')).toThrow(/maxUnavailable "0%"/);
    expect(() => rolloutSettings({ failureThreshold: '150%' }, 3, 'Deployment web')).toThrow(/failureThreshold "150%"/);
    expect(() => rolloutSettings({ failureThreshold: -1 }, 3, 'Deployment web')).toThrow(/failureThreshold -1/);
    expect(() => rolloutSettings({ bakeTime: 'soon' }, 3, 'Deployment web')).toThrow(/Deployment web: rollout.bakeTime: "soon" is not a duration/);
    expect(() => rolloutSettings({ minSample: 0 }, 3, 'Deployment web')).toThrow(/Deployment web: rollout.minSample 0 is not a count/);
    // offlineAfter is the region's one clock (regionOfflineAfterMs), not a per-Deployment setting.
    expect(() => rolloutSettings({ offlineAfter: '10 minutes' }, 3, 'Deployment web')).not.toThrow();
  });
});

describe('regionOfflineAfterMs: the region\'s one offline clock', () => {
  it('takes the Region\'s rollout.offlineAfter, else the Fleet\'s, else the region\'s --offline-after', () => {
    const both = makeFleet({ deployments: [], regions: [region('eu', { offlineAfter: '1m' }), region('us')], fleetRollout: { offlineAfter: '30m' } });
    expect(regionOfflineAfterMs(both, 'eu', 5 * MINUTE)).toBe(MINUTE);
    expect(regionOfflineAfterMs(both, 'us', 5 * MINUTE)).toBe(30 * MINUTE);
    expect(regionOfflineAfterMs(both, 'unknown', 5 * MINUTE)).toBe(30 * MINUTE);
    expect(regionOfflineAfterMs(makeFleet({ deployments: [], regions: [region('eu')] }), 'eu', 5 * MINUTE)).toBe(5 * MINUTE);
    expect(regionOfflineAfterMs(null, 'eu', 5 * MINUTE)).toBe(5 * MINUTE);
    // A Deployment's own offlineAfter is not the region's clock.
    const own = makeFleet({ deployments: [deployment('web', 'web', '2.0', { rollout: { offlineAfter: '1s' } })], regions: [region('eu')] });
    expect(regionOfflineAfterMs(own, 'eu', 5 * MINUTE)).toBe(5 * MINUTE);
    // What the schema refuses falls back rather than throwing out of a pass.
    expect(regionOfflineAfterMs(makeFleet({ deployments: [], regions: [region('eu', { offlineAfter: 'soon' })] }), 'eu', 5 * MINUTE)).toBe(5 * MINUTE);
  });
});

describe('releasedBy', () => {
  it('releases exactly the devices the plan released, for the version it planned', () => {
    const devices: RolloutDeviceInput[] = [
      { id: 'a', wave: 1, lastSeen: T0 },
      { id: 'b', wave: 2, lastSeen: T0 },
    ];
    const plan = planRollouts({
      now: T0,
      offlineAfterMs: 10 * MINUTE,
      revision: 'r',
      previous: new Map(),
      deployments: [{ deployment: 'web', app: 'web', version: '2.0', fingerprint: 'f', rollout: { waves: [50, 100] }, devices }],
    });
    const released = releasedBy(plan);
    expect(released('a', 'web', { version: '2.0', deployment: 'web' })).toBe(true);
    expect(released('b', 'web', { version: '2.0', deployment: 'web' })).toBe(false);
    expect(released('a', 'web', { version: '3.0', deployment: 'web' })).toBe(false);
    expect(released('a', 'web', { version: '2.0', deployment: 'other' })).toBe(false);
  });
});

describe('collectRolloutInputs', () => {
  const fleet = makeFleet({
    deployments: [
      deployment('web', 'web', '2.0', { rollout: { bakeTime: '5m' } }),
      deployment('agent', 'agent', '1.1'),
      deployment('gone-here', 'tool', '1', { selector: { regions: ['us'] } }),
    ],
    regions: [region('eu', { waves: [10, 50, 100], offlineAfter: '1m' })],
    fleetRollout: { maxUnavailable: '10%' },
  });
  const records: RolloutDeviceRecord[] = [
    { id: 'd1', lastSeen: T0, apps: { web: { version: '1.0', state: 'healthy' } } },
    { id: 'd2', lastSeen: null, enrolledAt: T0 - MINUTE, apps: {} },
    { id: 'd3', lastSeen: T0, apps: {}, revoked: true },
    { id: 'd4', lastSeen: T0, apps: { web: { version: '1.0', state: 'healthy' } } },
  ];
  const resolved = resolveDesired(fleet, records.map((r) => device(r.id, 'eu'))).desired;
  const handed = new Map<string, DeviceDesired>([
    ['d1', { web: { version: '1.0', deployment: 'web' } }],
    ['d4', { web: { version: '1.0', deployment: 'web' } }],
  ]);

  it('groups the devices by Deployment with their wave, report and handed version, and the effective rollout', () => {
    const inputs = collectRolloutInputs({ fleet, region: 'eu', resolved, handed, devices: records });
    expect(inputs.map((i) => i.deployment)).toEqual(['agent', 'web']);
    const web = inputs[1]!;
    expect(web).toMatchObject({
      app: 'web',
      version: '2.0',
      fingerprint: deploymentFingerprint(fleet.deployments.get('web')!.spec),
      rollout: { waves: [10, 50, 100], bakeTime: '5m', offlineAfter: '1m', maxUnavailable: '10%' },
    });
    expect(web.devices).toEqual([
      { id: 'd1', wave: waveOf('d1', 'web', [10, 50, 100]), lastSeen: T0, report: { version: '1.0', state: 'healthy' } as AppReport, handedVersion: '1.0' },
      { id: 'd2', wave: waveOf('d2', 'web', [10, 50, 100]), lastSeen: null, enrolledAt: T0 - MINUTE },
      { id: 'd4', wave: waveOf('d4', 'web', [10, 50, 100]), lastSeen: T0, report: { version: '1.0', state: 'healthy' }, handedVersion: '1.0' },
    ]);
  });

  it('keeps Deployments with a previous state and no device here (so they keep their memory), not deleted ones', () => {
    const previous = new Map<string, RolloutState>([
      ['gone-here', {} as RolloutState],
      ['deleted', {} as RolloutState],
    ]);
    const inputs = collectRolloutInputs({ fleet, region: 'eu', resolved, handed, devices: records, previous });
    expect(inputs.map((i) => [i.deployment, i.devices.length])).toEqual([
      ['agent', 3],
      ['gone-here', 0],
      ['web', 3],
    ]);
  });

  it('feeds planRollouts and computeHandOut end to end', () => {
    const inputs = collectRolloutInputs({ fleet, region: 'eu', resolved, handed, devices: records });
    const plan = planRollouts({ now: T0, offlineAfterMs: 10 * MINUTE, revision: fleet.revision!, deployments: inputs, previous: new Map() });
    const installed = new Map([
      ['d1', { web: '1.0' }],
      ['d4', { web: '1.0' }],
    ]);
    const changes = computeHandOut({ resolved, handed, installed, released: releasedBy(plan) });
    // d1 is in wave 1 of web and gets 2.0; d4 (wave 2) waits on 1.0; d2 has never reported: new, handed nothing yet.
    expect([waveOf('d1', 'web', [10, 50, 100]), waveOf('d4', 'web', [10, 50, 100])]).toEqual([1, 2]);
    expect(changes.get('d1')?.web).toEqual({ version: '2.0', deployment: 'web' });
    expect((changes.get('d4') ?? handed.get('d4')!).web).toEqual({ version: '1.0', deployment: 'web' });
    expect(changes.has('d2')).toBe(false);
    expect(plan.statuses.map((s) => [s.deployment, s.state])).toEqual([
      ['agent', 'Progressing'],
      ['web', 'Progressing'],
    ]);
  });
});

describe('planRollouts at scale', () => {
  it('plans 10,000 devices over a whole rollout with few passes per wave (the algorithm is n log n per pass)', () => {
    const waves = [1, 10, 50, 100];
    const devices = new Map<string, RolloutDeviceInput>();
    for (let i = 0; i < 10_000; i++) {
      const id = `device-${String(i).padStart(5, '0')}`;
      devices.set(id, { id, wave: waveOf(id, 'web', waves), lastSeen: T0, handedVersion: '1.0', report: { version: '1.0', state: 'healthy' } });
    }
    let previous: ReadonlyMap<string, RolloutState> = new Map();
    let now = T0;
    let passes = 0;
    const released: number[] = [];
    for (;;) {
      const plan = planRollouts({
        now,
        offlineAfterMs: 10 * MINUTE,
        revision: 'r',
        previous,
        deployments: [{ deployment: 'web', app: 'web', version: '2.0', fingerprint: 'f', rollout: { waves, maxUnavailable: '20%', bakeTime: '1m' }, devices: [...devices.values()] }],
      });
      previous = plan.states;
      passes++;
      const status = plan.statuses[0]!;
      if (status.state === 'Complete') break;
      let count = 0;
      for (const id of plan.release.get('web')!) {
        const device = devices.get(id)!;
        if (device.handedVersion !== '2.0') count++;
        // Every released device installs and turns healthy by the next pass.
        device.handedVersion = '2.0';
        device.report = { version: '2.0', state: 'healthy' };
        device.lastSeen = now;
      }
      for (const device of devices.values()) device.lastSeen = now;
      if (count > 0) released.push(count);
      now += MINUTE;
      expect(passes).toBeLessThan(50);
    }
    // No pass hands out more than 20% of the fleet; everything was handed exactly once.
    expect(Math.max(...released)).toBeLessThanOrEqual(2_000);
    expect(released.reduce((a, b) => a + b, 0)).toBe(10_000);
  });
});
