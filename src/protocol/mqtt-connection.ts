import { readFileSync } from 'node:fs';
import type { IClientOptions } from 'mqtt';
import { CascadeError } from '../core/errors.js';

/** Where and how to reach the broker: the `--mqtt-*` flags of region, agent and simulate. */
export interface MqttBrokerOptions {
  /** `mqtt://host:port` or `mqtts://host:port`. */
  url: string;
  username?: string;
  password?: string;
  /** PEM file of the CA that signed the broker's certificate (mqtts://); the system CAs when absent. */
  caFile?: string;
}

/** Parses and checks a broker URL; `where` names the flag in the error. */
export function parseBrokerUrl(url: string, where = '--mqtt-url'): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CascadeError('mqtt-url-invalid', `${where}: '${url}' is not a URL; use e.g. mqtt://127.0.0.1:1883 or mqtts://broker.example:8883`);
  }
  if (parsed.protocol !== 'mqtt:' && parsed.protocol !== 'mqtts:') {
    throw new CascadeError('mqtt-url-invalid', `${where}: '${url}' must start with mqtt:// or mqtts://`);
  }
  if (parsed.pathname !== '' && parsed.pathname !== '/') {
    throw new CascadeError('mqtt-url-invalid', `${where}: '${url}' has a path; give only mqtt(s)://host:port`);
  }
  return parsed;
}

/** Reads the CA file once, with an error that names the flag. */
export function readCaFile(caFile: string, where = '--mqtt-ca-file'): Buffer {
  try {
    return readFileSync(caFile);
  } catch (err) {
    throw new CascadeError('mqtt-ca-file-unreadable', `${where}: cannot read ${caFile}: ${(err as Error).message}`);
  }
}

/** MQTT.js options common to the region and devices: MQTT 5, TLS with the given CA, credentials. */
export function brokerClientOptions(broker: MqttBrokerOptions, ca?: Buffer): IClientOptions {
  const url = parseBrokerUrl(broker.url);
  const options: IClientOptions = {
    protocolVersion: 5,
    // Credentials come from their own flags, never from the URL, so logs of the URL leak nothing.
    username: broker.username,
    password: broker.password,
  };
  if (url.protocol === 'mqtts:') {
    options.rejectUnauthorized = true;
    const caPem = ca ?? (broker.caFile ? readCaFile(broker.caFile) : undefined);
    if (caPem) options.ca = caPem;
  } else if (broker.caFile) {
    throw new CascadeError('mqtt-ca-file-without-tls', `--mqtt-ca-file is set but --mqtt-url '${broker.url}' is not mqtts://; use mqtts:// to connect with TLS`);
  }
  return options;
}

/** The broker URL without credentials, for logs and errors. */
export function describeBroker(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}`;
  } catch {
    return url;
  }
}

/** MQTT.js errors carry the CONNACK reason code; these mean "wrong credentials or not allowed". */
export function isAuthRefusal(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  // MQTT 5 reason codes 0x86 (bad user name or password) and 0x87 (not authorized).
  return code === 134 || code === 135;
}
