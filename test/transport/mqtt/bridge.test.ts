import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MOSQUITTO, requireTool } from '../../support/requirements.js';
import { RegionClient } from '../../../src/agent/http/region-client.js';
import { MQTT_ONLINE, desiredTopic, reportedTopic, statusTopic } from '../../../src/protocol/mqtt-topics.js';
import type { DesiredResponse } from '../../../src/protocol/types.js';
import { startRegion, type RunningRegion } from '../../../src/region/compose.js';
import { makeLocalRepo } from '../../support/git-fixtures.js';
import { bridgeConfig, startMosquitto, type Mosquitto } from '../../support/mosquitto.js';
import { smallFleet } from '../../support/small-fleet.js';
import { REGION, REGION_USER, regionAcl } from './mqtt-fixture.js';

const missing = await requireTool(MOSQUITTO);

/**
 * Gateway aggregation (issue 11, deliverable 5; docs/mqtt.md "Site brokers"): a device connects to its
 * site broker, which is bridged to the region broker the region uses. Needs the mosquitto binary.
 * The site broker checks the device's credentials (the region's password file, shared) and ACL; the
 * bridge carries reports and statuses up and retained desired states down.
 */
const TOKEN = 'bridge-enrolment';
const BRIDGE_USER = { username: 'cascade-bridge-site-1', password: 'bridge-secret' };
let root: string;
let regionBroker: Mosquitto;
let siteBroker: Mosquitto;
let region: RunningRegion;

beforeAll(async () => {
  if (missing) return;
  root = await mkdtemp(join(tmpdir(), 'cascade-bridge-'));
  regionBroker = await startMosquitto({
    users: { [REGION_USER.username]: REGION_USER.password, [BRIDGE_USER.username]: BRIDGE_USER.password },
    acl: `${regionAcl()}\nuser ${BRIDGE_USER.username}\ntopic readwrite cascade/${REGION}/#\n`,
  });
  // The site broker: no users of its own; the device credentials the region writes, the same ACL.
  siteBroker = await startMosquitto({
    allowAnonymous: false,
    extraConfig: [`password_file ${regionBroker.passwordFile}`, `acl_file ${regionBroker.aclFile}`, ...bridgeConfig('region', regionBroker.port, BRIDGE_USER, REGION)],
  });
  const repo = join(root, 'fleet');
  await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: null }));
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
    mqtt: { url: regionBroker.url, ...REGION_USER, passwordFile: regionBroker.passwordFile, brokerPidFile: `${regionBroker.pidFile},${siteBroker.pidFile}` },
  });
  await region.reconcileNow();
}, 60_000);

afterAll(async () => {
  if (missing) return;
  await region?.close();
  await siteBroker?.stop();
  await regionBroker?.stop();
  await rm(root, { recursive: true, force: true });
});

async function connectDevice(url: string, username: string, password: string): Promise<mqtt.MqttClient> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await mqtt.connectAsync(url, { protocolVersion: 5, username, password, clientId: username, reconnectPeriod: 0 });
    } catch (err) {
      // The broker re-reads the password file shortly after the enrolment.
      if (attempt > 100) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describe.skipIf(missing)('a device on a site broker bridged to the region broker', () => {
  it('reports through the bridge and receives its desired state from it; another device cannot read it', async () => {
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'site-dev' });
    const { token } = await client.enroll({}, TOKEN);
    const device = await connectDevice(siteBroker.url, 'site-dev', token);
    try {
      const received: DesiredResponse[] = [];
      device.on('message', (_topic, payload) => received.push(JSON.parse(payload.toString()) as DesiredResponse));
      await device.subscribeAsync(desiredTopic(REGION, 'site-dev'), { qos: 1 });
      await device.publishAsync(statusTopic(REGION, 'site-dev'), MQTT_ONLINE, { qos: 1, retain: true });
      await device.publishAsync(reportedTopic(REGION, 'site-dev'), JSON.stringify({ deviceId: 'site-dev', apps: { web: { version: '0.9.0', state: 'healthy' } } }), { qos: 1 });
      for (let i = 0; i < 400 && received.length === 0; i++) {
        await region.reconcileNow();
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      expect(received).toHaveLength(1);
      expect(received[0]!.apps['web']?.version).toBe('1.0.0');
      expect(region.status().devices.total).toBe(1);

      // Another enrolled device on the same site broker may not read site-dev's desired state.
      const other = new RegionClient({ regionUrl: region.url, deviceId: 'site-other' });
      const otherToken = (await other.enroll({}, TOKEN)).token;
      const intruder = await connectDevice(siteBroker.url, 'site-other', otherToken);
      try {
        const seen: string[] = [];
        intruder.on('message', (topic) => seen.push(topic));
        // Subscribing is granted, delivery is not: the retained state of site-dev would arrive first.
        await intruder.subscribeAsync(desiredTopic(REGION, 'site-dev'), { qos: 1 });
        await intruder.subscribeAsync(desiredTopic(REGION, 'site-other'), { qos: 1 });
        await intruder.publishAsync(reportedTopic(REGION, 'site-other'), JSON.stringify({ deviceId: 'site-other', apps: {} }), { qos: 1 });
        for (let i = 0; i < 400 && seen.length === 0; i++) {
          await region.reconcileNow();
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        expect(seen).toEqual([desiredTopic(REGION, 'site-other')]);
      } finally {
        await intruder.endAsync();
      }
      // A wrong password is refused at the site broker.
      await expect(mqtt.connectAsync(siteBroker.url, { protocolVersion: 5, username: 'site-dev', password: 'wrong', reconnectPeriod: 0 })).rejects.toThrow();
    } finally {
      await device.endAsync();
    }
  });
});
