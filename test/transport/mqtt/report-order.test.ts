import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { desiredResponse } from '../../../src/region/desired-document.js';
import { startMqttRegionTransport } from '../../../src/region/mqtt/region-transport.js';
import { ReportOrder } from '../../../src/region/report-order.js';
import { createSecurityMetrics } from '../../../src/region/security-metrics.js';
import type { Mosquitto } from '../../support/mosquitto.js';
import { MqttRegion, REGION, REGION_USER, quietLog, resetBroker, startAclBroker, until } from './mqtt-fixture.js';

let broker: Mosquitto;
let region: MqttRegion;

beforeAll(async () => {
  broker = await startAclBroker();
});
afterAll(async () => {
  await broker?.stop();
});
beforeEach(async () => {
  region = await MqttRegion.start(broker);
});
afterEach(async () => {
  await region.close();
  await resetBroker(broker.url);
});

describe('reports over MQTT are applied in the order the agent sent them', () => {
  it('a replayed or overtaken report is acknowledged but not applied, and counted', async () => {
    const metrics = createSecurityMetrics(new Registry());
    await region.transport.close();
    region.transport = await startMqttRegionTransport({
      url: broker.url,
      ...REGION_USER,
      region: REGION,
      store: region.store,
      log: quietLog,
      clock: Date.now,
      desiredFor: (id) => desiredResponse(region.store, REGION, id),
      onReport: (id) => region.reports.push(id),
      reportOrder: new ReportOrder(region.store, metrics, quietLog),
    });
    const device = await region.connectDevice(await region.enroll('dev-a'));
    const topic = `cascade/${REGION}/dev-a/reported`;
    const send = (version: string, seq?: number) =>
      device.client.publishAsync(topic, JSON.stringify({ deviceId: 'dev-a', apps: { web: { version, state: 'healthy' } }, ...(seq === undefined ? {} : { seq }) }), { qos: 1 });
    const version = () => region.store.getDevice('dev-a')?.apps['web']?.version;

    await send('2.0.0', 10);
    await until(() => version() === '2.0.0', 10_000, 'the first report');
    await send('1.0.0', 9); // overtaken on the way
    await send('1.0.0', 10); // a QoS 1 redelivery or a replay
    await send('2.1.0', 11);
    await until(() => version() === '2.1.0', 10_000, 'the newer report');
    // The broker delivers one client's messages in order: the two stale ones came before the newer one.
    expect(region.reports).toEqual(['dev-a', 'dev-a']);
    expect((await metrics.reportsOutOfOrder.get()).values).toEqual([{ value: 2, labels: { transport: 'mqtt' } }]);
    await send('2.2.0'); // an agent before seq
    await until(() => version() === '2.2.0', 10_000, 'a report without seq');
    await device.close();
  });
});
