import { describe, expect, it } from 'vitest';
import type { DeploymentSpec } from '../../../src/desired/model.js';
import { deploymentFingerprint } from '../../../src/plan/rollout/fingerprint.js';
import { planRollouts } from '../../../src/plan/rollout/plan-rollouts.js';
import { attemptsBy } from '../../../src/plan/rollout/released.js';
import type { RolloutDeviceInput, RolloutState } from '../../../src/plan/rollout/types.js';
import { computeHandOut } from '../../../src/plan/hand-out.js';
import { MINUTE, T0 } from './rollout-sim.js';

const spec = (rollout?: DeploymentSpec['rollout']): DeploymentSpec => ({ app: 'web', version: '2.0', ...(rollout ? { rollout } : {}) });

describe('deploymentFingerprint: pausing steers a rollout, it does not start another', () => {
  it('paused and onHalt leave the fingerprint as it was; any other rollout field changes it', () => {
    const base = deploymentFingerprint(spec());
    expect(deploymentFingerprint(spec({ paused: true }))).toBe(base);
    expect(deploymentFingerprint(spec({ paused: false, onHalt: 'revert' }))).toBe(base);
    expect(deploymentFingerprint(spec({}))).toBe(base);
    const waves = deploymentFingerprint(spec({ waves: [10, 100] }));
    expect(deploymentFingerprint(spec({ waves: [10, 100], paused: true, onHalt: 'revert-branch' }))).toBe(waves);
    expect(waves).not.toBe(base);
    expect(deploymentFingerprint(spec({ waves: [20, 100], paused: true }))).not.toBe(waves);
  });
});

/** Ten devices in one wave, all handed 2.0; the first `failed` report it failed, the rest are healthy. */
function fleet(failed: number, attempt = 0, handedAttempt = 0): RolloutDeviceInput[] {
  return Array.from({ length: 10 }, (_, i) => {
    const device: RolloutDeviceInput = { id: `d${i}`, wave: 1, lastSeen: T0, handedVersion: '2.0' };
    device.report = i < failed ? { version: '1.0', state: 'failed', message: 'boom', ...(attempt ? { attempt } : {}) } : { version: '2.0', state: 'healthy' };
    if (handedAttempt) device.handedAttempt = handedAttempt;
    return device;
  });
}

function pass(devices: RolloutDeviceInput[], previous: Map<string, RolloutState>, now: number, extra: { retry?: boolean; paused?: boolean } = {}) {
  return planRollouts({
    now,
    offlineAfterMs: 10 * MINUTE,
    revision: 'r2',
    previous,
    retries: extra.retry ? new Map([['web', now]]) : undefined,
    deployments: [{ deployment: 'web', app: 'web', version: '2.0', fingerprint: 'fp', rollout: { failureThreshold: 1, ...(extra.paused ? { paused: true } : {}) }, devices }],
  });
}

describe('planRollouts rule 11: an operator retry lifts a halt for exactly the failed devices, once', () => {
  it('hands the failed devices the version again as attempt 1, halts again when they fail again, and can be retried again', () => {
    const halted = pass(fleet(2), new Map(), T0);
    expect(halted.statuses[0]!.state).toBe('Halted');

    const retried = pass(fleet(2), halted.states, T0 + MINUTE, { retry: true });
    const state = retried.states.get('web')!;
    expect(state.halted).toBeNull();
    expect(state.retry).toMatchObject({ round: 1, devices: ['d0', 'd1'], at: T0 + MINUTE });
    expect(retried.statuses[0]!.state).not.toBe('Halted');
    expect(retried.statuses[0]!.retry?.devices).toEqual(['d0', 'd1']);
    expect(state.startedAt).toBe(halted.states.get('web')!.startedAt);

    // What the hand-out gives them: the same version with attempt 1; the others are untouched.
    const handed = new Map(fleet(2).map((d) => [d.id, { web: { version: '2.0', deployment: 'web' } }]));
    const changes = computeHandOut({ resolved: handed, handed, installed: new Map(), released: () => true, attempt: attemptsBy(retried) });
    expect([...changes.keys()].sort()).toEqual(['d0', 'd1']);
    expect(changes.get('d0')!.web).toEqual({ version: '2.0', deployment: 'web', attempt: 1 });

    // Their old failure (attempt 0) while they were handed attempt 1: updating, not failed; no new halt.
    const waiting = pass(fleet(2, 0, 1), retried.states, T0 + 2 * MINUTE);
    expect(waiting.statuses[0]!.state).toBe('Progressing');
    expect(waiting.statuses[0]!.waves[0]!.updating).toBe(2);

    // They fail again at attempt 1: halted again.
    const again = pass(fleet(2, 1, 1), waiting.states, T0 + 3 * MINUTE);
    expect(again.statuses[0]!.state).toBe('Halted');

    // A second retry is round 2; a retry of a rollout that is not halted does nothing.
    const second = pass(fleet(2, 1, 1), again.states, T0 + 4 * MINUTE, { retry: true });
    expect(second.states.get('web')!.retry?.round).toBe(2);
    const healthy = pass(fleet(0, 0, 2), second.states, T0 + 5 * MINUTE);
    expect(healthy.statuses[0]!.state).toBe('Complete');
    const noop = pass(fleet(0, 0, 2), healthy.states, T0 + 6 * MINUTE, { retry: true });
    expect(noop.states.get('web')!.retry?.round).toBe(2);
  });

  it('a retry while paused re-attempts the failed devices and releases nobody else', () => {
    const devices = fleet(2).map((d, i) => (i >= 5 ? { ...d, handedVersion: '1.0', report: { version: '1.0', state: 'healthy' as const } } : d));
    const halted = pass(devices, new Map(), T0, { paused: true });
    expect(halted.statuses[0]!.state).toBe('Halted');
    const retried = pass(devices, halted.states, T0 + MINUTE, { retry: true, paused: true });
    expect(retried.statuses[0]!.state).toBe('Paused');
    expect([...retried.release.get('web')!].sort()).toEqual(['d0', 'd1', 'd2', 'd3', 'd4']);
  });
});
