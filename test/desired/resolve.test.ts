import { describe, expect, it } from 'vitest';
import { createResolver, resolveDesired, resolveDevice } from '../../src/desired/resolve.js';
import { deployment, device, makeFleet } from '../plan/fleet-fixture.js';

describe('resolveDesired', () => {
  it('gives each device the version of the Deployment that selects it, by region, matchLabels and matchExpressions', () => {
    const fleet = makeFleet({
      deployments: [
        deployment('web-eu', 'web', '2.1.0', { selector: { regions: ['eu-west', 'eu-north'] } }),
        deployment('web-us', 'web', '2.0.0', { selector: { regions: ['us-east'] } }),
        deployment('agent-rpi', 'agent', '1.2.0', { selector: { matchLabels: { hw: 'rpi4' } } }),
        deployment('cam-beta', 'cam', '0.9.0', {
          selector: { matchExpressions: [{ key: 'ring', operator: 'In', values: ['beta', 'alpha'] }, { key: 'retired', operator: 'DoesNotExist' }] },
        }),
      ],
    });
    const { desired, conflicts } = resolveDesired(fleet, [
      device('a', 'eu-west', { hw: 'rpi4', ring: 'beta' }),
      device('b', 'us-east', { hw: 'x86', ring: 'stable' }),
      device('c', 'eu-north', { ring: 'alpha', retired: 'yes' }),
      device('d', 'ap-south', {}),
    ]);
    expect(conflicts).toEqual([]);
    expect(desired.get('a')).toEqual({
      agent: { version: '1.2.0', deployment: 'agent-rpi' },
      cam: { version: '0.9.0', deployment: 'cam-beta' },
      web: { version: '2.1.0', deployment: 'web-eu' },
    });
    expect(desired.get('b')).toEqual({ web: { version: '2.0.0', deployment: 'web-us' } });
    expect(desired.get('c')).toEqual({ web: { version: '2.1.0', deployment: 'web-eu' } });
    expect(desired.get('d')).toEqual({});
  });

  it('lets the highest priority win where Deployments of one app overlap, whatever the declaration order', () => {
    const base = deployment('web-all', 'web', '2.0.0');
    const canary = deployment('web-canary', 'web', '2.1.0-rc.1', { priority: 10, selector: { matchLabels: { ring: 'canary' } } });
    const pinned = deployment('web-pinned', 'web', '1.9.0', { priority: 20, selector: { matchExpressions: [{ key: 'pin', operator: 'Exists' }] } });
    for (const order of [[base, canary, pinned], [pinned, canary, base], [canary, pinned, base]]) {
      const fleet = makeFleet({ deployments: order });
      const { desired, conflicts } = resolveDesired(fleet, [
        device('plain', 'eu', {}),
        device('canary', 'eu', { ring: 'canary' }),
        device('pinned-canary', 'eu', { ring: 'canary', pin: 'true' }),
      ]);
      expect(conflicts).toEqual([]);
      expect(desired.get('plain')!.web).toEqual({ version: '2.0.0', deployment: 'web-all' });
      expect(desired.get('canary')!.web).toEqual({ version: '2.1.0-rc.1', deployment: 'web-canary' });
      expect(desired.get('pinned-canary')!.web).toEqual({ version: '1.9.0', deployment: 'web-pinned' });
    }
  });

  it('reports an overlap at equal priority as a conflict naming both Deployments, with no desired entry from either', () => {
    const fleet = makeFleet({
      deployments: [
        deployment('web-eu', 'web', '2.1.0', { priority: 5, selector: { regions: ['eu'] } }),
        deployment('web-rpi', 'web', '2.2.0', { priority: 5, selector: { matchLabels: { hw: 'rpi4' } } }),
        deployment('agent', 'agent', '1.0.0'),
      ],
    });
    const { desired, conflicts } = resolveDesired(fleet, [
      device('both', 'eu', { hw: 'rpi4' }),
      device('eu-only', 'eu', { hw: 'x86' }),
      device('rpi-only', 'us', { hw: 'rpi4' }),
    ]);
    expect(desired.get('both')).toEqual({ agent: { version: '1.0.0', deployment: 'agent' } });
    expect(desired.get('eu-only')!.web!.deployment).toBe('web-eu');
    expect(desired.get('rpi-only')!.web!.deployment).toBe('web-rpi');
    expect(conflicts).toHaveLength(1);
    expect(conflicts[0]).toMatchObject({ device: 'both', app: 'web', deployments: ['web-eu', 'web-rpi'], priority: 5 });
    expect(conflicts[0]!.message).toContain('web-eu and web-rpi both select device both for app web at priority 5');
  });

  it('has no conflict when a higher priority Deployment settles an overlap below it', () => {
    const fleet = makeFleet({
      deployments: [
        deployment('a', 'web', '1.0.0'),
        deployment('b', 'web', '1.1.0'),
        deployment('c', 'web', '1.2.0', { priority: 1, selector: { regions: ['eu'] } }),
      ],
    });
    const { desired, conflicts } = resolveDesired(fleet, [device('eu-1', 'eu'), device('us-1', 'us')]);
    expect(desired.get('eu-1')!.web!.deployment).toBe('c');
    expect(conflicts.map((c) => [c.device, c.deployments])).toEqual([['us-1', ['a', 'b']]]);
  });

  it('lists three tied Deployments in name order', () => {
    const fleet = makeFleet({ deployments: [deployment('z', 'web', '3'), deployment('x', 'web', '1'), deployment('y', 'web', '2')] });
    const { conflicts } = resolveDesired(fleet, [device('d', 'eu')]);
    expect(conflicts[0]!.deployments).toEqual(['x', 'y', 'z']);
    expect(conflicts[0]!.message).toContain('x, y and z all select');
  });

  it('resolves devices that differ only in labels no selector looks at identically, and still tells apart those that matter', () => {
    const fleet = makeFleet({
      deployments: [
        deployment('web', 'web', '1.0.0', { selector: { matchExpressions: [{ key: 'ring', operator: 'NotIn', values: ['frozen'] }] } }),
      ],
    });
    const resolver = createResolver(fleet);
    const first = resolver.resolve(device('a', 'eu', { serial: 'A1', ring: 'beta' }));
    const second = resolver.resolve(device('b', 'eu', { serial: 'B2', ring: 'beta' }));
    expect(second.desired).toBe(first.desired);
    expect(Object.isFrozen(first.desired)).toBe(true);
    expect(resolver.resolve(device('c', 'eu', { ring: 'frozen' })).desired).toEqual({});
    expect(resolver.resolve(device('d', 'eu', {})).desired).toEqual({ web: { version: '1.0.0', deployment: 'web' } });
    expect(resolver.resolve(device('e', 'us', { ring: 'frozen' })).desired).toEqual({});
    // A label named like an Object.prototype member is just a label.
    const proto = makeFleet({ deployments: [deployment('p', 'web', '1.0.0', { selector: { matchExpressions: [{ key: 'constructor', operator: 'DoesNotExist' }] } })] });
    expect(resolveDevice(proto, device('f', 'eu', {})).desired).toEqual({ web: { version: '1.0.0', deployment: 'p' } });
    expect(resolveDevice(proto, device('g', 'eu', { constructor: 'x' })).desired).toEqual({});
  });

  it('gives a device of a cached signature its own conflicts', () => {
    const fleet = makeFleet({ deployments: [deployment('a', 'web', '1'), deployment('b', 'web', '2')] });
    const resolver = createResolver(fleet);
    expect(resolver.resolve(device('d1', 'eu')).conflicts[0]!.device).toBe('d1');
    expect(resolver.resolve(device('d2', 'eu')).conflicts[0]!.device).toBe('d2');
  });

  it('agrees with matchesSelector applied device by device over many random devices', async () => {
    const { matchesSelector } = await import('../../src/desired/selector.js');
    const deployments = [
      deployment('w0', 'web', '1.0.0'),
      deployment('w1', 'web', '1.1.0', { priority: 1, selector: { regions: ['r1', 'r2'], matchLabels: { hw: 'a' } } }),
      deployment('w2', 'web', '1.2.0', { priority: 2, selector: { matchExpressions: [{ key: 'ring', operator: 'In', values: ['x'] }] } }),
      deployment('m0', 'mon', '3.0.0', { selector: { matchExpressions: [{ key: 'hw', operator: 'Exists' }] } }),
      deployment('m1', 'mon', '3.1.0', { priority: 1, selector: { regions: ['r3'] } }),
    ];
    const fleet = makeFleet({ deployments });
    let state = 7;
    const pick = <T>(xs: T[]) => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return xs[state % xs.length]!;
    };
    const devices = Array.from({ length: 500 }, (_, i) => {
      const labels: Record<string, string> = {};
      const hw = pick(['a', 'b', null]);
      if (hw) labels.hw = hw;
      const ring = pick(['x', 'y', null]);
      if (ring) labels.ring = ring;
      return device(`d${i}`, pick(['r1', 'r2', 'r3']), labels);
    });
    const { desired } = resolveDesired(fleet, devices);
    for (const d of devices) {
      for (const app of ['web', 'mon']) {
        const selecting = deployments.filter((dep) => dep.spec.app === app && matchesSelector(dep.spec.selector, d.region, d.labels));
        const top = Math.max(...selecting.map((s) => s.spec.priority ?? 0));
        const winners = selecting.filter((s) => (s.spec.priority ?? 0) === top);
        expect(desired.get(d.id)![app]?.deployment, `${d.id} ${app}`).toBe(winners.length === 1 ? winners[0]!.metadata.name : undefined);
      }
    }
  });
});
