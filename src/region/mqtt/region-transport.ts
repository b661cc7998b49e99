import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { CascadeError } from '../../core/errors.js';
import type { AppReport, DeviceId } from '../../core/types.js';
import { DIRECT, MQTT_ONLINE, MQTT_QOS, deviceAtTopic, mqttTopicAt, regionSitesSubscription, regionSubscription, regionSyncTopic, type MqttLocation } from '../../protocol/mqtt-topics.js';
import { parseMqttReport } from '../../protocol/report-validator.js';
import type { DesiredResponse } from '../../protocol/types.js';
import { isValidDeviceId } from '../../protocol/validate.js';
import type { StateStore } from '../../reconciler/state-store.js';
import { brokerClientOptions, describeBroker, isAuthRefusal, type MqttBrokerOptions } from '../../protocol/mqtt-connection.js';
import type { MqttMetrics } from './mqtt-metrics.js';
import { InFlightLimiter } from './in-flight-limiter.js';
import { coalesceWrites, holdWritesPerRead } from './coalesce-writes.js';
import type { DesiredMessage } from '../desired-document.js';
import type { ReportOrder } from '../report-order.js';

export interface MqttRegionTransportOptions extends MqttBrokerOptions {
  region: string;
  store: StateStore;
  log: Logger;
  /** Epoch ms, stored with each report. */
  clock: () => number;
  /** The device's desired state as HTTP serves it (`GET /api/v1/devices/:id/desired`). */
  desiredFor: (deviceId: DeviceId) => DesiredResponse;
  /** The same, serialized once per distinct content (desired-document.ts DesiredDocuments); preferred when given. */
  desiredMessage?: (deviceId: DeviceId) => DesiredMessage;
  /** Called after a report was recorded, e.g. to run a pass. */
  onReport?: (deviceId: DeviceId) => void;
  /** Called when a device's retained status (online, offline) changes. */
  onPresence?: (deviceId: DeviceId) => void;
  /** Client id of the region's persistent session; `cascade-region-<region>` by default. */
  clientId?: string;
  /** How long the broker keeps the session (and queued reports) while the region is away. */
  sessionExpirySeconds?: number;
  /** How long the first connection may take before startup fails. */
  connectTimeoutMs?: number;
  /** How long to wait for the broker's retained desired states at each connection. */
  syncTimeoutMs?: number;
  /** Counters on the region's Prometheus registry. */
  metrics?: MqttMetrics;
  /** Drops replayed and overtaken reports (report-order.ts). */
  reportOrder?: ReportOrder;
}

/** Reports the region did not record, by reason. */
export interface DroppedReports {
  /** Not JSON, or not the shape of a report. */
  invalid: number;
  /** The payload names another device than the topic (the broker's ACL vouches for the topic). */
  identityMismatch: number;
  /** From a device that is not enrolled here, or was revoked. */
  unknownDevice: number;
}

export interface MqttRegionStats {
  /** Desired-state messages published since start. */
  published: number;
  reportsRecorded: number;
  dropped: DroppedReports;
  /** Connections made so far (1 = never reconnected). */
  connections: number;
  connected: boolean;
  /** Devices whose status is `online`. */
  devicesOnline: number;
  /** Devices the region reaches through a site's prefix (`cascade/<region>/sites/<site>/`), not the device topics. */
  devicesAtSites: number;
  /** Devices whose desired state moved from one location to another (a device that changed site), each time. */
  moves: number;
  /** Retained desired states cleared where a device no longer is. */
  cleared: number;
}

export interface MqttRegionTransport {
  /**
   * Publishes the desired state of each listed device whose generation differs from what the
   * broker holds for it: retained, QoS 1. Resolves with the number of messages sent once the
   * broker acknowledged them.
   */
  publishDesired(deviceIds: Iterable<DeviceId>): Promise<number>;
  /** Messages published since start. */
  published(): number;
  /** Is the device connected to the broker now (its retained status is `online`)? */
  isConnected(deviceId: DeviceId): boolean;
  stats(): MqttRegionStats;
  close(): Promise<void>;
}

const DAY_SECONDS = 24 * 60 * 60;
const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
const DEFAULT_SYNC_TIMEOUT_MS = 60_000;
/** The most QoS 1 messages MQTT allows in flight; the broker may ask for fewer in its CONNACK. */
const MAX_IN_FLIGHT = 65_535;
/** Distinct site names kept as one string each; past this many the table starts afresh (values stay valid). */
const MAX_SITE_NAMES = 4_096;

/**
 * The region's side of MQTT: one persistent session (clean start off, so reports sent while the
 * region restarts wait at the broker), subscribed to every device's `reported` topic; publishes
 * each device's desired state retained whenever its generation changes.
 *
 * At every connection it reads the retained desired states back from the broker and publishes only
 * those that differ from the store: nothing is published twice across restarts, and a broker that
 * lost its retained messages gets them again.
 *
 * Devices behind a site broker whose bridge maps their topics under `cascade/<region>/sites/<site>/`
 * (mqtt-topics.ts) are reached there: a device's location is where it last reported or said it
 * was online, and its desired state is published to that location only. When a device turns up at
 * another site its desired state is published there and cleared where it was. After a restart the
 * locations come back with the devices' retained statuses, or else from where their retained desired
 * states are.
 */
export async function startMqttRegionTransport(opts: MqttRegionTransportOptions): Promise<MqttRegionTransport> {
  const transport = new RegionTransport(opts);
  await transport.start();
  return transport;
}

class RegionTransport implements MqttRegionTransport {
  private client!: MqttClient;
  private readonly log: Logger;
  private readonly broker: string;
  /** Generation of each device's retained desired state at the broker, as far as the region knows. */
  private readonly atBroker = new Map<DeviceId, number>();
  private inFlight = new InFlightLimiter(MAX_IN_FLIGHT);
  private publishedCount = 0;
  private reportsRecorded = 0;
  private readonly dropped: DroppedReports = { invalid: 0, identityMismatch: 0, unknownDevice: 0 };
  private connections = 0;
  private closed = false;
  /** Settles when the retained states of the current connection are read; publishing waits for it. */
  private synced: Promise<void> = Promise.resolve();
  private firstSetup: Promise<void> = Promise.resolve();
  private sync: { nonce: string; retained: Array<{ device: DeviceId; location: MqttLocation; generation: number }>; done: () => void } | null = null;
  private readonly reportedFilter: string;
  private readonly statusFilter: string;
  /** Devices whose retained status is `online`, and where: the location of the latest `online`. */
  private readonly online = new Map<DeviceId, MqttLocation>();
  /**
   * The other locations where a device's retained status says `online` too: a device that moved to
   * another site before the old site's broker noticed it had gone. Its will there says `offline`
   * later, and only then is that location forgotten and its desired state there cleared. Rare, and short-lived.
   */
  private readonly onlineElsewhere = new Map<DeviceId, Set<MqttLocation>>();
  /** Where each device's desired state is published, when not at its device topics (DIRECT). */
  private readonly location = new Map<DeviceId, MqttLocation>();
  private readonly siteNames = new Map<string, string>();
  private moves = 0;
  private cleared = 0;
  /** True while a connection is set up: locations are learned, but it publishes at the end. */
  private settingUp = false;
  private readonly desiredFilter: string;
  private readonly sitesFilters: { reported: string; status: string; desired: string };
  private readonly syncTopic: string;

  constructor(private readonly opts: MqttRegionTransportOptions) {
    this.log = opts.log.child({ component: 'mqtt' });
    this.broker = describeBroker(opts.url);
    this.reportedFilter = regionSubscription(opts.region, 'reported');
    this.statusFilter = regionSubscription(opts.region, 'status');
    this.desiredFilter = regionSubscription(opts.region, 'desired');
    this.sitesFilters = {
      reported: regionSitesSubscription(opts.region, 'reported'),
      status: regionSitesSubscription(opts.region, 'status'),
      desired: regionSitesSubscription(opts.region, 'desired'),
    };
    this.syncTopic = regionSyncTopic(opts.region);
  }

  async start(): Promise<void> {
    const { opts } = this;
    const options: IClientOptions = {
      ...brokerClientOptions(opts),
      clientId: opts.clientId ?? `cascade-region-${opts.region}`,
      clean: false,
      reconnectPeriod: 2_000,
      connectTimeout: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      resubscribe: false,
      properties: { sessionExpiryInterval: opts.sessionExpirySeconds ?? 7 * DAY_SECONDS, receiveMaximum: MAX_IN_FLIGHT },
    };
    this.client = mqtt.connect(opts.url, options);
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.client.on('connect', (connack) => {
      this.connections++;
      coalesceWrites(this.client.stream);
      holdWritesPerRead(this.client.stream);
      const serverMaximum = connack.properties?.receiveMaximum;
      this.inFlight.resize(serverMaximum ?? MAX_IN_FLIGHT);
      this.log.info({ broker: this.broker, sessionPresent: connack.sessionPresent, reconnect: this.connections > 1 }, `connected to MQTT broker ${this.broker}`);
      const setup = this.onConnected();
      if (this.connections === 1) this.firstSetup = setup;
      this.synced = setup.catch((err: unknown) => {
        if (!this.closed) this.log.error({ err: (err as Error).message }, 'MQTT connection setup failed; retrying at the next connection');
      });
    });
    this.client.on('offline', () => {
      if (!this.closed) this.log.warn({ broker: this.broker }, `lost the MQTT broker ${this.broker}; reconnecting`);
    });

    // The first connection decides whether the flags are right: fail startup with the reason.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`no answer within ${options.connectTimeout} ms`)), options.connectTimeout);
      const onConnect = () => {
        cleanup();
        resolve();
      };
      const fail = (err: Error) => {
        cleanup();
        this.client.end(true);
        const hint = isAuthRefusal(err)
          ? 'check --mqtt-username and --mqtt-password, and that the broker lets that user subscribe to cascade/<region>/+/reported'
          : 'check --mqtt-url (and --mqtt-ca-file for mqtts://) and that the broker is running';
        reject(new CascadeError('mqtt-connect-failed', `cannot connect to the MQTT broker ${this.broker}: ${err.message}; ${hint}`, { broker: this.broker }));
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.client.off('connect', onConnect);
        this.client.off('error', fail);
      };
      this.client.once('connect', onConnect);
      this.client.once('error', fail);
    });
    this.client.on('error', (err) => this.log.warn({ err: err.message, broker: this.broker }, 'MQTT client error'));
    try {
      await this.firstSetup;
    } catch (err) {
      await this.client.endAsync(true);
      throw err;
    }
  }

  /** Subscribes, reads back the retained desired states, and publishes those that are out of date. */
  private async onConnected(): Promise<void> {
    // The broker sends every retained status again on subscribing: presence starts afresh.
    this.online.clear();
    this.onlineElsewhere.clear();
    this.settingUp = true;
    try {
      await this.setUp();
    } finally {
      this.settingUp = false;
    }
  }

  private async setUp(): Promise<void> {
    const sites = this.sitesFilters;
    try {
      const granted = await this.client.subscribeAsync({
        [this.reportedFilter]: { qos: MQTT_QOS },
        [this.statusFilter]: { qos: MQTT_QOS },
        [sites.reported]: { qos: MQTT_QOS },
        [sites.status]: { qos: MQTT_QOS },
      });
      if (granted.some((g) => g.qos > 2)) throw new Error(`reason code ${granted.find((g) => g.qos > 2)?.qos}`);
    } catch (err) {
      throw new CascadeError(
        'mqtt-subscribe-refused',
        `the MQTT broker ${this.broker} refused the subscription to ${this.reportedFilter} or ${this.statusFilter} (${(err as Error).message}): let the region's MQTT user read cascade/${this.opts.region}/#`,
      );
    }
    const retained = await this.readRetained();
    this.atBroker.clear();
    let stale = 0;
    if (retained) {
      // A device whose location is not known yet (no retained status) is where its desired state is.
      // null: retained at more than one location, so no guess.
      const retainedAt = new Map<DeviceId, MqttLocation | null>();
      for (const { device, location } of retained) retainedAt.set(device, retainedAt.has(device) && retainedAt.get(device) !== location ? null : location);
      for (const [device, location] of retainedAt) {
        if (location !== null && !this.online.has(device) && !this.location.has(device)) this.setLocation(device, location);
      }
      for (const { device, location, generation } of retained) {
        if (location === this.locationOf(device)) this.atBroker.set(device, generation);
        // Elsewhere: cleared, unless the device's status there still says online (cleared when its will says offline).
        else if (!this.isOnlineAt(device, location)) {
          this.clear(device, location);
          stale++;
        }
      }
    }
    const handed = [...this.opts.store.listHanded().keys()];
    const sent = await this.publishChanged(handed);
    this.log.info(
      { retained: retained?.length ?? null, stale, handed: handed.length, published: sent, atSites: this.location.size },
      retained
        ? `MQTT: ${retained.length} retained desired states at the broker (${stale} where their device no longer is, cleared), ${sent} published to bring it up to date`
        : `MQTT: could not read the retained desired states; published all ${sent}`,
    );
  }

  private locationOf(deviceId: DeviceId): MqttLocation {
    return this.location.get(deviceId) ?? DIRECT;
  }

  private setLocation(deviceId: DeviceId, location: MqttLocation): void {
    if (location === DIRECT) this.location.delete(deviceId);
    else this.location.set(deviceId, location);
  }

  /** One string per site name, however many topics it was read from. */
  private siteName(location: MqttLocation): MqttLocation {
    if (location === DIRECT) return DIRECT;
    const known = this.siteNames.get(location);
    if (known !== undefined) return known;
    if (this.siteNames.size >= MAX_SITE_NAMES) this.siteNames.clear();
    this.siteNames.set(location, location);
    return location;
  }

  /**
   * The device was heard from at `location`: from now on its desired state goes there. Moved from
   * elsewhere, its desired state is published at the new location and cleared at the old one.
   */
  private seenAt(deviceId: DeviceId, location: MqttLocation): void {
    const before = this.locationOf(deviceId);
    if (before === location) return;
    this.setLocation(deviceId, location);
    // While a connection is set up, the retained states read back decide what to publish and clear.
    if (this.settingUp) return;
    this.moves++;
    this.opts.metrics?.moves.inc();
    this.log.info({ deviceId, from: before === DIRECT ? null : before, to: location === DIRECT ? null : location }, `device ${deviceId} is now reached ${location === DIRECT ? 'at its device topics' : `through site ${location}`}`);
    // Where its status still says online (a site that has not noticed it leave), the copy stays until that site's will says offline.
    if (this.atBroker.delete(deviceId) && !this.isOnlineAt(deviceId, before)) this.clear(deviceId, before);
    void this.publishDesired([deviceId]).catch((err: unknown) => this.log.error({ err, deviceId }, `publishing the desired state of ${deviceId} at its new location failed`));
  }

  private isOnlineAt(deviceId: DeviceId, location: MqttLocation): boolean {
    return this.online.get(deviceId) === location || (this.onlineElsewhere.get(deviceId)?.has(location) ?? false);
  }

  /** Removes the retained desired state of the device at a location it has left (an empty retained message). */
  private clear(deviceId: DeviceId, location: MqttLocation): void {
    this.cleared++;
    this.client.publish(mqttTopicAt(this.opts.region, location, deviceId, 'desired'), '', { qos: MQTT_QOS, retain: true }, (err) => {
      if (err && !this.closed) this.log.warn({ err: err.message, deviceId, location }, `clearing the old desired state of ${deviceId} failed`);
    });
  }

  /** A retained status of the device at `location`. */
  private onStatus(deviceId: DeviceId, location: MqttLocation, online: boolean): void {
    const wasOnline = this.online.has(deviceId);
    const current = this.online.get(deviceId);
    const elsewhere = this.onlineElsewhere.get(deviceId);
    if (online) {
      if (current !== undefined && current !== location) {
        const others = elsewhere ?? new Set<MqttLocation>();
        others.add(current);
        others.delete(location);
        this.onlineElsewhere.set(deviceId, others);
      }
      this.online.set(deviceId, location);
      this.seenAt(deviceId, location);
    } else if (current === location) {
      // Gone from where it was last: still online at another location, if it said so there.
      const next = elsewhere ? [...elsewhere].pop() : undefined;
      if (next === undefined) this.online.delete(deviceId);
      else {
        elsewhere!.delete(next);
        if (elsewhere!.size === 0) this.onlineElsewhere.delete(deviceId);
        this.online.set(deviceId, next);
        this.seenAt(deviceId, next);
      }
    } else if (elsewhere?.delete(location)) {
      if (elsewhere.size === 0) this.onlineElsewhere.delete(deviceId);
      // Gone from a site it had left already: the copy kept there (seenAt) goes now.
      if (location !== this.locationOf(deviceId)) this.clear(deviceId, location);
    }
    this.opts.metrics?.presence.inc({ status: online ? 'online' : 'offline' });
    if (wasOnline !== this.online.has(deviceId)) this.opts.onPresence?.(deviceId);
  }

  /** Every retained desired state at the broker (device, location, generation), or null when they cannot be read. */
  private async readRetained(): Promise<Array<{ device: DeviceId; location: MqttLocation; generation: number }> | null> {
    const nonce = randomBytes(12).toString('base64url');
    const retained: Array<{ device: DeviceId; location: MqttLocation; generation: number }> = [];
    const done = new Promise<void>((resolve) => (this.sync = { nonce, retained, done: resolve }));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.opts.syncTimeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS)));
    try {
      const granted = await this.client
        .subscribeAsync({ [this.desiredFilter]: { qos: MQTT_QOS }, [this.sitesFilters.desired]: { qos: MQTT_QOS }, [this.syncTopic]: { qos: MQTT_QOS } })
        .catch(() => null);
      if (!granted || granted.some((g) => g.qos > 2)) {
        this.log.warn({ filter: this.desiredFilter }, `the broker refused the region read access to ${this.desiredFilter} or ${this.syncTopic}; publishing every desired state`);
        return null;
      }
      await this.client.publishAsync(this.syncTopic, nonce, { qos: MQTT_QOS });
      const outcome = await Promise.race([done.then(() => 'done' as const), timeout]);
      if (outcome === 'timeout') {
        this.log.warn({ filter: this.desiredFilter }, 'the retained desired states did not arrive in time; publishing every desired state');
        return null;
      }
      return retained;
    } finally {
      clearTimeout(timer);
      this.sync = null;
      // Only needed for this read: the region would otherwise get its own publications back.
      await this.client.unsubscribeAsync([this.desiredFilter, this.sitesFilters.desired, this.syncTopic]).catch(() => undefined);
    }
  }

  private onMessage(topic: string, payload: Buffer): void {
    try {
      if (topic === this.syncTopic) {
        if (this.sync && payload.toString('utf8') === this.sync.nonce) this.sync.done();
        return;
      }
      const reporter = deviceAtTopic(topic, this.opts.region, 'reported');
      if (reporter !== null) {
        this.onReport(reporter.device, this.siteName(reporter.location), payload);
        return;
      }
      const statusOf = deviceAtTopic(topic, this.opts.region, 'status');
      if (statusOf !== null) {
        // Only an enrolled device has a location: a stray status must not grow the region's maps.
        if (!this.isEnrolled(statusOf.device)) return;
        this.onStatus(statusOf.device, this.siteName(statusOf.location), payload.toString('utf8') === MQTT_ONLINE);
        return;
      }
      const desiredOf = deviceAtTopic(topic, this.opts.region, 'desired');
      if (desiredOf !== null && this.sync && payload.length > 0) {
        const generation = (JSON.parse(payload.toString('utf8')) as Partial<DesiredResponse>).generation;
        if (typeof generation === 'number') this.sync.retained.push({ device: desiredOf.device, location: this.siteName(desiredOf.location), generation });
      }
    } catch (err) {
      this.log.error({ err, topic }, 'MQTT message handling failed');
    }
  }

  private isEnrolled(deviceId: DeviceId): boolean {
    if (!isValidDeviceId(deviceId)) return false;
    const device = this.opts.store.getDevice(deviceId);
    return device !== null && !device.revoked;
  }

  private onReport(deviceId: DeviceId, location: MqttLocation, payload: Buffer): void {
    const { store, clock } = this.opts;
    const check = parseMqttReport(payload);
    if (!check.ok) {
      this.dropped.invalid++;
      this.opts.metrics?.reports.inc({ outcome: 'invalid' });
      this.log.warn({ deviceId, problem: check.problem }, `MQTT report of ${deviceId} dropped: ${check.problem}`);
      return;
    }
    if (check.report.deviceId !== deviceId) {
      this.dropped.identityMismatch++;
      this.opts.metrics?.reports.inc({ outcome: 'identity-mismatch' });
      this.log.warn(
        { deviceId, claimed: check.report.deviceId.slice(0, 128) },
        `MQTT report on the topic of ${deviceId} says it is from ${check.report.deviceId.slice(0, 128)}; dropped (a device may only report for itself)`,
      );
      return;
    }
    const device = isValidDeviceId(deviceId) ? store.getDevice(deviceId) : null;
    if (!device || device.revoked) {
      this.dropped.unknownDevice++;
      this.opts.metrics?.reports.inc({ outcome: 'unknown-device' });
      this.log.warn({ deviceId }, `MQTT report of ${deviceId} dropped: ${device ? 'the device was revoked' : 'no such device is enrolled here'}`);
      return;
    }
    if (this.opts.reportOrder && !this.opts.reportOrder.accept(deviceId, check.report.seq, 'mqtt')) {
      this.opts.metrics?.reports.inc({ outcome: 'out-of-order' });
      return;
    }
    this.seenAt(deviceId, location);
    store.recordReport(deviceId, check.report.apps as Record<string, AppReport>, clock(), check.report.labels);
    this.reportsRecorded++;
    this.opts.metrics?.reports.inc({ outcome: 'recorded' });
    try {
      this.opts.onReport?.(deviceId);
    } catch (err) {
      this.log.error({ err, deviceId }, 'onReport hook failed');
    }
  }

  async publishDesired(deviceIds: Iterable<DeviceId>): Promise<number> {
    const ids = [...deviceIds];
    const started = performance.now();
    // While a connection is being set up, its sync publishes whatever changed; then this catches up.
    await this.synced;
    const sent = await this.publishChanged(ids);
    if (sent > 0) this.log.debug({ devices: ids.length, published: sent, ms: Math.round(performance.now() - started) }, `published ${sent} desired states`);
    return sent;
  }

  private publishChanged(deviceIds: DeviceId[]): Promise<number> {
    // Pipelined: every message goes out as soon as the in-flight window (the broker's Receive
    // Maximum) has room, none waits for another's acknowledgement, and no promise is made per
    // message: a batch is one promise, settled by the last PUBACK. Messages written in the same
    // event-loop turn leave in one socket write (mqtt-packet corks the socket until the next tick).
    const messageOf = this.opts.desiredMessage ?? ((id: DeviceId): DesiredMessage => {
      const desired = this.opts.desiredFor(id);
      return { generation: desired.generation, payload: JSON.stringify(desired) };
    });
    return new Promise<number>((resolve) => {
      let pending = 1;
      let sent = 0;
      const settled = (ok: boolean): void => {
        if (ok) sent++;
        if (--pending === 0) resolve(sent);
      };
      for (const deviceId of deviceIds) {
        if (this.closed) break;
        const message = messageOf(deviceId);
        if (message.generation === 0 || this.atBroker.get(deviceId) === message.generation) continue;
        this.atBroker.set(deviceId, message.generation);
        pending++;
        this.inFlight.run(() => this.send(deviceId, message, settled));
      }
      settled(false);
    });
  }

  /** Publishes one desired state, retained, QoS 1; `settled` is called once with whether the broker acknowledged it. */
  private send(deviceId: DeviceId, desired: DesiredMessage, settled: (ok: boolean) => void): void {
    if (this.closed) {
      this.failed(deviceId, desired, null);
      this.inFlight.release();
      settled(false);
      return;
    }
    this.client.publish(mqttTopicAt(this.opts.region, this.locationOf(deviceId), deviceId, 'desired'), desired.payload, { qos: MQTT_QOS, retain: true }, (err) => {
      if (err) this.failed(deviceId, desired, err);
      else {
        this.publishedCount++;
        this.opts.metrics?.published.inc();
      }
      this.inFlight.release();
      settled(!err);
    });
  }

  /** Unknown at the broker now: the next publish or connection sends it again. */
  private failed(deviceId: DeviceId, desired: DesiredMessage, err: Error | null): void {
    if (this.atBroker.get(deviceId) === desired.generation) this.atBroker.delete(deviceId);
    if (err && !this.closed) this.log.error({ err: err.message, deviceId }, `publishing the desired state of ${deviceId} failed`);
  }

  published(): number {
    return this.publishedCount;
  }

  isConnected(deviceId: DeviceId): boolean {
    return this.client.connected && this.online.has(deviceId);
  }

  stats(): MqttRegionStats {
    return {
      published: this.publishedCount,
      reportsRecorded: this.reportsRecorded,
      dropped: { ...this.dropped },
      connections: this.connections,
      connected: this.client.connected,
      devicesOnline: this.online.size,
      devicesAtSites: this.location.size,
      moves: this.moves,
      cleared: this.cleared,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sync?.done();
    await this.client.endAsync();
  }
}
