import { describe, expect, it } from 'vitest';
import { planRollouts } from '../../src/plan/rollout/index.js';
import type { DeploymentRolloutStatus, RolloutDeploymentInput } from '../../src/plan/rollout/types.js';
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
  const status = (name: string): DeploymentRolloutStatus => plan.statuses.find((s) => s.deployment === name)!;
  // None of them was handed the version or runs it: the pass chose them all.
  const chosen = (name: string): ReadonlySet<string> => plan.release.get(name)!;

  it('releases nobody new for a version whose artifact is not ready, and says why', () => {
    expect(chosen('web').size).toBe(3);
    const handed = new Map([['a', { web: { version: '2.0.0', deployment: 'web' } }]]);
    const installed = new Map([['b', { web: '2.0.0' }]]);
    const gate = (r: { app: string }) => (r.app === 'web' ? 'the region is fetching artifact web 2.0.0' : null);
    const gated = withholdUnready(status('web'), chosen('web'), gate, handed, installed);
    // a was handed it already, b runs it: they keep it; c waits.
    expect([...gated.chosen].sort()).toEqual(['a', 'b']);
    expect(gated.status.waitingForArtifact).toBe('the region is fetching artifact web 2.0.0');
    expect(gated.status.message).toBe('waiting for the artifact: the region is fetching artifact web 2.0.0');
    const db = withholdUnready(status('db'), chosen('db'), gate, handed, installed);
    expect(db.chosen).toBe(chosen('db'));
    expect(db.status.waitingForArtifact).toBeUndefined();
  });

  it('does not ask about a rollout that hands the version to nobody new', () => {
    const asked: string[] = [];
    const everyone = new Map(['a', 'b', 'c'].map((id) => [id, { web: '2.0.0', db: '5.0.0' }]));
    const gated = withholdUnready(status('web'), chosen('web'), (r) => (asked.push(r.deployment), 'not ready'), new Map(), everyone);
    expect(asked).toEqual([]);
    expect(gated.chosen).toBe(chosen('web'));
    expect(gated.status).toBe(status('web'));
    expect(withholdUnready(status('web'), new Set(), () => 'not ready', new Map(), new Map()).status).toBe(status('web'));
  });

  it('returns the status and devices themselves when every artifact is ready', () => {
    const gated = withholdUnready(status('web'), chosen('web'), () => null, new Map(), new Map());
    expect(gated.status).toBe(status('web'));
    expect(gated.chosen).toBe(chosen('web'));
  });
});
