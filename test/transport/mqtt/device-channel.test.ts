import { readFileSync, writeFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MemoryAgentState } from '../../../src/agent/agent-state.js';
import { runDeviceLoop, type DeviceEvent } from '../../../src/agent/device-loop.js';
import { SimulatedRuntime } from '../../../src/agent/runtime-simulated.js';
import { RegionClient, RegionHttpError } from '../../../src/agent/http/region-client.js';
import { MqttDeviceChannel } from '../../../src/agent/mqtt/device-channel.js';
import type { Mosquitto } from '../../support/mosquitto.js';
import { MOSQUITTO, requireTool } from '../../support/requirements.js';
import { ENROLLMENT_TOKEN, MqttRegion, OBSERVER, REGION, connectRecorder, quietLog, resetBroker, startAclBroker, until } from './mqtt-fixture.js';

/** Every test here runs against a private Mosquitto (its own port, users and ACL). */
const missing = await requireTool(MOSQUITTO);

const web = (version: string) => ({ web: { version, deployment: 'web-all' } });

let broker: Mosquitto;
let region: MqttRegion;
const channels: MqttDeviceChannel[] = [];

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
});
afterEach(async () => {
  if (missing) return;
  for (const channel of channels.splice(0)) await channel.close();
  await region.close();
  await resetBroker(broker.url);
});

/** Waits until the broker has re-read its password file and refuses this user. */
async function brokerRefuses(url: string, username: string, password: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      const probe = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, username, password });
      await probe.endAsync(true);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the broker still accepts ${username}`);
}

function channelFor(client: RegionClient, extra: Partial<ConstructorParameters<typeof MqttDeviceChannel>[0]> = {}): MqttDeviceChannel {
  const channel = new MqttDeviceChannel({ url: broker.url, client, log: quietLog, ...extra });
  channels.push(channel);
  return channel;
}

describe.skipIf(missing)('MqttDeviceChannel', () => {
  it('gets the retained desired state at once, waits for the next change, and times out with 304', async () => {
    const client = await region.enroll('dev-a');
    await region.handOut(['dev-a'], web('1.0.0'));
    const channel = channelFor(client);

    const first = await channel.getDesired(null, 5);
    expect(first).toMatchObject({ status: 200, etag: '"1"', body: { device: 'dev-a', region: REGION, generation: 1, apps: { web: { version: '1.0.0' } } } });
    const http = await client.getDesired(null, 0);
    expect(first.status === 200 && first.body).toEqual(http.status === 200 && http.body);

    // Nothing new: the wait ends with 304, as an HTTP long poll would.
    expect(await channel.getDesired('"1"', 0.2)).toEqual({ status: 304 });

    // A change arrives while the device waits.
    const waiting = channel.getDesired('"1"', 30);
    await region.handOut(['dev-a'], web('2.0.0'));
    expect(await waiting).toMatchObject({ status: 200, etag: '"2"', body: { apps: { web: { version: '2.0.0' } } } });
  });

  it('publishes reports with the device id, and the region records them', async () => {
    const client = await region.enroll('dev-a');
    const observer = await connectRecorder(broker.url, { ...OBSERVER, clientId: OBSERVER.username });
    await observer.client.subscribeAsync(`cascade/${REGION}/+/reported`, { qos: 1 });
    const channel = channelFor(client);
    await channel.report({ apps: { web: { version: '1.0.0', state: 'healthy' } }, labels: { ring: 'beta' } });
    await until(() => region.reports.includes('dev-a'), 10_000, 'the report');
    expect(region.store.getDevice('dev-a')).toMatchObject({ labels: { ring: 'beta' }, apps: { web: { version: '1.0.0', state: 'healthy' } } });
    await until(() => observer.messages.length === 1, 10_000, 'the observer');
    expect(JSON.parse(observer.messages[0]!.payload)).toEqual({ deviceId: 'dev-a', apps: { web: { version: '1.0.0', state: 'healthy' } }, labels: { ring: 'beta' } });
    await observer.close();
  });

  it('a token the region no longer accepts surfaces as device-token-invalid, so the device loop enrols again', async () => {
    const client = await region.enroll('dev-a');
    const stale = new RegionClient({ regionUrl: region.url, deviceId: 'dev-a', token: client.token });
    await region.enroll('dev-a'); // a newer enrolment replaces the token
    const channel = channelFor(stale);
    const err = await channel.getDesired(null, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegionHttpError);
    expect((err as RegionHttpError).code).toBe('device-token-invalid');
  });

  it('credentials the broker refuses while the region accepts the token: retryable, then a new enrolment', async () => {
    const client = await region.enroll('dev-a');
    // The broker loses the device's entry (e.g. it enrolled before the region gave devices MQTT credentials).
    writeFileSync(broker.passwordFile, readFileSync(broker.passwordFile, 'utf8').replace(/^dev-a:.*\n/m, ''));
    broker.reload();
    await brokerRefuses(broker.url, 'dev-a', client.token!);
    let now = 0;
    const channel = channelFor(client, { reenrollAfterMs: 60_000, refusalGraceMs: 0, clock: () => now });
    const refusal = async () => (await channel.report({ apps: {} }).catch((e: unknown) => e)) as Error & { code?: string };
    const first = await refusal();
    expect(first.code).toBe('mqtt-not-authorized');
    expect(first.message).toMatch(/refused its credentials .*retrying/);
    now = 61_000;
    const second = await refusal();
    expect(second).toBeInstanceOf(RegionHttpError);
    expect(second.code).toBe('device-token-invalid');
    expect(second.message).toMatch(/refused its credentials for 61 s although the region accepts its token; enrolling again/);
  });
});

describe.skipIf(missing)('presence', () => {
  it('a connected device is online for the region until it disconnects or vanishes (its will)', async () => {
    const client = await region.enroll('dev-a');
    const channel = channelFor(client);
    await channel.report({ apps: {} });
    await until(() => region.transport.isConnected('dev-a'), 10_000, 'dev-a online');
    await channel.close();
    await until(() => !region.transport.isConnected('dev-a'), 10_000, 'dev-a offline after closing');

    // A device that vanishes without a word: the broker publishes its will.
    const b = await region.enroll('dev-b');
    const vanishing = channelFor(b);
    await vanishing.report({ apps: {} });
    await until(() => region.transport.isConnected('dev-b'), 10_000, 'dev-b online');
    const session = (vanishing as unknown as { session: { client: { stream: { destroy(): void }; options: { reconnectPeriod: number } } } }).session;
    session.client.options.reconnectPeriod = 0;
    session.client.stream.destroy();
    await until(() => !region.transport.isConnected('dev-b'), 10_000, 'dev-b offline by its will');
    expect(region.transport.stats().devicesOnline).toBe(0);
  });
});

describe.skipIf(missing)('the device loop over MQTT', () => {
  it('enrols over HTTP, then reports and takes its desired state over MQTT until it converges', async () => {
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'dev-a' });
    const channel = channelFor(client);
    const state = new MemoryAgentState({ installed: { web: { version: '1.0.0' } } });
    const events: DeviceEvent[] = [];
    const stop = new AbortController();
    const loop = runDeviceLoop(
      { client, channel, labels: { ring: 'beta' }, enrollmentToken: ENROLLMENT_TOKEN, runtime: new SimulatedRuntime({ applyMs: 5 }), state, log: quietLog, waitSeconds: 30, backoff: { initialMs: 20, maxMs: 200 }, onEvent: (e) => events.push(e) },
      stop.signal,
    );
    await until(() => region.store.getDevice('dev-a')?.apps['web']?.version === '1.0.0', 20_000, 'first report over MQTT');
    const reportsBefore = region.transport.stats().reportsRecorded;
    expect(reportsBefore).toBeGreaterThanOrEqual(1);

    await region.handOut(['dev-a'], web('2.0.0'));
    await until(() => region.store.getDevice('dev-a')?.apps['web']?.version === '2.0.0' && region.store.getDevice('dev-a')?.apps['web']?.state === 'healthy', 20_000, 'convergence');
    expect(state.peek().installed['web']?.version).toBe('2.0.0');
    // installing + healthy, both over MQTT
    expect(region.transport.stats().reportsRecorded - reportsBefore).toBe(2);
    expect(events.filter((e) => e.type === 'applied')).toEqual([{ type: 'applied', app: 'web', version: '2.0.0', from: '1.0.0' }]);
    stop.abort();
    await loop;
  });
});
