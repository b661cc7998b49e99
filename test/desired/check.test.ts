import { describe, expect, it } from 'vitest';
import { FleetLoader } from '../../src/desired/load.js';
import { APP, DEPLOYMENT, REGION, memorySnapshot } from './memory-snapshot.js';

const load = async (files: Record<string, string>) => (await new FleetLoader().load(memorySnapshot(files))).problems;
const base = { 'apps.yaml': APP('web'), 'regions.yaml': REGION('eu') + '---\n' + REGION('us') };

describe('checks between documents', () => {
  it('reports each overlapping pair of equal-priority Deployments once, at the later one, naming both', async () => {
    const problems = await load({
      ...base,
      'a.yaml': DEPLOYMENT('web-a', 'web', '1'),
      'b.yaml': DEPLOYMENT('web-b', 'web', '1', '  selector:\n    matchLabels: {tier: edge}\n'),
      'c.yaml': DEPLOYMENT('web-c', 'web', '1', '  priority: 0\n  selector:\n    regions: [eu]\n'),
    });
    expect(problems.map((p) => [p.code, p.path, p.line, p.col])).toEqual([
      ['priority-overlap', 'b.yaml', 9, 5],
      ['priority-overlap', 'c.yaml', 8, 13],
      ['priority-overlap', 'c.yaml', 8, 13],
    ]);
    expect(problems[0]!.message).toContain('"web-a" (a.yaml:1:1) and "web-b" both deploy app "web" with priority 0');
    expect(problems[0]!.message).toContain('set different spec.priority values');
  });

  it('accepts equal priorities when selectors are provably disjoint, and different priorities always', async () => {
    const problems = await load({
      ...base,
      'a.yaml': DEPLOYMENT('web-eu', 'web', '1', '  selector:\n    regions: [eu]\n'),
      'b.yaml': DEPLOYMENT('web-us', 'web', '2', '  selector:\n    regions: [us]\n'),
      'c.yaml': DEPLOYMENT('web-edge', 'web', '1', '  selector:\n    matchLabels: {tier: edge}\n'),
      'd.yaml': DEPLOYMENT('web-core', 'web', '1', '  selector:\n    matchExpressions:\n      - {key: tier, operator: In, values: [core]}\n'),
      'e.yaml': DEPLOYMENT('web-canary', 'web', '3', '  priority: 10\n'),
    });
    // web-edge and web-core are disjoint from each other but not from the region-only Deployments.
    expect(problems.map((p) => `${p.path} ${p.code}`)).toEqual([
      'c.yaml priority-overlap',
      'c.yaml priority-overlap',
      'd.yaml priority-overlap',
      'd.yaml priority-overlap',
    ]);
  });

  it('checks waves in Region and Fleet rollout defaults too', async () => {
    const problems = await load({
      'region.yaml': REGION('eu') + 'spec:\n  rollout:\n    waves: [5, 5, 100]\n',
      'fleet.yaml': 'apiVersion: cascade/v1\nkind: Fleet\nmetadata:\n  name: f\nspec:\n  rollout:\n    waves: [99]\n',
    });
    expect(problems.map((p) => `${p.path}:${p.line}:${p.col} ${p.code} ${p.pointer}`)).toEqual([
      'fleet.yaml:7:13 bad-waves /spec/rollout/waves/0',
      'region.yaml:7:16 bad-waves /spec/rollout/waves/1',
    ]);
  });

  it('names a few other places of a much repeated name, not all of them', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 20; i++) files[`r${String(i).padStart(2, '0')}.yaml`] = REGION('eu');
    const problems = await load(files);
    expect(problems).toHaveLength(20);
    expect(problems[0]!.message).toContain('also at r01.yaml:1:1, r02.yaml:1:1, r03.yaml:1:1, 16 more');
  });

  it('checks artifacts only for Apps that declare them', async () => {
    const problems = await load({
      'apps.yaml': APP('plain') + '---\n' + APP('packaged', 'spec:\n  artifacts: {}\n'),
      'd.yaml': DEPLOYMENT('plain', 'plain', '7') + '---\n' + DEPLOYMENT('packaged', 'packaged', '7'),
    });
    expect(problems.map((p) => `${p.path}:${p.line}:${p.col} ${p.code}`)).toEqual(['d.yaml:15:12 missing-artifact']);
    expect(problems[0]!.message).toContain('(artifacts: none)');
  });
});
