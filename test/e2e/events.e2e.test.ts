import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SseParser, type SseMessage } from '../../src/cli/events/sse-client.js';
import type { RunningHub } from '../../src/hub/hub-server.js';
import type { CascadeEvent } from '../../src/protocol/events.js';
import { regionToken } from '../../src/protocol/hub-auth.js';
import { startSimulation, type Simulation } from '../../src/simulate/simulation.js';
import { HUB_TOKEN, startTestHub, tempDir } from '../hub/hub-fixture.js';
import { waitFor } from '../support/region-process.js';
import { SCENARIO_TOKEN, startRegionScenario, type RegionScenario } from '../support/region-scenario.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));
const run = promisify(execFile);
const OPERATOR = 'operator-token-for-events';
const DEVICES = 12;

/** A live SSE connection: every message it received so far, parsed as the CLI parses them. */
interface Stream {
  messages: SseMessage[];
  events(): CascadeEvent[];
  close(): void;
}

async function openStream(url: string, headers: Record<string, string> = {}): Promise<Stream> {
  const abort = new AbortController();
  const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const parser = new SseParser();
  const messages: SseMessage[] = [];
  void (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) messages.push(...parser.push(decoder.decode(chunk, { stream: true })));
    } catch {
      // aborted
    }
  })();
  return {
    messages,
    events: () => messages.filter((m) => m.event !== 'gap').map((m) => JSON.parse(m.data) as CascadeEvent),
    close: () => abort.abort(),
  };
}

const waitForEvent = (stream: Stream, what: string, match: (e: CascadeEvent) => boolean): Promise<CascadeEvent> =>
  waitFor(() => stream.events().find(match), 60_000, () => `${what}; got ${JSON.stringify(stream.events().map((e) => [e.type, e.message]))}`);

describe('events: GET /api/v1/events on a real region process and a real hub', () => {
  let hub: RunningHub;
  let hubDir: Awaited<ReturnType<typeof tempDir>>;
  let s: RegionScenario;
  let sim: Simulation;
  const streams: Stream[] = [];

  beforeAll(async () => {
    hubDir = await tempDir('cascade-events-hub-');
    hub = await startTestHub(hubDir.path);
    s = await startRegionScenario(smallFleet({ web: '1.0.0', db: null, rollout: '    waves: [10, 100]\n    failureThreshold: 1\n' }), [
      '--operator-token', OPERATOR,
      '--hub-url', hub.url,
      '--hub-token', regionToken(HUB_TOKEN, 'us-east'),
    ]);
    sim = await startSimulation({
      regionUrl: s.region.url, devices: DEVICES, enrollmentToken: SCENARIO_TOKEN, prefix: 'dev', applyMs: 20,
      initial: { web: '1.0.0' }, statsIntervalMs: 0, waitSeconds: 5, failVersion: '2.0.0',
    });
    await s.waitForStatus((st) => st.devices.converged === DEVICES && st.updatesSent === DEVICES, 'initial convergence');
  }, 120_000);

  afterAll(async () => {
    for (const stream of streams) stream.close();
    await sim?.stop();
    await s?.close();
    await hub?.close();
    await hubDir?.remove();
  });

  it('a commit streams revision.applied with its subject and author; a failing version streams rollout.halted and device.failed with app and attempted version; Last-Event-ID replays', async () => {
    const operator = await openStream(`${s.region.url}/api/v1/events`, { authorization: `Bearer ${OPERATOR}` });
    const anonymous = await openStream(`${s.region.url}/api/v1/events`);
    const fromHub = await openStream(`${hub.url}/api/v1/events`);
    streams.push(operator, anonymous, fromHub);
    // The hub announces changes between two summaries of a region: it must hold one from before the commit.
    const before = (await s.status()).revision.applied;
    await waitFor(() => (hub.fleet().regions.some((r) => r.region === 'us-east' && r.revision.applied === before) ? true : undefined), 60_000, () => `the hub has no summary of us-east at ${before}: ${JSON.stringify(hub.fleet())}`);

    const subject = 'web 2.0.0: <b>faster</b> start';
    const sha = await s.commit({ 'deployments/web.yaml': webDeployment('2.0.0') }, `${subject}\n\nbody text that is not the subject`);

    const applied = await waitForEvent(operator, 'revision.applied', (e) => e.type === 'revision.applied' && e.revision === sha);
    expect(applied).toMatchObject({ region: 'us-east', subject, author: 'Cascade Test <test@cascade.invalid>' });
    const halted = await waitForEvent(operator, 'rollout.halted', (e) => e.type === 'rollout.halted');
    expect(halted).toMatchObject({ deployment: 'web', app: 'web', version: '2.0.0', revision: sha });
    const failed = await waitForEvent(operator, 'device.failed', (e) => e.type === 'device.failed');
    // The version it failed to run, not the one it went back to.
    expect(failed).toMatchObject({ app: 'web', version: '2.0.0', running: '1.0.0', deployment: 'web' });
    expect(sim.deviceIds).toContain(failed.device);
    const started = operator.events().find((e) => e.type === 'rollout.wave-started' && e.version === '2.0.0');
    expect(started).toMatchObject({ deployment: 'web', version: '2.0.0', wave: 1 });
    // In order, ids rising by one per event.
    const ids = operator.events().map((e) => e.id);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]!);
    expect(operator.events().findIndex((e) => e.type === 'revision.applied')).toBeLessThan(operator.events().findIndex((e) => e.type === 'rollout.halted'));

    // Without the operator token: the same rollout events, no device names.
    await waitForEvent(anonymous, 'rollout.halted (anonymous)', (e) => e.type === 'rollout.halted');
    expect(anonymous.events().filter((e) => e.type === 'device.failed')).toEqual([]);
    const bufferedAnon = (await (await fetch(`${s.region.url}/api/v1/events?format=json`)).json()) as { events: CascadeEvent[] };
    expect(bufferedAnon.events.some((e) => e.type === 'revision.applied' && e.revision === sha)).toBe(true);
    expect(bufferedAnon.events.some((e) => e.type === 'device.failed')).toBe(false);

    // A client that reconnects with the id of revision.applied gets exactly what came after it.
    const replay = await openStream(`${s.region.url}/api/v1/events`, { authorization: `Bearer ${OPERATOR}`, 'last-event-id': String(applied.id) });
    streams.push(replay);
    await waitForEvent(replay, 'replayed device.failed', (e) => e.type === 'device.failed' && e.id === failed.id);
    const replayed = replay.events();
    expect(replayed[0]!.id).toBe(applied.id + 1);
    expect(replayed.some((e) => e.id <= applied.id)).toBe(false);
    expect(replayed.find((e) => e.id === halted.id)).toEqual(halted);
    // An id from before the buffer (an earlier process): a gap event first, then what is buffered.
    const stale = await openStream(`${s.region.url}/api/v1/events`, { 'last-event-id': '5' });
    streams.push(stale);
    await waitFor(() => (stale.messages.length > 0 ? true : undefined), 20_000, () => 'no message after a stale Last-Event-ID');
    expect(stale.messages[0]!.event).toBe('gap');

    // The status and the hub summary carry the commit's subject and author.
    const status = await s.status();
    expect(status.revision).toMatchObject({ applied: sha, subject, author: 'Cascade Test <test@cascade.invalid>' });
    const shown = await run(process.execPath, [BIN, 'status', '--region-url', s.region.url]);
    expect(shown.stdout).toContain(`  commit    ${subject} (Cascade Test <test@cascade.invalid>)`);

    // The hub relays what the summaries tell: the revision and the halt, no device events.
    const hubApplied = await waitForEvent(fromHub, 'hub revision.applied', (e) => e.type === 'revision.applied' && e.revision === sha);
    expect(hubApplied).toMatchObject({ region: 'us-east', subject });
    await waitForEvent(fromHub, 'hub rollout.halted', (e) => e.type === 'rollout.halted' && e.deployment === 'web');
    expect(fromHub.events().some((e) => e.type === 'device.failed')).toBe(false);
    const view = await waitFor(() => hub.revision(sha)?.subject ? hub.revision(sha)! : undefined, 30_000, () => JSON.stringify(hub.revision(sha)));
    expect(view).toMatchObject({ subject, author: 'Cascade Test <test@cascade.invalid>', state: 'Halted' });
    // The hub's device rows name the failed version and the devices the halt holds.
    const devices = (await waitFor(async () => {
      const d = (await (await fetch(`${hub.url}/api/v1/dashboard/devices?limit=100`)).json()) as { devices: Array<{ id: string; state: string; failed?: Record<string, string>; heldBy?: string }> };
      return d.devices.some((x) => x.failed) && d.devices.some((x) => x.heldBy) ? d.devices : undefined;
    }, 30_000, () => 'no failed and held rows at the hub'));
    expect(devices.find((d) => d.id === failed.device)).toMatchObject({ state: 'failed', failed: { web: '2.0.0' } });
    for (const held of devices.filter((d) => d.heldBy)) expect(held).toMatchObject({ state: 'pending', heldBy: 'web' });
  }, 180_000);

  it('cascade events prints the buffered events and exits; --follow --json prints one JSON object per line', async () => {
    const once = await run(process.execPath, [BIN, 'events', '--region-url', s.region.url, '--operator-token', OPERATOR]);
    expect(once.stdout).toMatch(/us-east revision\.applied +revision [0-9a-f]{8} applied: web 2\.0\.0/);
    expect(once.stdout).toMatch(/device\.failed .*web 2\.0\.0 failed, still running 1\.0\.0/);

    const child = spawn(process.execPath, [BIN, 'events', '--hub-url', hub.url, '--follow', '--json']);
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    try {
      const lines = await waitFor(() => {
        const parsed = stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as CascadeEvent);
        return parsed.some((e) => e.type === 'rollout.halted') ? parsed : undefined;
      }, 30_000, () => `stdout: ${stdout}`);
      expect(lines.every((e) => typeof e.id === 'number' && e.region === 'us-east')).toBe(true);
      expect(child.exitCode).toBeNull(); // still following
    } finally {
      child.kill('SIGTERM');
    }
    const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (c) => resolve(c))));
    expect(code).toBe(0);

    const missing = await run(process.execPath, [BIN, 'events']).then(() => null, (err: { code: number; stderr: string }) => err);
    expect(missing?.stderr).toMatch(/--region-url URL .* or --hub-url URL/);
  }, 60_000);

  it('a commit that fails validation streams revision.refused with its subject, author and problems; the status names it', async () => {
    const stream = await openStream(`${s.region.url}/api/v1/events?since=0`);
    streams.push(stream);
    const bad = await s.commit({ 'deployments/web.yaml': 'apiVersion: cascade/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  app: web\n  versoin: 9\n' }, 'typo in web');
    const refused = await waitForEvent(stream, 'revision.refused', (e) => e.type === 'revision.refused' && e.revision === bad);
    expect(refused).toMatchObject({ subject: 'typo in web', author: 'Cascade Test <test@cascade.invalid>', reason: 'invalid' });
    expect(refused.errors![0]).toContain('deployments/web.yaml');
    const status = await s.waitForStatus((st) => st.revision.refused !== undefined, 'the refused commit described');
    expect(status.revision.refused).toEqual({ subject: 'typo in web', author: 'Cascade Test <test@cascade.invalid>' });
    expect(status.revision.subject).toMatch(/^web 2\.0\.0/); // still serving the last good one
  }, 60_000);
});
