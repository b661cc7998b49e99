import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceDesired } from '../../../src/core/types.js';
import { RegionMqtt } from '../../../src/region/mqtt/region-mqtt.js';
import { SqliteStateStore } from '../../../src/storage/region-state-store.js';
import type { Mosquitto } from '../../support/mosquitto.js';
import { MOSQUITTO, requireTool } from '../../support/requirements.js';
import { OBSERVER, REGION, REGION_USER, connectRecorder, quietLog, startAclBroker, until } from './mqtt-fixture.js';

const missing = await requireTool(MOSQUITTO);

let broker: Mosquitto;
beforeAll(async () => {
  if (!missing) broker = await startAclBroker();
});
afterAll(async () => {
  await broker?.stop();
});

describe.skipIf(missing)('RegionMqtt while it starts', () => {
  it('publishes what a pass hands out while the first connection is still publishing what it read from the store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cascade-region-mqtt-start-'));
    const store = SqliteStateStore.open(join(dir, 'data'));
    const ids = Array.from({ length: 50 }, (_, i) => `dev-${String(i).padStart(2, '0')}`);
    for (const id of ids) store.enrollDevice(id, {}, id.padEnd(64, '0'), Date.now());
    const resolved = new Map<string, DeviceDesired>();
    const handOut = (revision: string, version: string) => {
      const changes = new Map(ids.map((id) => [id, { web: { version, deployment: 'web' } } as DeviceDesired]));
      for (const [id, desired] of changes) resolved.set(id, desired);
      store.recordApplied(revision, resolved, {}, Date.now());
      store.handOut(changes, revision, Date.now());
    };
    handOut('rev1', '1.0.0');

    const mqtt = RegionMqtt.open({ url: broker.url, ...REGION_USER }, { region: REGION, store, log: quietLog });
    // The first connection reads what was handed out once the broker's retained states are read back;
    // right after, while it publishes those, a pass hands out 2.0.0 (as when devices report during start-up).
    const listHanded = store.listHanded.bind(store);
    let passed = false;
    store.listHanded = () => {
      const handed = listHanded();
      if (!passed) {
        passed = true;
        queueMicrotask(() => {
          handOut('rev2', '2.0.0');
          mqtt.publishDesired(ids);
        });
      }
      return handed;
    };
    try {
      await mqtt.start({ clock: Date.now });
      expect(passed).toBe(true);
      const observer = await connectRecorder(broker.url, { ...OBSERVER, clientId: OBSERVER.username });
      await observer.client.subscribeAsync(`cascade/${REGION}/+/desired`, { qos: 1 });
      const latest = () => {
        const byTopic = new Map<string, number>();
        for (const m of observer.messages) if (m.payload) byTopic.set(m.topic, (JSON.parse(m.payload) as { generation: number }).generation);
        return byTopic;
      };
      await until(() => latest().size === ids.length && [...latest().values()].every((g) => g === 2), 10_000, 'every device at the broker with generation 2');
      await observer.close();
    } finally {
      await mqtt.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
