import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MOSQUITTO, requireTool } from '../support/requirements.js';
import { RegionClient } from '../../src/agent/http/region-client.js';
import { MQTT_ONLINE, desiredTopic, reportedTopic, statusTopic } from '../../src/protocol/mqtt-topics.js';
import type { DesiredResponse } from '../../src/protocol/types.js';
import { startRegion, type RunningRegion } from '../../src/region/compose.js';
import { makeLocalRepo } from '../support/git-fixtures.js';
import type { Mosquitto } from '../support/mosquitto.js';
import { smallFleet } from '../support/small-fleet.js';
import { REGION, REGION_USER, startAclBroker } from '../transport/mqtt/mqtt-fixture.js';

const missing = await requireTool(MOSQUITTO);

/**
 * First report before first hand-out (issue 11, deliverable 3): a device that enrolled but has not
 * reported is handed nothing, however many passes run, so it is never told to remove or reinstall
 * what it runs; its first report (even one with nothing installed) makes it eligible. Over HTTP and
 * over MQTT, against a whole region (needs the mosquitto binary).
 */
const TOKEN = 'first-report-enrolment';
let root: string;
let broker: Mosquitto;
let region: RunningRegion;

beforeAll(async () => {
  if (missing) return;
  root = await mkdtemp(join(tmpdir(), 'cascade-first-report-'));
  broker = await startAclBroker();
  const repo = join(root, 'fleet');
  await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: '5.0.0' }));
  region = await startRegion({
    repo,
    branch: 'main',
    region: REGION,
    host: '127.0.0.1',
    port: 0,
    dataDir: join(root, 'region'),
    intervalMs: 3_600_000,
    enrollmentToken: TOKEN,
    log: pino({ level: 'silent' }),
    mqtt: { url: broker.url, ...REGION_USER, passwordFile: broker.passwordFile, brokerPidFile: broker.pidFile },
  });
  await region.reconcileNow();
}, 60_000);

afterAll(async () => {
  if (missing) return;
  await region?.close();
  await broker?.stop();
  await rm(root, { recursive: true, force: true });
});

async function passes(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await region.reconcileNow();
}

describe.skipIf(missing)('a device is handed nothing before its first report', () => {
  it('over HTTP: an enrolled device that has not reported gets generation 0, then its desired state once it reports', async () => {
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'http-dev' });
    await client.enroll({ role: 'storage' }, TOKEN);
    // Its polls make it online (seen now), so only the missing report holds it back.
    await client.getDesired(null, 0);
    await passes(3);
    const before = await client.getDesired(null, 0);
    expect(before.status).toBe(200);
    expect(before.status === 200 && before.body.generation).toBe(0);
    expect(before.status === 200 && before.body.apps).toEqual({});
    expect(region.status().updatesSent).toBe(0);

    // It runs an older web and db: it is told to update them, never to remove them first.
    await client.report({ apps: { web: { version: '0.9.0', state: 'healthy' }, db: { version: '4.0.0', state: 'healthy' } } });
    await passes(1);
    const after = await client.getDesired(null, 0);
    expect(after.status === 200 && after.body.generation).toBe(1);
    expect(after.status === 200 && Object.fromEntries(Object.entries(after.body.apps).map(([app, d]) => [app, d.version]))).toEqual({ web: '1.0.0', db: '5.0.0' });
  });

  it('over HTTP: a first report with nothing installed makes the device eligible', async () => {
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'http-empty' });
    await client.enroll({}, TOKEN);
    await client.getDesired(null, 0);
    await passes(2);
    const before = await client.getDesired(null, 0);
    expect(before.status === 200 && before.body.generation).toBe(0);
    await client.report({ apps: {} });
    await passes(1);
    const after = await client.getDesired(null, 0);
    expect(after.status === 200 && after.body.apps['web']?.version).toBe('1.0.0');
  });

  it('over MQTT: no desired state is published before the first report; one is after it', async () => {
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'mqtt-dev' });
    const { token } = await client.enroll({ role: 'storage' }, TOKEN);
    await passes(3);
    // The broker re-reads its password file after the enrolment: retry until the device may connect.
    let device: mqtt.MqttClient | undefined;
    for (let attempt = 0; !device; attempt++) {
      try {
        device = await mqtt.connectAsync(broker.url, { protocolVersion: 5, username: 'mqtt-dev', password: token, clientId: 'mqtt-dev', reconnectPeriod: 0 });
      } catch (err) {
        if (attempt > 100) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    try {
      const received: DesiredResponse[] = [];
      device.on('message', (_topic, payload) => received.push(JSON.parse(payload.toString()) as DesiredResponse));
      await device.subscribeAsync(desiredTopic(REGION, 'mqtt-dev'), { qos: 1 });
      // Connected and online, as an agent announces itself: the region counts it as seen now.
      await device.publishAsync(statusTopic(REGION, 'mqtt-dev'), MQTT_ONLINE, { qos: 1, retain: true });
      // A marker round trip through the broker: anything retained for the device has arrived by then.
      await device.publishAsync(reportedTopic(REGION, 'nobody'), 'x', { qos: 1 }).catch(() => undefined);
      for (let i = 0; i < 200 && region.status().devices.offline > 0; i++) await new Promise((resolve) => setTimeout(resolve, 25));
      expect(region.status().devices.offline).toBe(0);
      const updatesBefore = region.status().updatesSent;
      await passes(2);
      // Hand-outs are counted in the pass itself; publishing follows them.
      expect(region.status().updatesSent).toBe(updatesBefore);
      expect(received).toEqual([]);

      await device.publishAsync(reportedTopic(REGION, 'mqtt-dev'), JSON.stringify({ deviceId: 'mqtt-dev', apps: { web: { version: '0.9.0', state: 'healthy' } } }), { qos: 1 });
      for (let i = 0; i < 200 && received.length === 0; i++) {
        await passes(1);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      expect(received).toHaveLength(1);
      expect(received[0]!.generation).toBe(1);
      expect(received[0]!.apps['web']?.version).toBe('1.0.0');
      expect(received[0]!.apps['db']?.version).toBe('5.0.0');
    } finally {
      await device.endAsync();
    }
  });
});
