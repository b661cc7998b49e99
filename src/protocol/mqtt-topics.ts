/**
 * The MQTT side of the region-device protocol, beside HTTP (types.ts). Topics:
 *
 *   cascade/<region>/<device>/desired   region -> device, retained, QoS 1, payload DesiredResponse
 *   cascade/<region>/<device>/reported  device -> region, QoS 1, payload MqttReport
 *   cascade/<region>/<device>/status    device -> region, retained, QoS 1, `online` or `offline`
 *                                       (the device's will: the broker says `offline` when it vanishes)
 *
 * Both payloads are the JSON of the HTTP protocol; a report also names its device, and the
 * region drops a report whose `deviceId` is not the device in its topic.
 *
 * Devices always use the topics above, at the broker they connect to. A site broker bridged to the
 * region broker (docs/mqtt.md) may carry them under its site's prefix there instead:
 *
 *   cascade/<region>/sites/<site>/<device>/<kind>
 *
 * (Mosquitto's bridge `topic +/desired in 1 cascade/<region>/ cascade/<region>/sites/<site>/`). The
 * region then knows which site each device reports from and publishes its desired state to that
 * site's prefix only, so each site's uplink carries the desired states of its own devices, not the
 * region's. A device topic has one level for the device, a site topic three more (`sites/<site>/`
 * then the device): the two never match the same filter, and a device named `sites` stays a device.
 */
import type { DeviceId } from '../core/types.js';
import type { DesiredResponse, ReportRequest } from './types.js';

export const MQTT_TOPIC_ROOT = 'cascade';

/** Every MQTT message of the protocol is sent at least once. */
export const MQTT_QOS = 1;

/** `cascade/<region>/<device>/desired`: retained, so a device gets its state the moment it subscribes. */
export type MqttDesired = DesiredResponse;

/** `cascade/<region>/<device>/reported`: the HTTP report body plus the device it is about. */
export interface MqttReport extends ReportRequest {
  deviceId: DeviceId;
}

/** Payloads of the `status` topic: a connected device is online, as one holding an HTTP long poll is. */
export const MQTT_ONLINE = 'online';
export const MQTT_OFFLINE = 'offline';

export type MqttTopicKind = 'desired' | 'reported' | 'status';

/** Why a region name or device id cannot be an MQTT topic level, or null when it can. */
export function topicLevelProblem(level: string): string | null {
  if (level === '') return 'is empty';
  if (/[/+#\u0000]/.test(level)) return "contains '/', '+', '#' or NUL, which MQTT topic levels cannot";
  if (level.startsWith('$')) return "starts with '$', which MQTT reserves for the broker";
  if (Buffer.byteLength(level, 'utf8') > 1024) return 'is longer than 1024 bytes';
  return null;
}

function checkLevel(what: string, level: string): void {
  const problem = topicLevelProblem(level);
  if (problem) throw new Error(`${what} '${level.slice(0, 80)}' ${problem}`);
}

export function mqttTopic(region: string, deviceId: DeviceId, kind: MqttTopicKind): string {
  checkLevel('region', region);
  checkLevel('device id', deviceId);
  return `${MQTT_TOPIC_ROOT}/${region}/${deviceId}/${kind}`;
}

export const desiredTopic = (region: string, deviceId: DeviceId): string => mqttTopic(region, deviceId, 'desired');
export const reportedTopic = (region: string, deviceId: DeviceId): string => mqttTopic(region, deviceId, 'reported');
export const statusTopic = (region: string, deviceId: DeviceId): string => mqttTopic(region, deviceId, 'status');

/** The filter the region subscribes to for every device's `kind` topic. */
export function regionSubscription(region: string, kind: MqttTopicKind): string {
  checkLevel('region', region);
  return `${MQTT_TOPIC_ROOT}/${region}/+/${kind}`;
}

/** The level after the region that starts a site's prefix at the region broker. */
export const MQTT_SITES_LEVEL = 'sites';

/**
 * Where a device's topics are at the region broker: '' for the device topics themselves (a device on
 * the region broker, or behind a bridge that forwards topics unchanged), else the name of the site
 * whose bridge carries them under `cascade/<region>/sites/<site>/`.
 */
export type MqttLocation = string;
export const DIRECT: MqttLocation = '';

/** The `kind` topic of a device at `location` as the region broker names it. */
export function mqttTopicAt(region: string, location: MqttLocation, deviceId: DeviceId, kind: MqttTopicKind): string {
  if (location === DIRECT) return mqttTopic(region, deviceId, kind);
  checkLevel('region', region);
  checkLevel('site', location);
  checkLevel('device id', deviceId);
  return `${MQTT_TOPIC_ROOT}/${region}/${MQTT_SITES_LEVEL}/${location}/${deviceId}/${kind}`;
}

/** The filter the region subscribes to for every site's devices' `kind` topics. */
export function regionSitesSubscription(region: string, kind: MqttTopicKind): string {
  checkLevel('region', region);
  return `${MQTT_TOPIC_ROOT}/${region}/${MQTT_SITES_LEVEL}/+/+/${kind}`;
}

/**
 * The device and location of a `cascade/<region>/<device>/<kind>` or
 * `cascade/<region>/sites/<site>/<device>/<kind>` topic, or null when the topic is neither.
 */
export function deviceAtTopic(topic: string, region: string, kind: MqttTopicKind): { device: DeviceId; location: MqttLocation } | null {
  const prefix = `${MQTT_TOPIC_ROOT}/${region}/`;
  const suffix = `/${kind}`;
  if (!topic.startsWith(prefix) || !topic.endsWith(suffix) || topic.length < prefix.length + suffix.length) return null;
  const middle = topic.slice(prefix.length, topic.length - suffix.length);
  const levels = middle.split('/');
  if (levels.length === 1) return levels[0] === '' ? null : { device: levels[0]!, location: DIRECT };
  // A site the region could not publish to again (`$...`, too long) is no site.
  if (levels.length !== 3 || levels[0] !== MQTT_SITES_LEVEL || topicLevelProblem(levels[1]!) !== null || levels[2] === '') return null;
  return { device: levels[2]!, location: levels[1]! };
}

/**
 * A topic only the region uses, outside every device's topics (device ids cannot start with `$`,
 * and it has one level less): the region publishes a marker to it after subscribing to `+/desired`
 * and knows every retained message has arrived when the marker comes back, because a broker
 * delivers the messages of one subscriber in order.
 */
export function regionSyncTopic(region: string): string {
  checkLevel('region', region);
  return `${MQTT_TOPIC_ROOT}/${region}/$sync`;
}
