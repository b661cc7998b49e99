import { describe, expect, it } from 'vitest';
import type { RegionRecord } from '../../src/storage/hub-store.js';
import { referencedRevisions, revisionView, searchDevices } from '../../src/hub/views.js';
import { rollout, summary, wave } from './hub-fixture.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const NOW = 1_000_000;

function record(region: string, fields: Parameters<typeof summary>[1], receivedAt = NOW): RegionRecord {
  return { summary: summary(region, fields), receivedAt };
}

describe('revisionView', () => {
  it('is Complete only when every region that applied the commit completed its rollouts', () => {
    const done = rollout('web', B, 'Complete', [wave(1, 100, { healthy: 4 })]);
    const going = rollout('web', B, 'Baking', [wave(1, 50, { healthy: 2 }), wave(2, 100, { pending: 2 })]);
    const regions = [
      record('eu-west', { revision: { attempted: B, applied: B, error: null }, rollouts: [done] }),
      record('us-east', { revision: { attempted: B, applied: B, error: null }, rollouts: [going] }),
      record('ap-south', { revision: { attempted: A, applied: A, error: null } }),
    ];
    expect(revisionView(B, regions, NOW, 60_000).state).toBe('Progressing');
    regions[1] = record('us-east', { revision: { attempted: B, applied: B, error: null }, rollouts: [done] });
    const view = revisionView(B, regions, NOW, 60_000);
    expect(view.state).toBe('Complete');
    expect(view.regions.map((r) => [r.region, r.applied, r.current])).toEqual([
      ['ap-south', false, A],
      ['eu-west', true, B],
      ['us-east', true, B],
    ]);
    expect(view.deployments[0]!.counts).toEqual({ devices: 8, converged: 8, new: 0, updating: 0, pending: 0, failed: 0, offline: 0 });
  });

  it('is Progressing while no region has applied the commit yet', () => {
    const regions = [record('eu-west', { revision: { attempted: A, applied: A, error: null } })];
    expect(revisionView(B, regions, NOW, 60_000).state).toBe('Progressing');
  });

  it('counts the devices of a stale region as offline in the fleet totals', () => {
    const going = rollout('web', B, 'Progressing', [wave(1, 100, { healthy: 3, updating: 1 })]);
    const regions = [
      record('eu-west', { revision: { attempted: B, applied: B, error: null }, rollouts: [going] }, NOW - 120_000),
      record('us-east', { revision: { attempted: B, applied: B, error: null }, rollouts: [going] }),
    ];
    const view = revisionView(B, regions, NOW, 60_000);
    expect(view.regions.map((r) => [r.region, r.stale])).toEqual([
      ['eu-west', true],
      ['us-east', false],
    ]);
    expect(view.deployments[0]!.counts).toEqual({ devices: 8, converged: 3, new: 0, updating: 1, pending: 0, failed: 0, offline: 4 });
  });

  it('Refused wins over Halted; a rollout an older commit started still belongs to that commit', () => {
    const halted = rollout('web', A, 'Halted', [wave(1, 100, { failed: 2 })], { halted: { reason: 'too many failures', devices: [], at: 1 } });
    const regions = [record('eu-west', { revision: { attempted: B, applied: A, error: ['x.yaml:1:1: bad'] }, rollouts: [halted] })];
    expect(revisionView(B, regions, NOW, 60_000).state).toBe('Refused');
    expect(revisionView(A, regions, NOW, 60_000).state).toBe('Halted');
    expect([...referencedRevisions(regions)].sort()).toEqual([A, B]);
  });
});

describe('searchDevices', () => {
  it('matches every word against region, id, state and app=version, case-insensitively', () => {
    const regions = [
      record('eu-west', {
        devices: { total: 3, converged: 2, updating: 0, failed: 1, offline: 0 },
        devicesList: [
          { id: 'Cam-01', state: 'converged', apps: { web: '2.0.0' } },
          { id: 'cam-02', state: 'failed', apps: { web: '1.0.0' } },
          { id: 'gw-01', state: 'converged', apps: { web: '1.0.0', db: '5.0.0' } },
        ],
        devicesTruncated: true,
      }),
    ];
    expect(searchDevices(regions, 'cam', 10).devices.map((d) => d.id)).toEqual(['Cam-01', 'cam-02']);
    expect(searchDevices(regions, 'WEB=1.0.0 converged', 10).devices.map((d) => d.id)).toEqual(['gw-01']);
    const limited = searchDevices(regions, '', 1);
    expect(limited).toMatchObject({ total: 3, matched: 3, truncatedRegions: ['eu-west'] });
    expect(limited.devices).toHaveLength(1);
  });
});
