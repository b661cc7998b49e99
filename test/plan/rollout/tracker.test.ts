import { describe, expect, it } from 'vitest';
import { planRollouts } from '../../../src/plan/rollout/plan-rollouts.js';
import { DeploymentTracker, type TrackedDeployment } from '../../../src/plan/rollout/tracker.js';
import type { RolloutDeviceInput, RolloutState } from '../../../src/plan/rollout/types.js';
import { MINUTE, T0 } from './rollout-sim.js';

const OFFLINE = 10 * MINUTE;
const web: TrackedDeployment = { deployment: 'web', app: 'web', version: '2.0', fingerprint: 'fp-2.0', rollout: { waves: [10, 100], maxUnavailable: 50 } };

function fleet(n: number): Map<string, RolloutDeviceInput> {
  const devices = new Map<string, RolloutDeviceInput>();
  for (let i = 0; i < n; i++) {
    const id = `d${String(i).padStart(5, '0')}`;
    devices.set(id, { id, wave: i % 10 === 0 ? 1 : 2, lastSeen: T0, enrolledAt: T0 - MINUTE, report: { version: '1.0', state: 'healthy' }, handedVersion: '1.0' });
  }
  return devices;
}

function run<T>(steps: Generator<void, T, void>): T {
  let step = steps.next();
  while (!step.done) step = steps.next();
  return step.value;
}

describe('DeploymentTracker: a pass costs what changed', () => {
  it('plans 10,000 devices without reading one of them again, and gives what planRollouts gives', () => {
    const devices = fleet(10_000);
    const tracker = new DeploymentTracker(web, OFFLINE, T0);
    for (const [id, input] of devices) tracker.set(id, input, T0);
    let reads = 0;
    const view = (id: string) => (reads++, devices.get(id));
    let previous: RolloutState | undefined;
    let now = T0;
    for (let pass = 0; pass < 5; pass++) {
      const planned = run(tracker.plan(now, 'r2', previous, view, { offlineAfterMs: OFFLINE }));
      const full = planRollouts({ now, offlineAfterMs: OFFLINE, revision: 'r2', previous: previous ? new Map([['web', previous]]) : new Map(), deployments: [{ ...web, devices: [...devices.values()] }] });
      expect(planned.status).toEqual(full.statuses[0]);
      expect(planned.state).toEqual(full.states.get('web'));
      // maxUnavailable 50, and the 50 of the pass before are healthy already: 50 more of wave 1 each pass.
      expect(planned.chosen.size).toBe(50);
      previous = planned.state;
      // The released devices are handed 2.0 and report it healthy: only they are given to the tracker again.
      for (const id of planned.chosen) {
        const input = { ...devices.get(id)!, handedVersion: '2.0', report: { version: '2.0', state: 'healthy' as const }, lastSeen: now };
        devices.set(id, input);
        tracker.set(id, input, now);
      }
      now += 1_000;
    }
    // Not one device read back: no deadline passed, no retry, no Stalled settings.
    expect(reads).toBe(0);
  });

  it('reads a silent device again once offlineAfter has passed: a connected one stays online, a gone one turns offline', () => {
    const devices = fleet(3);
    const tracker = new DeploymentTracker(web, OFFLINE, T0);
    for (const [id, input] of devices) tracker.set(id, input, T0);
    const connected = new Set(['d00000']);
    const later = T0 + OFFLINE + 1;
    const read: string[] = [];
    const view = (id: string) => {
      read.push(id);
      const input = devices.get(id)!;
      return connected.has(id) ? { ...input, lastSeen: later } : input;
    };
    const planned = run(tracker.plan(later, 'r2', undefined, view, { offlineAfterMs: OFFLINE }));
    expect(read.sort()).toEqual(['d00000', 'd00001', 'd00002']);
    const offline = planned.status.waves.reduce((n, w) => n + w.offline, 0);
    expect(offline).toBe(2);
    expect(tracker.nextDeadline()).toBe(later + OFFLINE);
  });

  it('verify finds a change the tracker was not told of, and nothing when it was told of every change', () => {
    const devices = fleet(100);
    const tracker = new DeploymentTracker(web, OFFLINE, T0);
    for (const [id, input] of devices) tracker.set(id, input, T0);
    const view = (id: string) => devices.get(id);
    expect(tracker.verify(devices.keys(), view, T0)).toEqual([]);
    devices.set('d00007', { ...devices.get('d00007')!, handedVersion: '2.0', report: { version: '2.0', state: 'failed' } });
    const differences = tracker.verify(devices.keys(), view, T0);
    expect(differences[0]).toBe('device d00007 is counted pending (wave 2), recounted failed (wave 2)');
    tracker.set('d00007', devices.get('d00007'), T0);
    expect(tracker.verify(devices.keys(), view, T0)).toEqual([]);
    devices.delete('d00008');
    expect(tracker.verify(devices.keys(), view, T0)).toContain('device d00008 is counted but no longer belongs');
    // A change the next pass will bring (the index holds the device as changed) is not a difference.
    expect(tracker.verify(devices.keys(), view, T0, (id) => id === 'd00008')).toEqual([]);
  });

  it('verify finds counts that drifted from the devices it holds', () => {
    const devices = fleet(10);
    const tracker = new DeploymentTracker(web, OFFLINE, T0);
    for (const [id, input] of devices) tracker.set(id, input, T0);
    (tracker as unknown as { attempted: number }).attempted++;
    expect(tracker.verify(devices.keys(), (id) => devices.get(id), T0)[0]).toMatch(/^counted .*"attempted":1.*, recounted from its devices .*"attempted":0/);
  });
});
