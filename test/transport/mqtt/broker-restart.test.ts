import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MqttDeviceChannel } from '../../../src/agent/mqtt/device-channel.js';
import type { Mosquitto } from '../../support/mosquitto.js';
import { MOSQUITTO, requireTool } from '../../support/requirements.js';
import { MqttRegion, OBSERVER, REGION, connectRecorder, quietLog, startAclBroker, until } from './mqtt-fixture.js';

/** Every test here runs against a private Mosquitto (its own port, users and ACL). */
const missing = await requireTool(MOSQUITTO);

let broker: Mosquitto;
let region: MqttRegion;

beforeAll(async () => {
  if (missing) return;
  broker = await startAclBroker();
  region = await MqttRegion.start(broker);
});
afterAll(async () => {
  if (missing) return;
  await region?.close();
  await broker?.stop();
});

describe.skipIf(missing)('a broker that restarts without its retained messages', () => {
  it('gets every desired state again from the region, and devices reconnect and carry on', async () => {
    const client = await region.enroll('dev-a');
    await region.handOut(['dev-a'], { web: { version: '1.0.0', deployment: 'web-all' } });
    const channel = new MqttDeviceChannel({ url: broker.url, client, log: quietLog });
    try {
      expect(await channel.getDesired(null, 5)).toMatchObject({ status: 200, etag: '"1"' });
      expect(region.transport.stats()).toMatchObject({ published: 1, connections: 1 });

      await broker.restart(); // `persistence false`: the retained state is gone
      await until(() => region.transport.stats().connections === 2 && region.transport.published() === 2, 20_000, 'the region to reconnect and publish again');

      const observer = await connectRecorder(broker.url, { ...OBSERVER, clientId: OBSERVER.username });
      await observer.client.subscribeAsync(`cascade/${REGION}/+/desired`, { qos: 1 });
      await until(() => observer.messages.length === 1, 10_000, 'the retained state');
      expect(JSON.parse(observer.messages[0]!.payload)).toMatchObject({ device: 'dev-a', generation: 1 });
      await observer.close();

      // The device's connection came back too: a change reaches it without polling.
      const waiting = channel.getDesired('"1"', 30);
      await region.handOut(['dev-a'], { web: { version: '2.0.0', deployment: 'web-all' } });
      expect(await waiting).toMatchObject({ status: 200, etag: '"2"' });
      await channel.report({ apps: { web: { version: '2.0.0', state: 'healthy' } } });
      await until(() => region.store.getDevice('dev-a')?.apps['web']?.version === '2.0.0', 10_000, 'the report after the restart');
    } finally {
      await channel.close();
    }
  });
});
