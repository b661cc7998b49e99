import { describe, expect, it } from 'vitest';
import { planRollouts } from '../../src/plan/rollout/index.js';
import type { RolloutDeploymentInput } from '../../src/plan/rollout/types.js';
import { withholdUnready } from '../../src/reconciler/artifact-gate.js';

function deployment(name: string, version: string, devices: string[]): RolloutDeploymentInput {
  return {
    deployment: name,
    app: name,
    version,
    fingerprint: `${name}@${version}`,
    rollout: {},
    devices: devices.map((id) => ({ id, wave: 1, lastSeen: 0, report: { version: '1.0.0', state: 'healthy' } })),
  } as RolloutDeploymentInput;
}

describe('withholdUnready', () => {
  const plan = planRollouts({
    now: 1000,
    offlineAfterMs: 600_000,
    revision: 'r1',
    previous: new Map(),
    deployments: [deployment('web', '2.0.0', ['a', 'b', 'c']), deployment('db', '5.0.0', ['a', 'b'])],
  });

  it('releases nobody new for a version whose artifact is not ready, and says why', () => {
    expect(plan.release.get('web')?.size).toBe(3);
    const handed = new Map([['a', { web: { version: '2.0.0', deployment: 'web' } }]]);
    const installed = new Map([['b', { web: '2.0.0' }]]);
    const gated = withholdUnready(plan, (r) => (r.app === 'web' ? 'the region is fetching artifact web 2.0.0' : null), handed, installed);
    // a was handed it already, b runs it: they keep it; c waits.
    expect([...gated.release.get('web')!].sort()).toEqual(['a', 'b']);
    expect(gated.release.get('db')).toBe(plan.release.get('db'));
    const web = gated.statuses.find((s) => s.deployment === 'web')!;
    expect(web.waitingForArtifact).toBe('the region is fetching artifact web 2.0.0');
    expect(web.message).toBe('waiting for the artifact: the region is fetching artifact web 2.0.0');
    expect(gated.statuses.find((s) => s.deployment === 'db')!.waitingForArtifact).toBeUndefined();
    // The engine's memory is untouched: the rollout goes on from there once the artifact is ready.
    expect(gated.states).toBe(plan.states);
  });

  it('does not ask about a rollout that hands the version to nobody new', () => {
    const asked: string[] = [];
    const everyone = new Map(['a', 'b', 'c'].map((id) => [id, { web: '2.0.0', db: '5.0.0' }]));
    const gated = withholdUnready(plan, (r) => (asked.push(r.deployment), 'not ready'), new Map(), everyone);
    expect(asked).toEqual([]);
    expect(gated).toBe(plan);
  });

  it('returns the plan itself when every artifact is ready', () => {
    expect(withholdUnready(plan, () => null, new Map(), new Map())).toBe(plan);
  });
});
