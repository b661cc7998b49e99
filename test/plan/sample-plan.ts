import type { InventoryDevice } from '../../src/core/types.js';
import { deployment, device, makeFleet, region } from './fleet-fixture.js';

/** The small fleet and inventory behind the golden renderings: every action, waves, layering, a conflict. */
export const sampleFleet = makeFleet({
  revision: '3f2a9c1',
  deployments: [
    deployment('web-stable', 'web', '2.0.3'),
    deployment('web-eu', 'web', '2.1.0', { priority: 10, selector: { regions: ['eu-west'] }, rollout: { waves: [10, 50, 100] } }),
    deployment('agent-rpi', 'agent', '1.4.2', { selector: { matchLabels: { hw: 'rpi4' } } }),
    deployment('agent-beta', 'agent', '1.5.0-rc.1', { selector: { matchExpressions: [{ key: 'ring', operator: 'In', values: ['beta'] }] } }),
  ],
  regions: [region('eu-west', { waves: [5, 100] }), region('us-east', { waves: [25, 100] })],
});

export const sampleInventory: InventoryDevice[] = [
  ...Array.from({ length: 10 }, (_, i) => device(`berlin-${String(i + 1).padStart(2, '0')}`, 'eu-west', { hw: 'rpi4', site: 'berlin' }, { web: '2.0.3', agent: '1.4.2' })),
  device('paris-01', 'eu-west', { hw: 'x86' }, { web: '2.1.0', legacy: '0.9' }),
  device('paris-02', 'eu-west', { hw: 'x86' }, {}),
  device('paris-03', 'eu-west', { hw: 'rpi4', ring: 'beta' }, { web: '2.1.0', agent: '1.4.2' }),
  ...Array.from({ length: 6 }, (_, i) => device(`nyc-${String(i + 1).padStart(2, '0')}`, 'us-east', { hw: 'rpi4' }, { web: i < 2 ? '2.0.3' : '1.9.8', agent: '1.4.2' })),
  device('nyc-07', 'us-east', { hw: 'x86' }, { web: '2.2.0-beta.1', agent: '1.4.2' }),
];
