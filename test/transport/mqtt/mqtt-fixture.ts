import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { expect } from 'vitest';
import type { DeviceDesired } from '../../../src/core/types.js';
import { RegionClient } from '../../../src/agent/http/region-client.js';
import { DesiredWatchers } from '../../../src/region/routes/desired-watchers.js';
import { desiredResponse } from '../../../src/region/desired-document.js';
import { registerDeviceApi } from '../../../src/region/routes/device-routes.js';
import { createRegionHttpServer } from '../../../src/http/http-server.js';
import { SqliteStateStore } from '../../../src/storage/region-state-store.js';
import { MosquittoPasswordFile } from '../../../src/region/mqtt/mosquitto-password-file.js';
import { startMqttRegionTransport, type MqttRegionTransport, type MqttRegionTransportOptions } from '../../../src/region/mqtt/region-transport.js';
import { startMosquitto, type Mosquitto, type MosquittoOptions } from '../../support/mosquitto.js';

export const REGION = 'test-region';
export const ENROLLMENT_TOKEN = 'mqtt-fixture-enrolment';
export const REGION_USER = { username: 'cascade-region', password: 'region-secret' };
/** Reads every topic, to watch what the region publishes. */
export const OBSERVER = { username: 'observer', password: 'observer-secret' };
/** A broker account that is no device of the region: the ACL patterns give it topics of its own. */
export const GHOST = { username: 'ghost', password: 'ghost-secret' };

/** The broker ACL docs/mqtt.md recommends: the region owns its subtree, each device its own two topics. */
export function regionAcl(region = REGION): string {
  return [
    `user ${REGION_USER.username}`,
    `topic readwrite cascade/${region}/#`,
    '',
    `user ${OBSERVER.username}`,
    'topic read cascade/#',
    '',
    '# every other user is a device: its username is its device id',
    'pattern read cascade/+/%u/desired',
    'pattern write cascade/+/%u/reported',
    'pattern write cascade/+/%u/status',
    '',
  ].join('\n');
}

/** A private Mosquitto with the region's and the observer's accounts and the per-device ACL. */
export function startAclBroker(extra: MosquittoOptions = {}): Promise<Mosquitto> {
  return startMosquitto({
    users: { [REGION_USER.username]: REGION_USER.password, [OBSERVER.username]: OBSERVER.password, [GHOST.username]: GHOST.password },
    acl: regionAcl(),
    ...extra,
  });
}

export const quietLog = pino({ level: process.env['CASCADE_TEST_LOG'] ?? 'silent' });

/**
 * A region without a reconciler, as in test/agent/region-fixture.ts, with MQTT beside HTTP: the
 * device API (enrolment writes the device's MQTT password into the broker's password file) and the
 * MQTT transport. Tests play the reconciler: `handOut` changes the store and publishes.
 */
export class MqttRegion {
  readonly reports: string[] = [];
  app!: FastifyInstance;
  url = '';
  transport!: MqttRegionTransport;
  passwords!: MosquittoPasswordFile;
  private revision = 0;
  private readonly resolved = new Map<string, DeviceDesired>();

  private constructor(
    readonly dir: string,
    readonly store: SqliteStateStore,
    readonly broker: Mosquitto,
    /** CA of the broker's certificate, for mqtts://. */
    readonly caFile?: string,
    /** How long the password file collects enrolments before one write and reload. */
    readonly batchMs = 20,
  ) {}

  static async start(broker: Mosquitto, dir = mkdtempSync(join(tmpdir(), 'cascade-mqtt-region-')), opts: { caFile?: string; batchMs?: number } = {}): Promise<MqttRegion> {
    const region = new MqttRegion(dir, SqliteStateStore.open(join(dir, 'data')), broker, opts.caFile, opts.batchMs);
    await region.listen();
    return region;
  }

  private async listen(): Promise<void> {
    const { store, broker } = this;
    this.passwords = MosquittoPasswordFile.open({ path: broker.passwordFile, region: REGION, reload: () => broker.reload(), log: quietLog, batchMs: this.batchMs });
    this.app = createRegionHttpServer({ log: false });
    registerDeviceApi(this.app, {
      store,
      region: REGION,
      enrollmentToken: ENROLLMENT_TOKEN,
      watchers: new DesiredWatchers((id) => store.getHanded(id)?.generation ?? 0),
      clock: Date.now,
      onTokenIssued: (id, token) => this.passwords.setDevicePassword(id, token),
      onReport: (id) => this.reports.push(id),
    });
    this.url = await this.app.listen({ host: '127.0.0.1', port: 0 });
    this.transport = await this.startTransport();
  }

  /** The transport, with `extra` options (a report order, say) beside the fixture's own. */
  startTransport(extra: Partial<MqttRegionTransportOptions> = {}): Promise<MqttRegionTransport> {
    return startMqttRegionTransport({
      url: this.broker.url,
      ...REGION_USER,
      caFile: this.caFile,
      region: REGION,
      store: this.store,
      log: quietLog,
      clock: Date.now,
      desiredFor: (id) => desiredResponse(this.store, REGION, id),
      onReport: (id) => this.reports.push(id),
      ...extra,
    });
  }

  /** Enrols a device over HTTP and waits until the broker accepts its credentials. */
  async enroll(deviceId: string): Promise<RegionClient> {
    const client = new RegionClient({ regionUrl: this.url, deviceId });
    await client.enroll({}, ENROLLMENT_TOKEN);
    this.passwords.flush();
    await brokerAccepts(this.broker.url, deviceId, client.token!, this.caFile ? { ca: readFileSync(this.caFile) } : {});
    return client;
  }

  /** Connects as the device (username = device id, password = its token), recording what arrives. */
  async connectDevice(client: RegionClient): Promise<Recorder> {
    return connectRecorder(this.broker.url, { username: client.deviceId, password: client.token!, clientId: client.deviceId, ...(this.caFile ? { ca: readFileSync(this.caFile) } : {}) });
  }

  /** Hands every listed device `apps` as a new revision and publishes; resolves with the messages sent. */
  handOut(deviceIds: string[], apps: DeviceDesired): Promise<number> {
    const changes = this.record(deviceIds, apps);
    return this.transport.publishDesired(changes.keys());
  }

  /** Changes the store only, as a pass whose publication was lost. */
  record(deviceIds: string[], apps: DeviceDesired): Map<string, DeviceDesired> {
    this.revision++;
    const revision = `rev${this.revision}`;
    const changes = new Map(deviceIds.map((id) => [id, apps]));
    for (const [id, desired] of changes) this.resolved.set(id, desired);
    this.store.recordApplied(revision, this.resolved, {}, Date.now());
    this.store.handOut(changes, revision, Date.now());
    return changes;
  }

  async close(): Promise<void> {
    await this.transport.close();
    this.passwords.close();
    await this.app.close();
    this.store.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A raw MQTT 5 client that records every message it gets. */
export interface Recorder {
  client: MqttClient;
  messages: Array<{ topic: string; payload: string; retain: boolean; qos: number }>;
  close(): Promise<void>;
}

export async function connectRecorder(url: string, options: IClientOptions): Promise<Recorder> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, ...options });
  const messages: Recorder['messages'] = [];
  client.on('message', (topic, payload, packet) => messages.push({ topic, payload: payload.toString('utf8'), retain: packet.retain, qos: packet.qos }));
  return { client, messages, close: () => client.endAsync(true) };
}

/**
 * Deletes every retained desired state of the region and its persistent session, as the region's
 * account (connecting with a clean start ends the session): the next test starts from scratch.
 */
export async function resetBroker(url: string, region = REGION): Promise<void> {
  const cleaner = await connectRecorder(url, { ...REGION_USER, clientId: REGION_USER.username, clean: true });
  const marker = `cascade/${region}/$sync`;
  await cleaner.client.subscribeAsync({ [`cascade/${region}/+/desired`]: { qos: 1 }, [marker]: { qos: 1 } });
  await cleaner.client.publishAsync(marker, 'reset', { qos: 1 });
  await until(() => cleaner.messages.some((m) => m.topic === marker), 10_000, 'the reset marker');
  for (const { topic, payload } of cleaner.messages) {
    if (topic !== marker && payload !== '') await cleaner.client.publishAsync(topic, '', { qos: 1, retain: true });
  }
  await cleaner.client.endAsync(false, { properties: { sessionExpiryInterval: 0 } });
}

/** Waits until the broker has re-read its password file and lets this user connect. */
export async function brokerAccepts(url: string, username: string, password: string, extra: IClientOptions = {}, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const client = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, username, password, clientId: `${username}-probe`, ...extra });
      await client.endAsync(true);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** Polls `condition` until it holds (or fails the test after `timeoutMs`). */
export async function until(condition: () => boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  expect(condition(), `timed out waiting for ${what}`).toBe(true);
}
