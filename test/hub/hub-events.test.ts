import { afterEach, describe, expect, it } from 'vitest';
import type { CascadeEvent } from '../../src/protocol/events.js';
import { pushSummary, rollout, startTestHub, summary, tempDir, wave } from './hub-fixture.js';

const R = 'f6'.repeat(20);
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('hub events', () => {
  it('need the read token when the hub has one, and relay a halt a region reports', async () => {
    const tmp = await tempDir('cascade-hub-events-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path, { readToken: 'reader' });
    cleanups.push(() => hub.close());
    const url = `${hub.url}/api/v1/events?format=json`;
    expect((await fetch(url)).status).toBe(401);
    expect((await fetch(`${hub.url}/api/v1/events`, { headers: { accept: 'text/event-stream' } })).status).toBe(401);

    const progressing = rollout('web', R, 'Progressing', [wave(1, 50, { updating: 2 })], { currentWave: 1 });
    await pushSummary(hub.url, summary('eu', { revision: { attempted: R, applied: R, error: null, subject: 'web 2', author: 'A <a@x>' }, rollouts: [progressing] }));
    await pushSummary(hub.url, summary('eu', { revision: { attempted: R, applied: R, error: null, subject: 'web 2', author: 'A <a@x>' }, rollouts: [{ ...progressing, state: 'Halted', halted: { reason: '2 of 2 failed', devices: ['d1'], at: 1 } }] }));
    const body = (await (await fetch(url, { headers: { authorization: 'Bearer reader' } })).json()) as { events: CascadeEvent[] };
    // The first summary is the baseline; the second brings the halt.
    expect(body.events.map((e) => [e.type, e.region, e.deployment])).toEqual([['rollout.halted', 'eu', 'web']]);
    expect(body.events[0]!.message).toBe('eu: web 2.0.0 halted: 2 of 2 failed');
  });
});
