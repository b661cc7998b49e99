import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryAgentState } from '../../src/agent/agent-state.js';
import { runDeviceLoop, type DeviceEvent } from '../../src/agent/device-loop.js';
import { RegionClient } from '../../src/agent/http/region-client.js';
import { SimulatedRuntime } from '../../src/agent/runtime-simulated.js';
import type { DeviceDesired } from '../../src/core/types.js';
import { ENROLLMENT_TOKEN, RegionFixture, until } from './region-fixture.js';

/**
 * The agent's side of `cascade rollout retry`, against a real device API and SQLite store: a version
 * that failed is tried again only when the region hands it with a higher attempt number, and an
 * attempt that is not a plain positive integer (a region bypassing its own code, a tampered store)
 * never makes it try again.
 */
const DEVICE = 'edge-retry-1';
let region: RegionFixture;
let stop: () => Promise<void>;
let events: DeviceEvent[];
let failing: boolean;

beforeEach(async () => {
  region = await RegionFixture.start();
  events = [];
  failing = true;
  const controller = new AbortController();
  const done = runDeviceLoop(
    {
      client: new RegionClient({ regionUrl: region.url, deviceId: DEVICE }),
      labels: {},
      enrollmentToken: ENROLLMENT_TOKEN,
      runtime: new SimulatedRuntime({ applyMs: 1, jitter: 0, failure: () => (failing ? 'the registry was down' : null) }),
      state: new MemoryAgentState(),
      log: pino({ level: 'silent' }),
      waitSeconds: 30,
      backoff: { initialMs: 20, maxMs: 200 },
      onEvent: (event) => events.push(event),
    },
    controller.signal,
  );
  stop = async () => {
    controller.abort();
    await done;
  };
  await until(() => region.store.getDevice(DEVICE) !== null, 20_000, 'enrolment');
});

afterEach(async () => {
  await stop();
  await region.close();
});

const attempts = () => events.filter((e) => e.type === 'apply-started').length;
const report = () => region.store.getDevice(DEVICE)?.apps['web'];
const hand = (attempt?: unknown) => region.handOut([DEVICE], { web: { version: '2.0.0', deployment: 'web', ...(attempt === undefined ? {} : { attempt }) } } as unknown as DeviceDesired);

describe('agent: retrying a failed version', () => {
  it('tries again only for a higher attempt, reports which attempt failed, and ignores hostile attempt values', async () => {
    hand();
    await until(() => report()?.state === 'failed', 20_000, 'first failure');
    expect(attempts()).toBe(1);
    expect(report()!.attempt).toBeUndefined();

    // Hostile or meaningless attempts: never a retry (each is a new generation the agent reads).
    for (const hostile of ['5', -1, 0, 1.5, 1e300, null, { n: 1 }, [2]]) {
      const reportsBefore = region.reportsOf(DEVICE);
      const generation = region.store.getHanded(DEVICE)!.generation;
      hand(hostile);
      expect(region.store.getHanded(DEVICE)!.generation).toBeGreaterThan(generation);
      // The agent reads it (its long poll returns) and reports nothing new: give it the time of a reply.
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(attempts(), `attempt ${JSON.stringify(hostile)}`).toBe(1);
      expect(region.reportsOf(DEVICE)).toBe(reportsBefore);
    }

    // The operator's retry: attempt 1. The cause still holds: it fails again, and says it was attempt 1.
    hand(1);
    await until(() => report()?.attempt === 1, 20_000, 'second failure at attempt 1');
    expect(attempts()).toBe(2);
    expect(report()!.state).toBe('failed');
    // The same attempt again is not a new retry.
    hand(1);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(attempts()).toBe(2);

    // Attempt 2 after the cause went away: it installs.
    failing = false;
    hand(2);
    await until(() => report()?.state === 'healthy' && report()?.version === '2.0.0', 20_000, 'healthy at 2.0.0');
    expect(attempts()).toBe(3);
    expect(report()!.attempt).toBeUndefined();
  });
});
