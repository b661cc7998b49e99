import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { InventoryDevice } from '../../src/core/types.js';
import { resolveDevice } from '../../src/desired/resolve.js';
import { diffRevisions } from '../../src/plan/diff-revisions.js';
import { renderDiffJson, renderDiffMarkdown, renderDiffText } from '../../src/plan/render-diff.js';
import { deployment, device, makeFleet, region } from './fleet-fixture.js';
import { expectGolden } from './golden.js';
import { sampleFleet, sampleInventory } from './sample-plan.js';

/** The pull request of the golden files: web-eu 2.1.0 -> 2.2.0, agent-beta deleted, a new kiosk app, windows in eu-west only. */
const base = makeFleet({
  revision: 'aaaaaaaaaaaa1111',
  deployments: [...sampleFleet.deployments.values()],
  regions: [region('eu-west', { waves: [5, 100], window: { schedule: '0 2 * * *', duration: '2h' } }), region('us-east', { waves: [25, 100] })],
});
const head = makeFleet({
  revision: 'bbbbbbbbbbbb2222',
  deployments: [
    deployment('web-stable', 'web', '2.0.3'),
    deployment('web-eu', 'web', '2.2.0', { priority: 10, selector: { regions: ['eu-west'] }, rollout: { waves: [10, 50, 100] } }),
    deployment('agent-rpi', 'agent', '1.4.2', { selector: { matchLabels: { hw: 'rpi4' } } }),
    deployment('kiosk', 'kiosk', '1.0.0', { selector: { matchLabels: { hw: 'x86' } } }),
  ],
  regions: [region('eu-west', { waves: [5, 100], window: { schedule: '0 2 * * *', duration: '2h' } }), region('us-east', { waves: [25, 100] })],
});
const diff = diffRevisions(base, head, sampleInventory);

describe('diffRevisions', () => {
  it('lists, per Deployment and region, the devices whose desired versions move', () => {
    expect(diff.groups.map((g) => `${g.deployment}/${g.region}: ${g.from} -> ${g.to} ${g.devices}`)).toEqual([
      'agent-rpi/eu-west: null -> 1.4.2 1',
      'kiosk/eu-west: null -> 1.0.0 2',
      'kiosk/us-east: null -> 1.0.0 1',
      'web-eu/eu-west: 2.1.0 -> 2.2.0 13',
    ]);
    // paris-03 was in conflict at base (agent-beta vs agent-rpi, equal priority, so no agent desired): deleting agent-beta resolves it.
    expect(diff.groups[0]!.changes[0]).toMatchObject({ device: 'paris-03', kind: 'install', deployment: 'agent-rpi', running: '1.4.2' });
    expect(diff.totals).toEqual({ devices: 14, changes: 17, counts: { install: 4, upgrade: 13, downgrade: 0, remove: 0 }, regions: 2 });
    expect(diff.deployments).toEqual([
      { name: 'agent-beta', change: 'removed', app: 'agent', from: '1.5.0-rc.1', to: null, fields: [] },
      { name: 'kiosk', change: 'added', app: 'kiosk', from: null, to: '1.0.0', fields: [] },
      { name: 'web-eu', change: 'changed', app: 'web', from: '2.1.0', to: '2.2.0', fields: ['version'] },
    ]);
  });

  it('warns about deletions, removals and changes outside every window', () => {
    expect(diff.warnings.map((w) => w.code)).toEqual(['deployment-removed', 'outside-window']);
    expect(diff.warnings[1]!.message).toBe('1 device in us-east changes outside any maintenance window: kiosk has no rollout.window in us-east, so they update as soon as this is merged');
    const removal = diffRevisions(head, base, sampleInventory);
    expect(removal.warnings.find((w) => w.code === 'removes-apps')!.message).toBe(
      'kiosk is removed from 3 devices (2 in eu-west, 1 in us-east): no Deployment selects it for them anymore (it was kiosk)',
    );
  });

  it('renders text, markdown and JSON as in the golden files', () => {
    expectGolden('diff.golden.txt', renderDiffText(diff, { base: 'main (aaaaaaaa)', head: 'web-eu-2.2 (bbbbbbbb)', inventory: 'inventory.json' }));
    expectGolden('diff.golden.md', renderDiffMarkdown(diff, { base: 'main (aaaaaaaa)', head: 'web-eu-2.2 (bbbbbbbb)', inventory: 'inventory.json', maxDevicesPerGroup: 5 }));
    const json = JSON.parse(renderDiffJson(diff));
    expect(Object.keys(json)).toEqual(['base', 'head', 'inventory', 'totals', 'warnings', 'deployments', 'groups', 'conflicts']);
    expect(json.groups[3].changes).toHaveLength(13);
  });

  it('is empty for the same revision, and says so', () => {
    const same = diffRevisions(base, base, sampleInventory);
    expect(same.groups).toEqual([]);
    expect(same.deployments).toEqual([]);
    expect(renderDiffText(same)).toContain('No device of the 20 devices compared changes its desired versions.');
    expect(renderDiffMarkdown(diffRevisions(base, head, []))).toContain('No inventory given: only the Deployments are compared.');
  });

  it('escapes names, so a device id cannot break the pull-request comment', () => {
    const hostile = diffRevisions(base, head, [device('x|y<img src=x onerror=alert(1)>`', 'eu-west', { hw: 'x86' })]);
    const md = renderDiffMarkdown(hostile);
    expect(md).not.toContain('<img');
    expect(md).toContain('x\\|y&lt;img src=x onerror=alert(1)&gt;\\`');
  });

  it('every change is exactly the difference of the two resolutions (property)', () => {
    const version = fc.constantFrom('1.0.0', '1.1.0', '2.0.0');
    const fleetArb = fc.record({
      a: version,
      b: version,
      bPriority: fc.integer({ min: 0, max: 2 }),
      withB: fc.boolean(),
    });
    const deviceArb = fc.record({ id: fc.stringMatching(/^[a-z0-9]{1,6}$/), region: fc.constantFrom('r1', 'r2'), hw: fc.constantFrom('a', 'b') });
    const build = (f: { a: string; b: string; bPriority: number; withB: boolean }, revision: string) =>
      makeFleet({
        revision,
        deployments: [
          deployment('app-all', 'app', f.a),
          ...(f.withB ? [deployment('app-b', 'app', f.b, { priority: f.bPriority, selector: { matchLabels: { hw: 'b' } } })] : []),
        ],
      });
    fc.assert(
      fc.property(fleetArb, fleetArb, fc.uniqueArray(deviceArb, { selector: (d) => d.id, maxLength: 20 }), (fa, fb, raw) => {
        const devices: InventoryDevice[] = raw.map((d) => device(d.id, d.region, { hw: d.hw }));
        const [x, y] = [build(fa, 'x'), build(fb, 'y')];
        const result = diffRevisions(x, y, devices);
        const expected: string[] = [];
        for (const d of devices) {
          const before = resolveDevice(x, d).desired['app']?.version ?? null;
          const after = resolveDevice(y, d).desired['app']?.version ?? null;
          if (before !== after && !(after === null && resolveDevice(y, d).conflicts.length > 0)) expected.push(`${d.id}:${before}->${after}`);
        }
        const actual = result.groups.flatMap((g) => g.changes.map((c) => `${c.device}:${c.from}->${c.to}`));
        expect(actual.sort()).toEqual(expected.sort());
      }),
      { numRuns: 200 },
    );
  });
});
