import { describe, expect, it } from 'vitest';
import type { RegionStatus } from '../../src/protocol/region-status.js';
import type { DeploymentRolloutStatus } from '../../src/protocol/rollout-status.js';
import { regionVerdict } from '../../src/cli/render/watch-verdict.js';

function rollout(deployment: string, version: string, state: DeploymentRolloutStatus['state'], revision = 'bbbbbbbb'): DeploymentRolloutStatus {
  return { deployment, app: deployment, version, revision, state, currentWave: 1, waves: [], rollback: false, startedAt: 0, message: '' };
}

function status(applied: string, rollouts: DeploymentRolloutStatus[], updating = 0, refused: { attempted: string; error: string[] } | null = null): RegionStatus {
  return {
    region: 'r',
    revision: { applied, attempted: refused?.attempted ?? applied, error: refused?.error ?? null },
    source: { reachable: true, head: applied, error: null },
    devices: { total: 10, converged: 10 - updating, updating, pending: 0, failed: 0, offline: 0 },
    updatesSent: 0,
    rollouts,
  };
}

describe('when cascade status --watch stops', () => {
  const settled = status('aaaaaaaa', [rollout('web', '1.0.0', 'Complete', 'aaaaaaaa')]);

  it('waits for the next rollout when the region is settled at the start', () => {
    expect(regionVerdict(settled, { until: 'settled', first: settled })).toBeNull();
    const moving = status('bbbbbbbb', [rollout('web', '2.0.0', 'Progressing')], 3);
    expect(regionVerdict(moving, { until: 'settled', first: settled })).toBeNull();
    const done = status('bbbbbbbb', [rollout('web', '2.0.0', 'Complete')]);
    expect(regionVerdict(done, { until: 'settled', first: settled })).toMatchObject({ end: 'Complete' });
  });

  it('stops at the first halt with --until complete, and once everything settled with --until settled', () => {
    const mixed = status('bbbbbbbb', [rollout('web', '2.0.0', 'Halted'), rollout('db', '3.0.0', 'Progressing')], 2);
    expect(regionVerdict(mixed, { until: 'complete', first: settled })).toMatchObject({ end: 'Halted' });
    expect(regionVerdict(mixed, { until: 'settled', first: settled })).toBeNull();
    const both = status('bbbbbbbb', [rollout('web', '2.0.0', 'Halted'), rollout('db', '3.0.0', 'Complete')]);
    expect(regionVerdict(both, { until: 'settled', first: settled })).toMatchObject({ end: 'Halted' });
  });

  it('calls a refused revision Refused', () => {
    const refused = status('aaaaaaaa', [rollout('web', '1.0.0', 'Complete', 'aaaaaaaa')], 0, { attempted: 'cccccccc', error: ['web.yaml:1:1: bad'] });
    expect(regionVerdict(refused, { until: 'settled', first: settled })).toMatchObject({ end: 'Refused' });
    expect(regionVerdict(refused, { until: 'settled', first: settled, revision: 'cccc' })).toMatchObject({ end: 'Refused', message: /web\.yaml:1:1/ });
  });

  it('with --revision, waits until that commit is applied and follows only its rollouts', () => {
    expect(regionVerdict(settled, { until: 'complete', first: settled, revision: 'bbbb' })).toBeNull();
    const applied = status('bbbbbbbb', [rollout('web', '2.0.0', 'Complete'), rollout('db', '1.0.0', 'Halted', 'aaaaaaaa')]);
    expect(regionVerdict(applied, { until: 'complete', first: settled, revision: 'bbbb' })).toMatchObject({ end: 'Complete' });
    // Already complete when the watch starts: it ends at once rather than waiting for another commit.
    expect(regionVerdict(applied, { until: 'complete', first: applied, revision: 'bbbbbbbb' })).toMatchObject({ end: 'Complete' });
  });

  it('a Paused rollout does not move: the watch ends Paused (exit 1), or Halted when another one halted', () => {
    const paused = status('bbbbbbbb', [rollout('web', '2.0.0', 'Paused'), rollout('db', '3.0.0', 'Complete')]);
    expect(regionVerdict(paused, { until: 'settled', first: settled })).toMatchObject({ end: 'Paused', message: /web 2\.0\.0 Paused/ });
    expect(regionVerdict(paused, { until: 'complete', first: settled, revision: 'bbbb' })).toMatchObject({ end: 'Paused' });
    const both = status('bbbbbbbb', [rollout('web', '2.0.0', 'Paused'), rollout('db', '3.0.0', 'Halted')]);
    expect(regionVerdict(both, { until: 'settled', first: settled })).toMatchObject({ end: 'Halted' });
    // Paused from the start and nothing moved: it waits, like a settled region.
    expect(regionVerdict(paused, { until: 'settled', first: paused })).toBeNull();
  });
});
