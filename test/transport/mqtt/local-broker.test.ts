import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegionClient } from '../../../src/agent/http/region-client.js';
import { DesiredWatchers } from '../../../src/region/routes/desired-watchers.js';
import { desiredResponse } from '../../../src/region/desired-document.js';
import { registerDeviceApi } from '../../../src/region/routes/device-routes.js';
import { createRegionHttpServer } from '../../../src/http/http-server.js';
import { SqliteStateStore } from '../../../src/storage/region-state-store.js';
import { MqttDeviceChannel } from '../../../src/agent/mqtt/device-channel.js';
import { startMqttRegionTransport, type MqttRegionTransport } from '../../../src/region/mqtt/region-transport.js';
import { BROKER_1883, requireTool } from '../../support/requirements.js';
import { connectRecorder, quietLog, until } from './mqtt-fixture.js';

/**
 * Against the machine's own broker on 127.0.0.1:1883 (.ci/run starts one when none runs): an open
 * broker, no accounts or ACL, as in a lab. A region name of its own keeps this run apart from others.
 */
const URL_1883 = 'mqtt://127.0.0.1:1883';
const missing = await requireTool(BROKER_1883);
const region = `ci-${randomBytes(6).toString('hex')}`;

let dir: string;
let store: SqliteStateStore;
let app: FastifyInstance;
let regionUrl: string;
let transport: MqttRegionTransport;
const reports: string[] = [];

describe.skipIf(missing)('MQTT through the broker on 127.0.0.1:1883', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cascade-mqtt-1883-'));
    store = SqliteStateStore.open(join(dir, 'data'));
    app = createRegionHttpServer({ log: false });
    registerDeviceApi(app, { store, region, enrollmentToken: null, watchers: new DesiredWatchers(), clock: Date.now });
    regionUrl = await app.listen({ host: '127.0.0.1', port: 0 });
    transport = await startMqttRegionTransport({
      url: URL_1883,
      region,
      store,
      log: quietLog,
      clock: Date.now,
      desiredFor: (id) => desiredResponse(store, region, id),
      onReport: (id) => reports.push(id),
      // The machine's broker keeps sessions on disk: let this one go soon after the test.
      sessionExpirySeconds: 5,
    });
  });
  afterAll(async () => {
    // Leave no retained messages behind on the shared broker.
    const cleaner = await connectRecorder(URL_1883, {});
    for (const id of ['dev-1', 'dev-2']) await cleaner.client.publishAsync(`cascade/${region}/${id}/desired`, '', { qos: 1, retain: true });
    await cleaner.close();
    await transport?.close();
    await app?.close();
    store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('hands out desired state and takes reports over MQTT', async () => {
    const clients = [new RegionClient({ regionUrl, deviceId: 'dev-1' }), new RegionClient({ regionUrl, deviceId: 'dev-2' })];
    for (const client of clients) await client.enroll({}, null);
    const changes = new Map(clients.map((c) => [c.deviceId, { web: { version: '1.0.0', deployment: 'web' } }]));
    store.recordApplied('rev1', changes, {}, Date.now());
    store.handOut(changes, 'rev1', Date.now());
    expect(await transport.publishDesired(changes.keys())).toBe(2);
    expect(await transport.publishDesired(changes.keys())).toBe(0);

    for (const client of clients) {
      const channel = new MqttDeviceChannel({ url: URL_1883, client, log: quietLog });
      try {
        expect(await channel.getDesired(null, 5)).toMatchObject({ status: 200, body: { device: client.deviceId, region, generation: 1 } });
        await channel.report({ apps: { web: { version: '1.0.0', state: 'healthy' } } });
      } finally {
        await channel.close();
      }
    }
    await until(() => reports.length === 2, 10_000, 'both reports');
    expect(store.getDevice('dev-2')!.apps).toEqual({ web: { version: '1.0.0', state: 'healthy' } });
  });
});
