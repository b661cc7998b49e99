import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { regionToken } from '../../src/protocol/hub-auth.js';
import type { RunningHub } from '../../src/hub/hub-server.js';
import type { HubSummaryInput } from '../../src/protocol/hub-summary.js';
import { startHubPush, type HubPush } from '../../src/region/hub/hub-push.js';
import { HUB_TOKEN, eventually, pushSummary, startTestHub, summary, tempDir } from './hub-fixture.js';

const log = pino({ level: 'silent' });

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** A port nothing listens on right now (it was free a moment ago). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function regionState(updatesSent = 0): { input: HubSummaryInput; calls: number } {
  return {
    calls: 0,
    input: {
      region: 'eu-west',
      revision: { attempted: 'a'.repeat(40), applied: 'a'.repeat(40), error: null },
      source: { reachable: true },
      devices: { total: 2, converged: 2, updating: 0, failed: 0, offline: 0 },
      updatesSent,
      rollouts: [],
      devicesList: [
        { id: 'dev-1', state: 'converged', apps: { web: '1.0.0' } },
        { id: 'dev-2', state: 'converged', apps: { web: '1.0.0' } },
      ],
    },
  };
}

function push(hubUrl: string, state: { input: HubSummaryInput | null; calls: number }, opts: { intervalMs?: number; token?: string } = {}): HubPush {
  const pusher = startHubPush({
    hubUrl,
    token: opts.token ?? regionToken(HUB_TOKEN, 'eu-west'),
    region: 'eu-west',
    summary: () => {
      state.calls++;
      return state.input;
    },
    log,
    intervalMs: opts.intervalMs ?? 60_000,
    debounceMs: 20,
    maxBackoffMs: 200,
  });
  cleanups.push(() => pusher.close());
  return pusher;
}

describe('region push to the hub', () => {
  it('pushes at start and on changed(), debounced, always the latest summary', async () => {
    const tmp = await tempDir('cascade-push-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());
    const state = regionState();
    const pusher = push(hub.url, state);

    await eventually(() => (hub.fleet().regions.length === 1 ? true : undefined), 10_000, () => JSON.stringify(pusher.state()));
    expect(hub.fleet().regions[0]).toMatchObject({ region: 'eu-west', updatesSent: 0, devicesListed: 2 });

    const callsBefore = state.calls;
    state.input = { ...state.input!, updatesSent: 5 };
    for (let i = 0; i < 10; i++) pusher.changed();
    await eventually(() => (hub.fleet().regions[0]!.updatesSent === 5 ? true : undefined), 10_000, () => JSON.stringify(pusher.state()));
    // Ten changes in a burst make one push (two at most, if one was in flight).
    expect(state.calls - callsBefore).toBeLessThanOrEqual(2);
    expect(pusher.state()).toMatchObject({ failures: 0, lastError: null });
  });

  it('pushes nothing while the region has nothing to report yet (before its first pass)', async () => {
    const tmp = await tempDir('cascade-push-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());
    const ready = regionState(3).input;
    const state: { input: HubSummaryInput | null; calls: number } = { input: null, calls: 0 };
    const pusher = push(hub.url, state, { intervalMs: 30 });
    await eventually(() => (state.calls >= 3 ? true : undefined), 10_000, () => `summary asked ${state.calls} times`);
    expect(hub.fleet().regions).toEqual([]);
    expect(pusher.state()).toMatchObject({ lastAccepted: null, failures: 0 });
    state.input = ready;
    pusher.changed();
    await eventually(() => (hub.fleet().regions[0]?.updatesSent === 3 ? true : undefined), 10_000, () => JSON.stringify(pusher.state()));
  });

  it('sends heartbeats, so an idle region does not go stale', async () => {
    const tmp = await tempDir('cascade-push-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());
    const state = regionState();
    push(hub.url, state, { intervalMs: 50 });
    await eventually(() => (hub.fleet().regions[0]?.sequence ? true : undefined), 10_000, () => 'no summary');
    const first = hub.fleet().regions[0]!.sequence;
    await eventually(() => (hub.fleet().regions[0]!.sequence > first ? true : undefined), 10_000, () => 'no heartbeat');
  });

  it('keeps working while the hub is down and catches up with the latest summary when it returns', async () => {
    const tmp = await tempDir('cascade-push-');
    cleanups.push(tmp.remove);
    const port = await freePort();
    const state = regionState(1);
    const pusher = push(`http://127.0.0.1:${port}`, state);

    await eventually(() => (pusher.state().failures >= 2 ? true : undefined), 10_000, () => JSON.stringify(pusher.state()));
    expect(pusher.state().lastError).toMatch(/ECONNREFUSED|fetch failed|connect/i);
    // changed() returns at once: the region never waits for the hub.
    state.input = { ...state.input, updatesSent: 42 };
    pusher.changed();

    let hub: RunningHub | null = null;
    hub = await startTestHub(tmp.path, { port });
    cleanups.push(() => hub!.close());
    await eventually(() => (hub!.fleet().regions[0]?.updatesSent === 42 ? true : undefined), 10_000, () => JSON.stringify(pusher.state()));
    await eventually(() => (pusher.state().failures === 0 ? true : undefined), 10_000, () => JSON.stringify(pusher.state()));

    // Down again, and back with its data: the region catches up once more.
    await hub.close();
    state.input = { ...state.input, updatesSent: 43 };
    pusher.changed();
    await eventually(() => (pusher.state().failures >= 1 ? true : undefined), 10_000, () => JSON.stringify(pusher.state()));
    const back = await startTestHub(tmp.path, { port });
    cleanups.push(() => back.close());
    await eventually(() => (back.fleet().regions[0]?.updatesSent === 43 ? true : undefined), 10_000, () => JSON.stringify(pusher.state()));
  });

  it('moves its sequence past one the hub kept from before (a restart with a slower clock)', async () => {
    const tmp = await tempDir('cascade-push-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());
    const future = Date.now() + 10 * 365 * 24 * 3600_000;
    expect((await pushSummary(hub.url, summary('eu-west', { sequence: future }))).status).toBe(200);

    const state = regionState(7);
    const pusher = push(hub.url, state);
    await eventually(() => (hub.fleet().regions[0]!.updatesSent === 7 ? true : undefined), 10_000, () => JSON.stringify(pusher.state()));
    expect(hub.fleet().regions[0]!.sequence).toBe(future + 1);
  });

  it('reports a wrong token as its error, and keeps retrying', async () => {
    const tmp = await tempDir('cascade-push-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());
    const pusher = push(hub.url, regionState(), { token: regionToken(HUB_TOKEN, 'us-east') });
    await eventually(() => (pusher.state().failures >= 2 ? true : undefined), 10_000, () => JSON.stringify(pusher.state()));
    expect(pusher.state().lastError).toContain('region-token-invalid');
    expect(hub.fleet().regions).toEqual([]);
  });
});
