import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { DeviceId } from '../../core/types.js';
import { DesiredDocuments, desiredResponse, type DesiredDecorator } from '../desired-document.js';
import type { StateStore } from '../../reconciler/state-store.js';
import type { MqttBrokerOptions } from '../../protocol/mqtt-connection.js';
import { createMqttMetrics } from './mqtt-metrics.js';
import { MosquittoPasswordFile, signalReload } from './mosquitto-password-file.js';
import { startMqttRegionTransport, type MqttRegionStats, type MqttRegionTransport } from './region-transport.js';
import type { ReportOrder } from '../report-order.js';

/** `cascade region --mqtt-*`: the broker, and where the region keeps device credentials for it. */
export interface RegionMqttOptions extends MqttBrokerOptions {
  /**
   * A Mosquitto password file (the broker's `password_file`) in which the region writes each
   * enrolled device's credentials: username = device id, password = device token.
   */
  passwordFile?: string;
  /** The broker's pid file: after each write the region sends it SIGHUP to re-read the password file. */
  brokerPidFile?: string;
}

/**
 * Everything MQTT in a region, in two steps: `open` before the device API is registered (it needs
 * `onTokenIssued` to give newly enrolled devices broker credentials), `start` once the store is ready
 * (it connects, reads back the retained states, and publishes what is out of date).
 */
export class RegionMqtt {
  private transport: MqttRegionTransport | null = null;
  /**
   * Devices handed out while the transport was starting. Its first connection publishes what was
   * handed when it read the store, after reading the broker's retained states back (seconds at tens of
   * thousands of devices); a pass that hands out meanwhile (devices report during it) must not be lost.
   */
  private handedWhileStarting: Set<DeviceId> | null = new Set();
  private readonly log: Logger;

  private constructor(
    private readonly opts: RegionMqttOptions,
    private readonly region: string,
    private readonly store: StateStore,
    log: Logger,
    private readonly passwords: MosquittoPasswordFile | null,
    private readonly reportOrder?: ReportOrder,
  ) {
    this.log = log;
  }

  /** Opens the password file (if any) and drops the entries of devices no longer enrolled here. */
  static open(opts: RegionMqttOptions, deps: { region: string; store: StateStore; log: Logger; reportOrder?: ReportOrder }): RegionMqtt {
    const { region, store, log } = deps;
    let passwords: MosquittoPasswordFile | null = null;
    if (opts.passwordFile) {
      const reload = opts.brokerPidFile
        ? signalReload(opts.brokerPidFile, log)
        : () => log.debug('MQTT password file written; no --mqtt-broker-pid-file, so the broker re-reads it on its own schedule');
      passwords = MosquittoPasswordFile.open({ path: opts.passwordFile, region, reload, log });
      let dropped = 0;
      for (const deviceId of passwords.devices()) {
        const device = store.getDevice(deviceId);
        if (!device || device.revoked) {
          passwords.removeDevice(deviceId);
          dropped++;
        }
      }
      passwords.flush();
      log.info({ passwordFile: opts.passwordFile, devices: passwords.devices().length, dropped }, `MQTT credentials of ${passwords.devices().length} devices in ${opts.passwordFile}`);
    }
    return new RegionMqtt(opts, region, store, log, passwords, deps.reportOrder);
  }

  /** For the device API: a new token is the device's new MQTT password (undefined without a password file). */
  get onTokenIssued(): ((deviceId: DeviceId, token: string) => void) | undefined {
    const passwords = this.passwords;
    return passwords ? (deviceId, token) => passwords.setDevicePassword(deviceId, token) : undefined;
  }

  async start(deps: { clock: () => number; registry?: Registry; onReport?: (deviceId: DeviceId) => void; onPresence?: (deviceId: DeviceId) => void; decorateDesired?: DesiredDecorator }): Promise<void> {
    const documents = new DesiredDocuments(this.store, this.region, deps.decorateDesired);
    this.transport = await startMqttRegionTransport({
      url: this.opts.url,
      username: this.opts.username,
      password: this.opts.password,
      caFile: this.opts.caFile,
      region: this.region,
      store: this.store,
      log: this.log,
      clock: deps.clock,
      desiredFor: (deviceId) => desiredResponse(this.store, this.region, deviceId, deps.decorateDesired),
      desiredMessage: (deviceId) => documents.message(deviceId),
      onReport: deps.onReport,
      onPresence: deps.onPresence,
      reportOrder: this.reportOrder,
      metrics: deps.registry ? createMqttMetrics(deps.registry) : undefined,
    });
    const handed = this.handedWhileStarting;
    this.handedWhileStarting = null;
    if (handed && handed.size > 0) this.publishDesired(handed);
  }

  /** Publishes the changed desired states in the background (the reconciler's onHandOut is synchronous). */
  publishDesired(deviceIds: Iterable<DeviceId>): void {
    const transport = this.transport;
    if (!transport) {
      // Until start returns: published then (what is already at the broker is skipped).
      if (this.handedWhileStarting) for (const id of deviceIds) this.handedWhileStarting.add(id);
      return;
    }
    transport.publishDesired(deviceIds).catch((err: unknown) => this.log.error({ err }, 'publishing desired states over MQTT failed'));
  }

  /** The device was revoked: its credentials go at the next write, and the broker then drops its connection. */
  revoke(deviceId: DeviceId): void {
    this.passwords?.removeDevice(deviceId);
  }

  /** Is the device connected to the broker now? Counts as seen, like a device holding an HTTP long poll. */
  isConnected(deviceId: DeviceId): boolean {
    return this.transport?.isConnected(deviceId) ?? false;
  }

  stats(): MqttRegionStats | null {
    return this.transport?.stats() ?? null;
  }

  async close(): Promise<void> {
    this.passwords?.close();
    await this.transport?.close();
  }
}
