import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredResponse } from '../../../src/protocol/types.js';
import type { MqttReport } from '../../../src/protocol/mqtt-topics.js';
import { startMqttRegionTransport } from '../../../src/region/mqtt/region-transport.js';
import type { Mosquitto } from '../../support/mosquitto.js';
import { MOSQUITTO, requireTool } from '../../support/requirements.js';
import { GHOST, MqttRegion, OBSERVER, REGION, REGION_USER, connectRecorder, quietLog, resetBroker, startAclBroker, until, type Recorder } from './mqtt-fixture.js';

/** Every test here runs against a private Mosquitto (its own port, users and ACL). */
const missing = await requireTool(MOSQUITTO);

const web = (version: string) => ({ web: { version, deployment: 'web-all' } });
const report = (deviceId: string, version: string): MqttReport => ({ deviceId, apps: { web: { version, state: 'healthy' } } });

let broker: Mosquitto;
let region: MqttRegion;
let observer: Recorder;

beforeAll(async () => {
  if (missing) return;
  broker = await startAclBroker();
});
afterAll(async () => {
  if (missing) return;
  await broker?.stop();
});
beforeEach(async () => {
  if (missing) return;
  region = await MqttRegion.start(broker);
  observer = await connectRecorder(broker.url, { ...OBSERVER, clientId: OBSERVER.username });
  await observer.client.subscribeAsync(`cascade/${REGION}/+/desired`, { qos: 1 });
});
afterEach(async () => {
  if (missing) return;
  await observer.close();
  await region.close();
  await resetBroker(broker.url);
});

function desiredMessages(): DesiredResponse[] {
  return observer.messages.filter((m) => m.topic.endsWith('/desired') && m.payload !== '').map((m) => JSON.parse(m.payload) as DesiredResponse);
}

describe.skipIf(missing)('the region publishes desired states over MQTT', () => {
  it('publishes retained, QoS 1, once per device whose state changed, and nothing when nothing changed', async () => {
    const devices = ['dev-a', 'dev-b', 'dev-c'];
    for (const id of devices) await region.enroll(id);

    expect(await region.handOut(devices, web('1.0.0'))).toBe(3);
    await until(() => desiredMessages().length === 3, 10_000, '3 desired states at the observer');
    expect(observer.messages.map((m) => m.qos)).toEqual([1, 1, 1]);
    expect(desiredMessages().map((d) => [d.device, d.generation, d.apps['web']?.version])).toEqual([
      ['dev-a', 1, '1.0.0'],
      ['dev-b', 1, '1.0.0'],
      ['dev-c', 1, '1.0.0'],
    ]);
    // The same ids again (a pass that changed nothing): nothing is sent.
    expect(await region.transport.publishDesired(devices)).toBe(0);
    // One device changes: one message.
    expect(await region.handOut(['dev-b'], web('2.0.0'))).toBe(1);
    expect(region.transport.published()).toBe(4);
    await until(() => desiredMessages().length === 4, 10_000, 'the 4th desired state');
    expect(desiredMessages()[3]).toMatchObject({ device: 'dev-b', region: REGION, generation: 2, apps: { web: { version: '2.0.0', deployment: 'web-all' } } });

    // A late subscriber gets the retained state of every device at once.
    const late = await connectRecorder(broker.url, { ...OBSERVER, clientId: OBSERVER.username });
    await late.client.subscribeAsync(`cascade/${REGION}/+/desired`, { qos: 1 });
    await until(() => late.messages.length === 3, 10_000, 'retained states');
    expect(late.messages.every((m) => m.retain)).toBe(true);
    await late.close();
  });

  it('a device gets its retained desired state the moment it subscribes, the same JSON as over HTTP', async () => {
    const client = await region.enroll('dev-a');
    await region.handOut(['dev-a'], web('3.1.0'));
    const device = await region.connectDevice(client);
    await device.client.subscribeAsync(`cascade/${REGION}/dev-a/desired`, { qos: 1 });
    await until(() => device.messages.length === 1, 10_000, 'retained desired state');
    const http = await client.getDesired(null, 0);
    expect(http.status === 200 && JSON.parse(device.messages[0]!.payload)).toEqual(http.status === 200 ? http.body : null);
    expect(device.messages[0]).toMatchObject({ retain: true, qos: 1 });
    await device.close();
  });

  it('a restarted region publishes only what changed while it was away', async () => {
    for (const id of ['dev-a', 'dev-b']) await region.enroll(id);
    expect(await region.handOut(['dev-a', 'dev-b'], web('1.0.0'))).toBe(2);
    await region.transport.close();

    // While the region is away a pass changes dev-b, and its publication is lost.
    region.record(['dev-b'], web('1.1.0'));
    region.transport = await region.startTransport();
    expect(region.transport.published()).toBe(1);
    await until(() => desiredMessages().length === 3, 10_000, 'the missed state');
    expect(desiredMessages()[2]).toMatchObject({ device: 'dev-b', generation: 2 });

    await region.transport.close();
    region.transport = await region.startTransport();
    expect(region.transport.published()).toBe(0);
  });
});

describe.skipIf(missing)('the region takes reports over MQTT', () => {
  it('records a report published on the device\'s own topic', async () => {
    const client = await region.enroll('dev-a');
    const device = await region.connectDevice(client);
    await device.client.publishAsync(`cascade/${REGION}/dev-a/reported`, JSON.stringify({ ...report('dev-a', '1.0.0'), labels: { ring: 'beta' } }), { qos: 1 });
    await until(() => region.reports.includes('dev-a'), 10_000, 'the report');
    expect(region.store.getDevice('dev-a')).toMatchObject({ labels: { ring: 'beta' }, apps: { web: { version: '1.0.0', state: 'healthy' } } });
    expect(region.transport.stats()).toMatchObject({ reportsRecorded: 1, dropped: { invalid: 0, identityMismatch: 0, unknownDevice: 0 } });
    await device.close();
  });

  it('keeps QoS 1 reports sent while the region restarts (persistent session)', async () => {
    const client = await region.enroll('dev-a');
    await region.transport.close();
    const device = await region.connectDevice(client);
    await device.client.publishAsync(`cascade/${REGION}/dev-a/reported`, JSON.stringify(report('dev-a', '4.0.0')), { qos: 1 });
    region.transport = await region.startTransport();
    await until(() => region.store.getDevice('dev-a')?.apps['web']?.version === '4.0.0', 10_000, 'the queued report');
    await device.close();
  });

  it('drops a report whose payload names another device than its topic, and counts it', async () => {
    const a = await region.connectDevice(await region.enroll('dev-a'));
    await region.enroll('dev-b');
    await a.client.publishAsync(`cascade/${REGION}/dev-a/reported`, JSON.stringify(report('dev-b', '6.6.6')), { qos: 1 });
    await a.client.publishAsync(`cascade/${REGION}/dev-a/reported`, JSON.stringify(report('dev-a', '1.0.0')), { qos: 1 });
    await until(() => region.reports.includes('dev-a'), 10_000, 'the honest report');
    expect(region.store.getDevice('dev-b')!.lastSeen).toBeNull();
    expect(region.store.getDevice('dev-b')!.apps).toEqual({});
    expect(region.transport.stats().dropped).toEqual({ invalid: 0, identityMismatch: 1, unknownDevice: 0 });
    await a.close();
  });

  it('drops reports that are not valid, and reports of devices not enrolled', async () => {
    const a = await region.connectDevice(await region.enroll('dev-a'));
    const topic = `cascade/${REGION}/dev-a/reported`;
    await a.client.publishAsync(topic, 'not json', { qos: 1 });
    await a.client.publishAsync(topic, JSON.stringify({ deviceId: 'dev-a', apps: { web: { version: '1', state: 'sleeping' } } }), { qos: 1 });
    await a.client.publishAsync(topic, JSON.stringify({ apps: {} }), { qos: 1 });
    await a.client.publishAsync(topic, JSON.stringify({ ...report('dev-a', '1.0.0'), labels: { 'bad key!': 'x' } }), { qos: 1 });
    // A broker account that never enrolled here, writing its own topic.
    const ghost = await connectRecorder(broker.url, { ...GHOST, clientId: GHOST.username });
    await ghost.client.publishAsync(`cascade/${REGION}/ghost/reported`, JSON.stringify(report('ghost', '1.0.0')), { qos: 1 });
    await ghost.close();
    await a.client.publishAsync(topic, JSON.stringify(report('dev-a', '2.0.0')), { qos: 1 });
    await until(() => region.reports.includes('dev-a'), 10_000, 'the valid report');
    expect(region.transport.stats().dropped).toEqual({ invalid: 4, identityMismatch: 0, unknownDevice: 1 });
    expect(region.store.getDevice('ghost')).toBeNull();
    await a.close();
  });
});

describe.skipIf(missing)('the broker ACL keeps each device to its own topics', () => {
  it('device A cannot read B\'s desired state', async () => {
    const a = await region.connectDevice(await region.enroll('dev-a'));
    await region.enroll('dev-b');
    await region.handOut(['dev-a', 'dev-b'], web('1.0.0'));
    // Mosquitto grants the subscription but delivers nothing the ACL forbids. A's own retained state,
    // subscribed after B's, arrives after anything B's subscription would have brought.
    await a.client.subscribeAsync(`cascade/${REGION}/dev-b/desired`, { qos: 1 });
    await a.client.subscribeAsync(`cascade/${REGION}/+/desired`, { qos: 1 });
    await a.client.subscribeAsync(`cascade/${REGION}/dev-a/desired`, { qos: 1 });
    await until(() => a.messages.length >= 2, 10_000, 'A\'s own desired state');
    expect(a.messages.map((m) => m.topic)).toEqual([`cascade/${REGION}/dev-a/desired`, `cascade/${REGION}/dev-a/desired`]);
    await a.close();
  });

  it('device A cannot publish B\'s report: the broker refuses it and the region never sees it', async () => {
    const a = await region.connectDevice(await region.enroll('dev-a'));
    await region.enroll('dev-b');
    await expect(a.client.publishAsync(`cascade/${REGION}/dev-b/reported`, JSON.stringify(report('dev-b', '6.6.6')), { qos: 1 })).rejects.toThrow(/Not authorized/);
    await a.client.publishAsync(`cascade/${REGION}/dev-a/reported`, JSON.stringify(report('dev-a', '1.0.0')), { qos: 1 });
    await until(() => region.reports.includes('dev-a'), 10_000, 'A\'s own report');
    expect(region.reports).toEqual(['dev-a']);
    expect(region.store.getDevice('dev-b')!.apps).toEqual({});
    expect(region.transport.stats().dropped).toEqual({ invalid: 0, identityMismatch: 0, unknownDevice: 0 });
    await a.close();
  });

  it('a device cannot connect with a wrong password or as another device, and an old token stops working on re-enrolment', async () => {
    const a = await region.enroll('dev-a');
    const b = await region.enroll('dev-b');
    await expect(connectRecorder(broker.url, { username: 'dev-a', password: b.token!, clientId: 'dev-a' })).rejects.toThrow(/Bad User Name or Password|Not authorized/i);
    const oldToken = a.token!;
    const again = await region.enroll('dev-a');
    expect(again.token).not.toBe(oldToken);
    await expect(connectRecorder(broker.url, { username: 'dev-a', password: oldToken, clientId: 'dev-a' })).rejects.toThrow(/Bad User Name or Password|Not authorized/i);
  });
});

describe.skipIf(missing)('startMqttRegionTransport', () => {
  it('fails startup with the reason when the broker refuses the region\'s credentials', async () => {
    await expect(
      startMqttRegionTransport({
        url: broker.url,
        username: REGION_USER.username,
        password: 'wrong',
        region: REGION,
        store: region.store,
        log: quietLog,
        clock: Date.now,
        desiredFor: () => {
          throw new Error('not called');
        },
        clientId: 'wrong-password',
      }),
    ).rejects.toThrow(/cannot connect to the MQTT broker mqtt:\/\/127\.0\.0\.1:\d+: .*check --mqtt-username and --mqtt-password/);
  });
});
