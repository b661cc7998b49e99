import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { desiredResponse } from '../../../src/region/desired-document.js';
import { MqttDeviceChannel } from '../../../src/agent/mqtt/device-channel.js';
import { startMqttRegionTransport } from '../../../src/region/mqtt/region-transport.js';
import { makeTestCertificates, type Mosquitto } from '../../support/mosquitto.js';
import { MOSQUITTO, OPENSSL, requireTool } from '../../support/requirements.js';
import { MqttRegion, REGION, REGION_USER, quietLog, startAclBroker, until } from './mqtt-fixture.js';

/** Every test here runs against a private Mosquitto (served over TLS with certificates made by openssl). */
const missing = await requireTool(MOSQUITTO, OPENSSL);

let certDir: string;
let certs: { caFile: string; certFile: string; keyFile: string };
let broker: Mosquitto;
let region: MqttRegion;

beforeAll(async () => {
  if (missing) return;
  certDir = mkdtempSync(join(tmpdir(), 'cascade-mqtt-tls-'));
  certs = await makeTestCertificates(certDir);
  broker = await startAclBroker({ tls: certs });
  region = await MqttRegion.start(broker, undefined, { caFile: certs.caFile });
});
afterAll(async () => {
  if (missing) return;
  await region?.close();
  await broker?.stop();
  rmSync(certDir, { recursive: true, force: true });
});

describe.skipIf(missing)('mqtts:// with a CA file', () => {
  it('region and device talk over TLS to a broker whose certificate the CA file vouches for', async () => {
    expect(broker.url).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    const client = await region.enroll('dev-a');
    await region.handOut(['dev-a'], { web: { version: '1.0.0', deployment: 'web-all' } });
    const channel = new MqttDeviceChannel({ url: broker.url, caFile: certs.caFile, client, log: quietLog });
    try {
      expect(await channel.getDesired(null, 5)).toMatchObject({ status: 200, body: { device: 'dev-a', generation: 1 } });
      await channel.report({ apps: { web: { version: '1.0.0', state: 'healthy' } } });
      await until(() => region.store.getDevice('dev-a')?.apps['web']?.version === '1.0.0', 10_000, 'the report over TLS');
    } finally {
      await channel.close();
    }
  });

  it('refuses a broker whose certificate the system CAs do not vouch for', async () => {
    await expect(
      startMqttRegionTransport({
        url: broker.url,
        ...REGION_USER,
        region: REGION,
        store: region.store,
        log: quietLog,
        clock: Date.now,
        desiredFor: (id) => desiredResponse(region.store, REGION, id),
        clientId: 'no-ca',
      }),
    ).rejects.toThrow(/cannot connect to the MQTT broker mqtts:\/\/127\.0\.0\.1:\d+: .*(self[- ]signed|unable to verify|local issuer).*--mqtt-ca-file/i);
  });
});
