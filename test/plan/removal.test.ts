import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allowsRemoval, countRemovals, describeRemoval, exceedsRemovalLimit, removalsFromPlan } from '../../src/plan/removal.js';

const desired = (entries: Array<[string, string[]]>) => new Map(entries.map(([id, apps]) => [id, Object.fromEntries(apps.map((a) => [a, { version: '1' }]))]));

describe('the mass-removal guard arithmetic', () => {
  it('counts devices that lose at least one app, and each app lost', () => {
    const count = countRemovals({
      region: 'us-east',
      devices: ['a', 'b', 'c', 'd'],
      before: desired([['a', ['web', 'db']], ['b', ['web']], ['c', ['web']], ['d', []]]),
      after: desired([['a', []], ['b', ['web', 'new']], ['c', []]]),
    });
    expect(count).toEqual({ region: 'us-east', devices: 4, losing: 2, apps: [{ app: 'web', devices: 2 }, { app: 'db', devices: 1 }] });
    expect(exceedsRemovalLimit(count, 0.1)).toBe(true);
    expect(exceedsRemovalLimit(count, 0.5)).toBe(false);
    expect(describeRemoval(count, 0.1)).toBe('2 of 4 devices of region us-east (50%) would lose apps (web on 2, db on 1), more than --max-removal 10%');
  });

  it('never refuses a revision that removes nothing, whatever the limit', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 4 }), fc.array(fc.constantFrom('web', 'db', 'cam'))), { maxLength: 30 }), fc.double({ min: 0, max: 1, noNaN: true }), (rows, max) => {
        const before = desired(rows);
        const after = desired(rows.map(([id, apps]) => [id, [...apps, 'extra']]));
        const count = countRemovals({ region: 'r', devices: before.keys(), before, after });
        expect(count.losing).toBe(0);
        expect(exceedsRemovalLimit(count, max)).toBe(false);
      }),
    );
  });

  it('refuses exactly when more than the share of devices lose apps', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 0, max: 200 }), fc.double({ min: 0, max: 1, noNaN: true }), (devices, losingWanted, max) => {
        const losing = Math.min(losingWanted, devices);
        const ids = Array.from({ length: devices }, (_, i) => `d${i}`);
        const before = desired(ids.map((id) => [id, ['web']]));
        const after = desired(ids.map((id, i) => [id, i < losing ? [] : ['web']]));
        const count = countRemovals({ region: 'r', devices: ids, before, after });
        expect(count.losing).toBe(losing);
        expect(exceedsRemovalLimit(count, max)).toBe(losing > 0 && losing > max * devices);
      }),
    );
  });

  it('counts the same from a plan\'s remove steps, per region', () => {
    const plan = {
      revision: 'abc',
      conflicts: [],
      steps: [
        { device: 'a', region: 'eu', app: 'web', action: 'remove' as const, from: '1', to: null, deployment: null, wave: null, reason: '' },
        { device: 'a', region: 'eu', app: 'db', action: 'remove' as const, from: '1', to: null, deployment: null, wave: null, reason: '' },
        { device: 'b', region: 'eu', app: 'web', action: 'upgrade' as const, from: '1', to: '2', deployment: 'web', wave: 1, reason: '' },
      ],
    };
    const inventory = [
      { id: 'a', region: 'eu', labels: {}, apps: {} },
      { id: 'b', region: 'eu', labels: {}, apps: {} },
      { id: 'c', region: 'us', labels: {}, apps: {} },
    ];
    expect(removalsFromPlan(plan, inventory)).toEqual([
      { region: 'eu', devices: 2, losing: 1, apps: [{ app: 'db', devices: 1 }, { app: 'web', devices: 1 }] },
      { region: 'us', devices: 1, losing: 0, apps: [] },
    ]);
  });

  it('reads the trailer only from the last paragraph of the message', () => {
    expect(allowsRemoval('Remove the old fleet\n\nCascade-Allow-Removal: yes\n')).toBe(true);
    expect(allowsRemoval('Remove\n\nSigned-off-by: A <a@b>\ncascade-allow-removal: TRUE')).toBe(true);
    expect(allowsRemoval('Cascade-Allow-Removal: yes\n\nbut this is the body')).toBe(false);
    expect(allowsRemoval('Remove\n\nCascade-Allow-Removal: no')).toBe(false);
    expect(allowsRemoval('Remove\n\nX-Cascade-Allow-Removal: yes')).toBe(false);
  });
});
