import { setTimeout as delay } from 'node:timers/promises';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { CascadeError } from '../../core/errors.js';
import type { DeviceId } from '../../core/types.js';
import { MQTT_OFFLINE, MQTT_ONLINE, MQTT_QOS, desiredTopic, reportedTopic, statusTopic, type MqttReport } from '../../protocol/mqtt-topics.js';
import { RegionHttpError, type DesiredResult, type RegionClient } from '../http/region-client.js';
import { errorCodes, type DesiredResponse, type ReportRequest } from '../../protocol/types.js';
import { brokerClientOptions, describeBroker, isAuthRefusal, readCaFile } from '../../protocol/mqtt-connection.js';

export interface MqttDeviceChannelOptions {
  /** `mqtt://host:port` or `mqtts://host:port`. */
  url: string;
  /** PEM file of the CA that signed the broker's certificate (mqtts://). */
  caFile?: string;
  /** The CA already read, e.g. shared by thousands of simulated devices. */
  ca?: Buffer;
  /**
   * The device's HTTP client: enrolment gives the token (the MQTT password); the region's name
   * and a check of the token come from `GET .../desired` when a connection is made.
   */
  client: RegionClient;
  log: Logger;
  /** How long one connection attempt may take. */
  connectTimeoutMs?: number;
  /** How long a report may wait for the broker's acknowledgement. */
  reportTimeoutMs?: number;
  /**
   * When the broker keeps refusing the device's credentials this long while the region accepts
   * its token (it enrolled before the region gave devices MQTT credentials, or the password file
   * was lost), the channel asks for a new enrolment, which issues new credentials.
   */
  reenrollAfterMs?: number;
  /** How long refused credentials are retried quietly first (new credentials take a moment to reach the broker). */
  refusalGraceMs?: number;
  clock?: () => number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
const DEFAULT_REPORT_TIMEOUT_MS = 30_000;
const DEFAULT_REENROLL_AFTER_MS = 120_000;
const DEFAULT_REFUSAL_GRACE_MS = 3_000;
/** MQTT 5 DISCONNECT reason 0x04. */
const DISCONNECT_WITH_WILL = 4;

interface Latest {
  body: DesiredResponse;
  etag: string;
}

/** One connection with the credentials of one token; replaced when the token changes. */
interface Session {
  token: string;
  client: MqttClient;
  /** Settles when connected and subscribed; rejects when the broker refuses the device. */
  ready: Promise<void>;
  failed: Error | null;
}

/**
 * A device's MQTT link to its region, with the same calls as the HTTP RegionClient the device loop
 * uses (`report`, `getDesired`): reports are published QoS 1 on the device's `reported` topic, and
 * the desired state arrives as the retained message of its `desired` topic, pushed by the broker
 * the moment it changes. `getDesired` only waits for that push: nothing is polled.
 */
export class MqttDeviceChannel {
  readonly deviceId: DeviceId;
  private readonly log: Logger;
  private readonly broker: string;
  private readonly clock: () => number;
  private readonly ca: Buffer | undefined;
  private session: Session | null = null;
  private region: string | null = null;
  private latest: Latest | null = null;
  private readonly waiters = new Set<() => void>();
  /** When the broker first refused the current token while the region accepted it. */
  private refusedSince: { token: string; at: number } | null = null;
  private closed = false;

  constructor(private readonly opts: MqttDeviceChannelOptions) {
    this.deviceId = opts.client.deviceId;
    this.log = opts.log.child({ deviceId: this.deviceId, transport: 'mqtt' });
    this.broker = describeBroker(opts.url);
    this.clock = opts.clock ?? Date.now;
    this.ca = opts.ca ?? (opts.caFile ? readCaFile(opts.caFile) : undefined);
    brokerClientOptions({ url: opts.url, caFile: opts.caFile }, this.ca);
  }

  /** Publishes the report (with this device's id) and resolves when the broker has it. */
  async report(body: ReportRequest, signal?: AbortSignal): Promise<void> {
    const session = await this.ready(signal);
    const region = this.region!;
    const message: MqttReport = { ...body, deviceId: this.deviceId };
    const timeoutMs = this.opts.reportTimeoutMs ?? DEFAULT_REPORT_TIMEOUT_MS;
    try {
      await withTimeout(session.client.publishAsync(reportedTopic(region, this.deviceId), JSON.stringify(message), { qos: MQTT_QOS }), timeoutMs, signal, () =>
        new CascadeError('mqtt-timeout', `device ${this.deviceId}: the MQTT broker ${this.broker} did not acknowledge a report within ${timeoutMs} ms`),
      );
    } catch (err) {
      if (err instanceof CascadeError || signal?.aborted) throw err;
      throw new CascadeError('mqtt-report-refused', `device ${this.deviceId}: the MQTT broker ${this.broker} refused the report on ${reportedTopic(region, this.deviceId)}: ${(err as Error).message}; check the broker's ACL lets the device write its own reported topic`);
    }
  }

  /**
   * The device's desired state once it differs from `etag` (200), or 304 after `waitSeconds`
   * without a change, like the HTTP long poll.
   */
  async getDesired(etag: string | null, waitSeconds: number, signal?: AbortSignal): Promise<DesiredResult> {
    const session = await this.ready(signal);
    const deadline = this.clock() + waitSeconds * 1000;
    for (;;) {
      if (session.failed) throw session.failed;
      const latest = this.latest;
      if (latest && latest.etag !== etag) return { status: 200, body: latest.body, etag: latest.etag };
      const remaining = deadline - this.clock();
      if (remaining <= 0 || this.closed) return { status: 304 };
      await this.changed(remaining, signal);
      if (signal?.aborted) throw signal.reason ?? new Error('aborted');
      // A newer token (the device enrolled again) needs a new connection.
      if (this.session !== session) return this.getDesired(etag, Math.max(0, (deadline - this.clock()) / 1000), signal);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    const session = this.session;
    this.session = null;
    if (!session) return;
    // MQTT 5 "disconnect with will message": the broker publishes `offline` for this device.
    const disconnect = session.client.connected ? session.client.endAsync(false, { reasonCode: DISCONNECT_WITH_WILL }) : session.client.endAsync(true);
    await withTimeout(disconnect, 2_000, undefined, () => new Error('disconnect timed out')).catch(() => session.client.end(true));
  }

  private changed(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
    });
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** The connection for the current token: made (after learning the region's name over HTTP) when needed. */
  private async ready(signal?: AbortSignal): Promise<Session> {
    if (this.closed) throw new CascadeError('mqtt-closed', `device ${this.deviceId}: the MQTT channel is closed`);
    const token = this.opts.client.token;
    if (token === null) throw new CascadeError('device-not-enrolled', `device ${this.deviceId} has no device token yet: enrol it first`);
    const timeoutMs = this.opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const graceMs = this.opts.refusalGraceMs ?? DEFAULT_REFUSAL_GRACE_MS;
    const started = this.clock();
    for (let attempt = 0; ; attempt++) {
      let session = this.session;
      if (session && (session.token !== token || session.failed)) {
        this.drop(session);
        session = null;
      }
      if (!session) {
        if (this.region === null) this.region = (await this.checkToken(signal)).region;
        session = this.connect(token, this.region);
      }
      try {
        // The connection keeps retrying in the background; the caller hears of the wait and backs off.
        await withTimeout(session.ready, timeoutMs, signal, () =>
          new CascadeError('mqtt-unreachable', `device ${this.deviceId}: no connection to the MQTT broker ${this.broker} within ${timeoutMs} ms; check --mqtt-url and that the broker is running`),
        );
        this.refusedSince = null;
        return session;
      } catch (err) {
        if (signal?.aborted) throw err;
        if (!isAuthRefusal(err)) throw err;
        // Just enrolled: the region writes new credentials in batches and the broker loads them
        // moments later. Try again shortly before asking the region whether the token is still good.
        if (this.clock() - started < graceMs) {
          await delay(Math.min(1_000, 50 * 2 ** attempt), undefined, { signal });
          continue;
        }
        throw await this.explainRefusal(token, err as Error, signal);
      }
    }
  }

  /** `GET .../desired` over HTTP: fails with device-token-invalid if the region no longer knows the token. */
  private async checkToken(signal?: AbortSignal): Promise<DesiredResponse> {
    const answer = await this.opts.client.getDesired(null, 0, signal);
    if (answer.status !== 200) throw new CascadeError('region-bad-response', `device ${this.deviceId}: the region answered 304 to a request without an ETag`);
    return answer.body;
  }

  /**
   * The broker refused the credentials. If the region refuses the token too, its error makes the
   * device loop enrol again; if not, the broker may not have re-read its password file yet (it
   * does within moments of an enrolment): a retryable error, until that has lasted too long.
   */
  private async explainRefusal(token: string, err: Error, signal?: AbortSignal): Promise<Error> {
    await this.checkToken(signal);
    const now = this.clock();
    if (this.refusedSince?.token !== token) this.refusedSince = { token, at: now };
    const refusedMs = now - this.refusedSince.at;
    const limit = this.opts.reenrollAfterMs ?? DEFAULT_REENROLL_AFTER_MS;
    if (refusedMs >= limit) {
      this.refusedSince = null;
      return new RegionHttpError(
        401,
        errorCodes.deviceTokenInvalid,
        `device ${this.deviceId}: the MQTT broker ${this.broker} has refused its credentials for ${Math.round(refusedMs / 1000)} s although the region accepts its token; enrolling again for new credentials`,
        this.broker,
      );
    }
    return new CascadeError('mqtt-not-authorized', `device ${this.deviceId}: the MQTT broker ${this.broker} refused its credentials (${err.message}); retrying (the broker may not have loaded them yet)`);
  }

  private connect(token: string, region: string): Session {
    const topic = desiredTopic(region, this.deviceId);
    const status = statusTopic(region, this.deviceId);
    const options: IClientOptions = {
      ...brokerClientOptions({ url: this.opts.url, username: this.deviceId, password: token }, this.ca),
      clientId: this.deviceId,
      clean: true,
      reconnectPeriod: 2_000,
      connectTimeout: this.opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      resubscribe: false,
      will: { topic: status, payload: Buffer.from(MQTT_OFFLINE), qos: MQTT_QOS, retain: true },
    };
    const client = mqtt.connect(this.opts.url, options);
    let settle!: { resolve: () => void; reject: (err: Error) => void };
    const ready = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    ready.catch(() => undefined);
    const session: Session = { token, client, ready, failed: null };
    const fail = (err: Error) => {
      if (session.failed) return;
      session.failed = err;
      settle.reject(err);
      this.wake();
      client.end(true);
    };
    client.on('connect', () => {
      void (async () => {
        // Clean session: subscribe at every connection; the retained desired state follows at once.
        try {
          const granted = await client.subscribeAsync(topic, { qos: MQTT_QOS });
          if (granted.some((g) => g.qos > 2)) throw new Error(`reason code ${granted[0]?.qos}`);
        } catch (err) {
          if (client.disconnecting || this.session !== session) return;
          fail(new CascadeError('mqtt-subscribe-refused', `device ${this.deviceId}: the MQTT broker ${this.broker} refused the subscription to ${topic} (${(err as Error).message}); check the broker's ACL lets the device read its own desired topic`));
          return;
        }
        settle.resolve();
        // Connected counts as seen, as an open HTTP long poll does; the will says `offline` when the device vanishes.
        await client.publishAsync(status, MQTT_ONLINE, { qos: MQTT_QOS, retain: true }).catch((err: Error) => {
          this.log.debug({ err: err.message }, `could not publish ${status}; the region sees this device only when it reports`);
        });
      })();
    });
    client.on('message', (messageTopic, payload) => {
      if (messageTopic === topic) this.onDesired(payload);
    });
    client.on('error', (err) => {
      // Refused credentials do not get better by retrying with the same ones.
      if (isAuthRefusal(err)) fail(err);
      else this.log.debug({ err: err.message }, 'MQTT client error');
    });
    this.session = session;
    return session;
  }

  private onDesired(payload: Buffer): void {
    if (payload.length === 0) return;
    let body: DesiredResponse;
    try {
      body = JSON.parse(payload.toString('utf8')) as DesiredResponse;
    } catch {
      this.log.warn('desired state over MQTT is not JSON; ignored');
      return;
    }
    if (typeof body !== 'object' || body === null || body.device !== this.deviceId || typeof body.generation !== 'number' || typeof body.apps !== 'object') {
      this.log.warn({ device: (body as { device?: unknown } | null)?.device }, 'desired state over MQTT is not for this device or malformed; ignored');
      return;
    }
    if (this.latest && body.generation < this.latest.body.generation) return;
    this.latest = { body, etag: `"${body.generation}"` };
    this.wake();
  }

  private drop(session: Session): void {
    if (this.session === session) this.session = null;
    session.client.end(true);
  }
}

function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason ?? new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err as Error);
      },
    );
  });
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, signal: AbortSignal | undefined, timeoutError: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(timeoutError()), timeoutMs);
  });
  return Promise.race([abortable(promise, signal), timeout]).finally(() => clearTimeout(timer));
}
