import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { signBody } from '../../src/protocol/hub-auth.js';
import { HubStore } from '../../src/storage/hub-store.js';
import type { RevisionStateEvent } from '../../src/hub/webhooks.js';
import { eventually, pushSummary, rollout, startTestHub, summary, tempDir, wave } from './hub-fixture.js';

const B = 'b'.repeat(40);

interface Receiver {
  url: string;
  received: { body: RevisionStateEvent; signature: string | undefined; raw: string }[];
  /** Answer 500 to this many more requests. */
  failNext: number;
  attempts: number;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const receiver: Omit<Receiver, 'url' | 'close'> = { received: [], failNext: 0, attempts: 0 };
  const server = http.createServer((request, response) => {
    let raw = '';
    request.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    request.on('end', () => {
      receiver.attempts++;
      if (receiver.failNext > 0) {
        receiver.failNext--;
        response.writeHead(500).end('down for maintenance');
        return;
      }
      receiver.received.push({ body: JSON.parse(raw) as RevisionStateEvent, signature: request.headers['x-cascade-signature'] as string | undefined, raw });
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(receiver, {
    url: `http://127.0.0.1:${port}/hook`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const progressing = () => rollout('web', B, 'Progressing', [wave(1, 100, { healthy: 1, updating: 3 })]);
const halted = () =>
  rollout('web', B, 'Halted', [wave(1, 100, { healthy: 1, failed: 3 })], { halted: { reason: '3 of 4 attempted devices failed', devices: ['d1'], at: 1 } });

describe('webhooks', () => {
  it('POSTs a signed event on each change of a commit overall state, not on every summary', async () => {
    const receiver = await startReceiver();
    cleanups.push(receiver.close);
    const tmp = await tempDir('cascade-hub-hooks-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path, { webhooks: [receiver.url], webhookSecret: 'hook-secret', webhookRetry: { baseDelayMs: 50 } });
    cleanups.push(() => hub.close());

    // The first event fails once: the second, queued meanwhile, must still arrive after it.
    receiver.failNext = 1;
    const applied = { attempted: B, applied: B, error: null };
    await pushSummary(hub.url, summary('eu-west', { revision: applied, rollouts: [progressing()] }));
    await pushSummary(hub.url, summary('eu-west', { revision: applied, rollouts: [progressing()] }));
    await pushSummary(hub.url, summary('eu-west', { revision: applied, rollouts: [halted()] }));

    await eventually(() => (receiver.received.length >= 2 ? true : undefined), 10_000, () => `received ${JSON.stringify(receiver.received.map((r) => r.body.state))}`);
    await hub.webhooksIdle();
    // In order: a receiver setting a commit status never sees an older state last.
    const states = receiver.received.map((r) => [r.body.previous, r.body.state]);
    expect(states).toEqual([
      [null, 'Progressing'],
      ['Progressing', 'Halted'],
    ]);
    const haltEvent = receiver.received.find((r) => r.body.state === 'Halted')!;
    expect(haltEvent.body).toMatchObject({
      type: 'revision.state',
      revision: B,
      regions: { 'eu-west': { applied: true, deployments: { web: { state: 'Halted', failed: 3, halted: 'at the halt (1970-01-01T00:00:00Z): 3 of 4 attempted devices failed; now: 3 failed, 0 updating, 1 healthy of 4' } } } },
      undo: { revert: `git revert ${B}`, rollbacks: ['cascade rollback --deployment web'] },
    });
    expect(haltEvent.signature).toBe(signBody('hook-secret', haltEvent.raw));
  });

  it('retries a failed delivery with backoff, in the background, and gives up after the last try', async () => {
    const receiver = await startReceiver();
    cleanups.push(receiver.close);
    const tmp = await tempDir('cascade-hub-hooks-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path, { webhooks: [receiver.url], webhookRetry: { baseDelayMs: 20, maxAttempts: 3 } });
    cleanups.push(() => hub.close());

    receiver.failNext = 2;
    const push = await pushSummary(hub.url, summary('eu-west', { revision: { attempted: B, applied: B, error: null }, rollouts: [progressing()] }));
    // The push is answered whatever the webhook does.
    expect(push.status).toBe(200);
    await eventually(() => (receiver.received.length === 1 ? true : undefined), 10_000, () => `attempts ${receiver.attempts}`);
    expect(receiver.attempts).toBe(3);

    receiver.failNext = 100;
    await pushSummary(hub.url, summary('eu-west', { revision: { attempted: B, applied: B, error: null }, rollouts: [halted()] }));
    await eventually(() => (receiver.attempts >= 6 ? true : undefined), 10_000, () => `attempts ${receiver.attempts}`);
    await hub.webhooksIdle();
    const metrics = await (await fetch(`${hub.url}/metrics`)).text();
    expect(metrics).toMatch(/cascade_hub_webhook_deliveries_total\{result="gave-up"\} 1/);
    expect(metrics).toMatch(/cascade_hub_webhook_deliveries_total\{result="delivered"\} 1/);
    expect(metrics).toMatch(/cascade_hub_webhook_pending 0/);
    expect(receiver.attempts).toBe(6);
  });

  it('keeps undelivered events across a restart and delivers them when the receiver is back', async () => {
    const receiver = await startReceiver();
    cleanups.push(receiver.close);
    const tmp = await tempDir('cascade-hub-hooks-');
    cleanups.push(tmp.remove);
    receiver.failNext = 1_000;
    const first = await startTestHub(tmp.path, { webhooks: [receiver.url], webhookRetry: { baseDelayMs: 60_000, maxAttempts: 5 } });
    await pushSummary(first.url, summary('eu-west', { revision: { attempted: B, applied: B, error: null }, rollouts: [halted()] }));
    await eventually(() => (receiver.attempts >= 1 ? true : undefined), 10_000, () => 'no attempt');
    await first.webhooksIdle();
    await first.close();

    const store = HubStore.open(tmp.path);
    const waiting = store.listEvents();
    store.close();
    expect(waiting).toHaveLength(1);
    expect(waiting[0]).toMatchObject({ attempts: 1, gaveUpAt: null, lastError: 'answered 500' });

    receiver.failNext = 0;
    // The retry is due in a minute by the wall clock; a hub whose clock is past that delivers it at start.
    const second = await startTestHub(tmp.path, { webhooks: [receiver.url], clock: () => Date.now() + 120_000 });
    cleanups.push(() => second.close());
    await eventually(() => (receiver.received.length === 1 ? true : undefined), 10_000, () => `attempts ${receiver.attempts}`);
    expect(receiver.received[0]!.body).toMatchObject({ revision: B, state: 'Halted', previous: null });
  });

  it('refuses a webhook that is not an http(s) URL', async () => {
    const tmp = await tempDir('cascade-hub-hooks-');
    cleanups.push(tmp.remove);
    await expect(startTestHub(tmp.path, { webhooks: ['ftp://example.invalid/x'] })).rejects.toMatchObject({ code: 'webhook-url-invalid' });
  });
});
