import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileAgentState } from '../../src/agent/agent-state.js';
import { runDeviceLoop, type DeviceChannel } from '../../src/agent/device-loop.js';
import { RegionClient } from '../../src/agent/http/region-client.js';
import { SimulatedRuntime } from '../../src/agent/runtime-simulated.js';
import { ENROLLMENT_TOKEN, RegionFixture, until } from './region-fixture.js';

/**
 * Issue 11 (50,000 devices over MQTT): a device whose first report the broker acknowledged but the
 * region never received (lost in a bridge, or while the region reconnected) stayed `new` forever. The
 * channel here is the region's real routes behind a link that loses exactly that report.
 */
const DEVICE = 'edge-lossy';
let region: RegionFixture;
let dir: string;

beforeEach(async () => {
  region = await RegionFixture.start();
  dir = mkdtempSync(join(tmpdir(), 'cascade-lost-report-'));
});
afterEach(async () => {
  await region.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a first report lost between broker and region', () => {
  it('is sent again while the region has handed the device nothing, and no longer once it has', async () => {
    const client = new RegionClient({ regionUrl: region.url, deviceId: DEVICE });
    let sent = 0;
    let lost = 0;
    // Acknowledged like a broker would, but the first one never reaches the region.
    const lossy: DeviceChannel = {
      report: async (body, signal) => {
        sent++;
        if (sent === 1) {
          lost++;
          return;
        }
        await client.report(body, signal);
      },
      getDesired: (etag, waitSeconds, signal) => client.getDesired(etag, waitSeconds, signal),
    };
    const controller = new AbortController();
    const done = runDeviceLoop(
      {
        client,
        channel: lossy,
        labels: { ring: 'canary' },
        enrollmentToken: ENROLLMENT_TOKEN,
        runtime: new SimulatedRuntime({ applyMs: 10 }),
        state: new FileAgentState(join(dir, 'agent')),
        log: pino({ level: 'silent' }),
        waitSeconds: 1,
        backoff: { initialMs: 20, maxMs: 200 },
      },
      controller.signal,
    );
    try {
      // A poll marks the device seen; only a report tells the region what it runs.
      await until(() => region.reportsOf(DEVICE) >= 1, 20_000, 'a report to reach the region');
      expect(lost).toBe(1);
      // Once handed something, quiet polls are just quiet: no more reports than the hand-out's own.
      region.handOut([DEVICE], { web: { version: '1.0.0', deployment: 'web' } }, { web: { runtime: { type: 'simulated' } } } as never);
      await until(() => region.store.getDevice(DEVICE)?.apps['web']?.version === '1.0.0', 20_000, 'the device to report web 1.0.0');
      const after = sent;
      await new Promise((resolve) => setTimeout(resolve, 3_500));
      expect(sent).toBe(after);
    } finally {
      controller.abort();
      await done;
    }
  });
});
