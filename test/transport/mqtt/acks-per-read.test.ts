import type { Duplex } from 'node:stream';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coalesceWrites, holdWritesPerRead } from '../../../src/region/mqtt/coalesce-writes.js';
import { startMosquitto, type Mosquitto } from '../../support/mosquitto.js';
import { MOSQUITTO, requireTool } from '../../support/requirements.js';

const missing = await requireTool(MOSQUITTO);
const MESSAGES = 2_000;

let broker: Mosquitto;
beforeAll(async () => {
  if (!missing) broker = await startMosquitto({ users: { held: 'p1', plain: 'p2', sender: 'p3' } });
});
afterAll(async () => {
  await broker?.stop();
});

/** Subscribes at QoS 1, counts the socket's writes from then on, and resolves with them once every message arrived. */
async function receiver(topic: string, hold: boolean): Promise<{ done: Promise<number>; client: mqtt.MqttClient }> {
  const user = hold ? { username: 'held', password: 'p1' } : { username: 'plain', password: 'p2' };
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clean: true, reconnectPeriod: 0, ...user });
  await client.subscribeAsync(topic, { qos: 1 });
  const socket = client.stream as Duplex & { _write: Duplex['_write'] };
  coalesceWrites(socket);
  if (hold) holdWritesPerRead(socket);
  let writes = 0;
  const write = socket._write.bind(socket);
  socket._write = (chunk, encoding, callback) => {
    writes++;
    write(chunk, encoding, callback);
  };
  let received = 0;
  const done = new Promise<number>((resolve) =>
    client.on('message', () => {
      // The last PUBACK leaves on the turn after the last message: count once it had the chance.
      if (++received === MESSAGES) setTimeout(() => resolve(writes), 50);
    }),
  );
  return { done, client };
}

describe.skipIf(missing)('holdWritesPerRead (real Mosquitto, MQTT.js)', () => {
  it("sends a read's PUBACKs in one write: far fewer writes than messages, where MQTT.js alone writes one per message", async () => {
    const held = await receiver('acks/held', true);
    const plain = await receiver('acks/plain', false);
    const sender = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clean: true, reconnectPeriod: 0, username: 'sender', password: 'p3' });
    await Promise.all(Array.from({ length: MESSAGES }, (_, i) => Promise.all([sender.publishAsync('acks/held', `m${i}`, { qos: 1 }), sender.publishAsync('acks/plain', `m${i}`, { qos: 1 })])));
    const [heldWrites, plainWrites] = await Promise.all([held.done, plain.done]);
    await Promise.all([held.client.endAsync(), plain.client.endAsync(), sender.endAsync()]);
    expect(plainWrites).toBeGreaterThanOrEqual(MESSAGES);
    expect(heldWrites).toBeLessThan(MESSAGES / 4);
    expect(heldWrites).toBeGreaterThan(0);
  });
});
