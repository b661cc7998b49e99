import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MQTT_OFFLINE, MQTT_ONLINE, desiredTopic, mqttTopicAt, reportedTopic, statusTopic } from '../../../src/protocol/mqtt-topics.js';
import type { RegionClient } from '../../../src/agent/http/region-client.js';
import { MOSQUITTO, requireTool } from '../../support/requirements.js';
import { bridgeConfig, startMosquitto, type Mosquitto } from '../../support/mosquitto.js';
import { Registry } from 'prom-client';
import { ReportOrder } from '../../../src/region/report-order.js';
import { createSecurityMetrics } from '../../../src/region/security-metrics.js';
import { OBSERVER, REGION, REGION_USER, MqttRegion, brokerAccepts, connectRecorder, quietLog, regionAcl, until, type Recorder } from './mqtt-fixture.js';

const missing = await requireTool(MOSQUITTO);

/**
 * Site brokers whose bridges carry their topics under `cascade/<region>/sites/<site>/` at the region
 * broker (docs/mqtt.md, "Only a site's own desired states"): the region learns where each device is
 * from the topic its status or report came on, and publishes its desired state there only, so a site's
 * uplink and broker carry the desired states of its own devices, not the whole region's. Three real
 * Mosquitto processes (needs the mosquitto binary): the region broker and two site brokers.
 */
const SITES = ['site-1', 'site-2'] as const;
const bridgeUser = (site: string) => ({ username: `cascade-bridge-${site}`, password: `bridge-secret-${site}` });
/**
 * Speaks under site 1's prefix at the region broker as its bridge would (late statuses, strays). An account of
 * its own: the broker takes the username as client id, so the bridge's own account would take over the bridge.
 */
const REPLAY = { username: 'site-1-replay', password: 'replay-secret' };

let regionBroker: Mosquitto;
const siteBrokers = new Map<string, Mosquitto>();
let region: MqttRegion;

beforeAll(async () => {
  if (missing) return;
  const users: Record<string, string> = { [REGION_USER.username]: REGION_USER.password, [OBSERVER.username]: OBSERVER.password };
  let acl = regionAcl();
  for (const site of SITES) {
    users[bridgeUser(site).username] = bridgeUser(site).password;
    // Each bridge may use its own site's prefix only: one site cannot speak for another's devices.
    acl += `\nuser ${bridgeUser(site).username}\ntopic readwrite cascade/${REGION}/sites/${site}/#\n`;
  }
  users[REPLAY.username] = REPLAY.password;
  acl += `\nuser ${REPLAY.username}\ntopic readwrite cascade/${REGION}/sites/site-1/#\n`;
  regionBroker = await startMosquitto({ users, acl });
  for (const site of SITES) {
    siteBrokers.set(
      site,
      await startMosquitto({
        allowAnonymous: false,
        extraConfig: [`password_file ${regionBroker.passwordFile}`, `acl_file ${regionBroker.aclFile}`, ...bridgeConfig(`region-${site}`, regionBroker.port, bridgeUser(site), REGION, site)],
      }),
    );
  }
  region = await MqttRegion.start(regionBroker);
}, 60_000);

afterAll(async () => {
  if (missing) return;
  await region?.close();
  for (const broker of siteBrokers.values()) await broker.stop();
  await regionBroker?.stop();
});

const site = (name: string): Mosquitto => siteBrokers.get(name)!;

/** Enrols the device and waits until every broker accepts its credentials (they share the password file). */
async function enrollEverywhere(deviceId: string): Promise<RegionClient> {
  const client = await region.enroll(deviceId);
  for (const broker of siteBrokers.values()) {
    await broker.reload();
    await brokerAccepts(broker.url, deviceId, client.token!);
  }
  return client;
}

/** The device at a site broker: subscribed to its desired topic, retained `online` status, as the agent does. */
async function connectAt(siteName: string, client: RegionClient): Promise<Recorder> {
  const device = await connectRecorder(site(siteName).url, {
    username: client.deviceId,
    password: client.token!,
    clientId: client.deviceId,
    will: { topic: statusTopic(REGION, client.deviceId), payload: Buffer.from(MQTT_OFFLINE), qos: 1, retain: true },
  });
  await device.client.subscribeAsync(desiredTopic(REGION, client.deviceId), { qos: 1 });
  await device.client.publishAsync(statusTopic(REGION, client.deviceId), MQTT_ONLINE, { qos: 1, retain: true });
  return device;
}

/** The retained messages a fresh subscriber to `filter` gets at `url`, read until a marker of our own comes back. */
async function retainedAt(url: string, filter: string): Promise<Map<string, string>> {
  const reader = await connectRecorder(url, { ...OBSERVER, clientId: `observer-${Math.random().toString(36).slice(2)}` });
  try {
    await reader.client.subscribeAsync(filter, { qos: 1 });
    // Retained messages arrive right after the subscription is granted; a short settle is enough on a local broker.
    await new Promise((resolve) => setTimeout(resolve, 300));
    return new Map(reader.messages.filter((m) => m.retain && m.payload !== '').map((m) => [m.topic, m.payload]));
  } finally {
    await reader.close();
  }
}

/** Like `until`, for a condition that has to ask a broker. */
async function untilAsync(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.skipIf(missing)('desired states go only to the site a device is at', () => {
  it("publishes to the device's site prefix only; the other site and the device topics at the region broker get nothing", async () => {
    const client = await enrollEverywhere('dev-s1');
    const device = await connectAt('site-1', client);
    try {
      await device.client.publishAsync(reportedTopic(REGION, 'dev-s1'), JSON.stringify({ deviceId: 'dev-s1', apps: {} }), { qos: 1 });
      await until(() => region.transport.stats().devicesAtSites === 1, 10_000, 'the region to learn the site of dev-s1');
      expect(await region.handOut(['dev-s1'], { web: { version: '1.0.0', deployment: 'web' } })).toBe(1);
      await until(() => device.messages.some((m) => m.topic === desiredTopic(REGION, 'dev-s1')), 10_000, 'the desired state at site 1');

      const atRegion = await retainedAt(regionBroker.url, `cascade/${REGION}/#`);
      expect([...atRegion.keys()].filter((t) => t.endsWith('/desired'))).toEqual([mqttTopicAt(REGION, 'site-1', 'dev-s1', 'desired')]);
      expect((await retainedAt(site('site-1').url, `cascade/${REGION}/+/desired`)).has(desiredTopic(REGION, 'dev-s1'))).toBe(true);
      expect((await retainedAt(site('site-2').url, `cascade/${REGION}/+/desired`)).size).toBe(0);
    } finally {
      await device.close();
    }
  });

  it('follows a device to another site: published there without a new pass, cleared where it was', async () => {
    const client = await enrollEverywhere('dev-mover');
    const first = await connectAt('site-1', client);
    await first.client.publishAsync(reportedTopic(REGION, 'dev-mover'), JSON.stringify({ deviceId: 'dev-mover', apps: {} }), { qos: 1 });
    await until(() => region.transport.stats().devicesAtSites === 2, 10_000, 'the region to learn the site of dev-mover');
    await region.handOut(['dev-mover'], { web: { version: '2.0.0', deployment: 'web' } });
    await until(() => first.messages.some((m) => m.topic === desiredTopic(REGION, 'dev-mover')), 10_000, 'the desired state at site 1');
    const publishedBefore = region.transport.published();
    // Gone from site 1 (its will says offline there), it connects to site 2 and only says it is online.
    await first.client.endAsync(true);
    const second = await connectAt('site-2', client);
    try {
      await until(() => second.messages.some((m) => m.topic === desiredTopic(REGION, 'dev-mover') && JSON.parse(m.payload).apps.web.version === '2.0.0'), 10_000, 'the desired state at site 2');
      await untilAsync(async () => !(await retainedAt(site('site-1').url, desiredTopic(REGION, 'dev-mover'))).size, 10_000, 'the old desired state cleared at site 1');
      expect(region.transport.published()).toBe(publishedBefore + 1);
      const atRegion = await retainedAt(regionBroker.url, `cascade/${REGION}/sites/+/dev-mover/desired`);
      expect([...atRegion.keys()]).toEqual([mqttTopicAt(REGION, 'site-2', 'dev-mover', 'desired')]);
      expect(region.transport.isConnected('dev-mover')).toBe(true);
    } finally {
      await second.close();
    }
  });

  it("an old site's late statuses neither take a device back for good, nor clear its copy where it is, nor mark it offline", async () => {
    const client = await enrollEverywhere('dev-late');
    const device = await connectAt('site-2', client);
    const bridge1 = await mqtt.connectAsync(regionBroker.url, { protocolVersion: 4, ...REPLAY, clientId: REPLAY.username, reconnectPeriod: 0 });
    try {
      await device.client.publishAsync(reportedTopic(REGION, 'dev-late'), JSON.stringify({ deviceId: 'dev-late', apps: {} }), { qos: 1 });
      await region.handOut(['dev-late'], { web: { version: '3.0.0', deployment: 'web' } });
      await until(() => device.messages.some((m) => m.topic === desiredTopic(REGION, 'dev-late')), 10_000, 'the desired state at site 2');
      const moves = region.transport.stats().moves;
      // Site 1's broker had not noticed the device leave: its retained `online` arrives late, then its will.
      const at1 = mqttTopicAt(REGION, 'site-1', 'dev-late', 'status');
      await bridge1.publishAsync(at1, MQTT_ONLINE, { qos: 1, retain: true });
      await until(() => region.transport.stats().moves === moves + 1, 10_000, 'the late online status');
      // Meanwhile the copy at site 2, where the device says it is online too, is kept: a reconnect there finds it.
      await untilAsync(async () => (await retainedAt(site('site-1').url, desiredTopic(REGION, 'dev-late'))).size === 1, 10_000, 'the desired state at site 1');
      expect((await retainedAt(site('site-2').url, desiredTopic(REGION, 'dev-late'))).size).toBe(1);
      await bridge1.publishAsync(at1, MQTT_OFFLINE, { qos: 1, retain: true });
      await until(() => region.transport.stats().moves === moves + 2, 10_000, 'the will at site 1');
      expect(region.transport.isConnected('dev-late')).toBe(true);
      // Back at site 2, where the device still is: its desired state is there again.
      await untilAsync(async () => (await retainedAt(site('site-2').url, desiredTopic(REGION, 'dev-late'))).size === 1, 10_000, 'the desired state at site 2 again');
      expect((await retainedAt(site('site-1').url, desiredTopic(REGION, 'dev-late'))).size).toBe(0);
    } finally {
      await bridge1.endAsync(true);
      await device.close();
    }
  });

  it('a status from a device that is not enrolled, under any site, leaves no trace in the region', async () => {
    await region.enroll('dev-marker');
    const before = region.transport.stats();
    const bridge1 = await mqtt.connectAsync(regionBroker.url, { protocolVersion: 4, ...REPLAY, clientId: REPLAY.username, reconnectPeriod: 0 });
    try {
      for (let i = 0; i < 50; i++) await bridge1.publishAsync(mqttTopicAt(REGION, 'site-1', `stray-${i}`, 'status'), MQTT_ONLINE, { qos: 1 });
      // An empty site level is no site.
      await bridge1.publishAsync(`cascade/${REGION}/sites//dev-marker/status`, MQTT_ONLINE, { qos: 1 });
      // Then one from an enrolled device, to know the ones before were handled (one connection delivers in order).
      await bridge1.publishAsync(mqttTopicAt(REGION, 'site-1', 'dev-marker', 'status'), MQTT_ONLINE, { qos: 1, retain: true });
      await until(() => region.transport.isConnected('dev-marker'), 10_000, 'the marker status');
      const after = region.transport.stats();
      expect(after.devicesAtSites).toBe(before.devicesAtSites + 1);
      expect(after.devicesOnline).toBe(before.devicesOnline + 1);
      expect(region.transport.isConnected('stray-0')).toBe(false);
    } finally {
      await bridge1.endAsync(true);
    }
  });

  it("a replayed report, or one naming another device, under another site's prefix does not move the device there", async () => {
    // The region's report order (report-order.ts), as compose.ts gives the transport.
    await region.transport.close();
    region.transport = await region.startTransport({ reportOrder: new ReportOrder(region.store, createSecurityMetrics(new Registry()), quietLog) });
    const client = await enrollEverywhere('dev-replayed');
    const device = await connectAt('site-2', client);
    const replay = await mqtt.connectAsync(regionBroker.url, { protocolVersion: 4, ...REPLAY, clientId: REPLAY.username, reconnectPeriod: 0 });
    try {
      const report = JSON.stringify({ deviceId: 'dev-replayed', apps: {}, seq: 7 });
      await device.client.publishAsync(reportedTopic(REGION, 'dev-replayed'), report, { qos: 1 });
      await region.handOut(['dev-replayed'], { web: { version: '4.0.0', deployment: 'web' } });
      await until(() => device.messages.some((m) => m.topic === desiredTopic(REGION, 'dev-replayed')), 10_000, 'the desired state at site 2');
      const before = region.transport.stats();
      // The same report again, and a report naming another device, both under site 1's prefix.
      await replay.publishAsync(mqttTopicAt(REGION, 'site-1', 'dev-replayed', 'reported'), report, { qos: 1 });
      await replay.publishAsync(mqttTopicAt(REGION, 'site-1', 'dev-s1', 'reported'), report, { qos: 1 });
      // Then the device's own next report at site 2, to know the ones before were handled.
      await device.client.publishAsync(reportedTopic(REGION, 'dev-replayed'), JSON.stringify({ deviceId: 'dev-replayed', apps: {}, seq: 8 }), { qos: 1 });
      await until(() => region.transport.stats().reportsRecorded === before.reportsRecorded + 1, 10_000, 'the next report');
      const after = region.transport.stats();
      expect(after.moves).toBe(before.moves);
      expect(after.dropped.identityMismatch).toBe(before.dropped.identityMismatch + 1);
      expect((await retainedAt(site('site-1').url, desiredTopic(REGION, 'dev-replayed'))).size).toBe(0);
      expect((await retainedAt(site('site-2').url, desiredTopic(REGION, 'dev-replayed'))).size).toBe(1);
    } finally {
      await replay.endAsync(true);
      await device.close();
    }
  });

  it('after a restart, knows every site again from the retained statuses and desired states, and publishes nothing', async () => {
    const before = region.transport.stats().devicesAtSites;
    await region.transport.close();
    region.transport = await region.startTransport();
    expect(region.transport.stats().devicesAtSites).toBe(before);
    expect(region.transport.published()).toBe(0);
    expect(region.transport.stats().cleared).toBe(0);
  });
});
