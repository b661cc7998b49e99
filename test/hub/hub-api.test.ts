import { afterEach, describe, expect, it } from 'vitest';
import type { HaltRevert } from '../../src/protocol/rollout-status.js';
import { getJson, pushSummary, rollout, startTestHub, summary, tempDir, wave } from './hub-fixture.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('hub API', () => {
  it('keeps every region latest summary and serves the fleet', async () => {
    const tmp = await tempDir('cascade-hub-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());

    const first = summary('eu-west', { revision: { attempted: A, applied: A, error: null }, devices: { total: 3, converged: 1, updating: 2, failed: 0, offline: 0 } });
    expect((await pushSummary(hub.url, first)).status).toBe(200);
    // `pending` (held back by a rollout) is optional: older regions do not send it.
    const newer = summary('eu-west', {
      revision: { attempted: A, applied: A, error: null },
      devices: { total: 4, converged: 3, updating: 0, pending: 1, failed: 0, offline: 0 },
      devicesList: [{ id: 'dev-1', state: 'pending', apps: { web: '1.0.0' } }],
    });
    expect((await pushSummary(hub.url, newer)).status).toBe(200);
    expect((await pushSummary(hub.url, summary('us-east', { revision: { attempted: A, applied: A, error: null } }))).status).toBe(200);

    const fleet = await getJson(`${hub.url}/api/v1/fleet`);
    expect(fleet.status).toBe(200);
    expect(fleet.body.regions.map((r: { region: string }) => r.region)).toEqual(['eu-west', 'us-east']);
    expect(fleet.body.regions[0].devices).toMatchObject({ converged: 3, pending: 1 });
    expect(fleet.body.regions[0].stale).toBe(false);
    expect((await getJson(`${hub.url}/healthz`)).body).toEqual({ ok: true });
  });

  it('ignores a summary that is not newer than the last one, and says which sequence it kept', async () => {
    const tmp = await tempDir('cascade-hub-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());

    const newer = summary('eu-west', { sequence: 50, updatesSent: 7 });
    expect((await pushSummary(hub.url, newer)).status).toBe(200);
    const replay = await pushSummary(hub.url, { ...newer, updatesSent: 1 });
    expect(replay.status).toBe(409);
    expect(replay.body).toMatchObject({ error: { code: 'summary-sequence-old' }, lastSequence: 50 });
    const older = await pushSummary(hub.url, { ...newer, sequence: 10, updatesSent: 2 });
    expect(older.status).toBe(409);
    expect(hub.fleet().regions[0]!.updatesSent).toBe(7);
  });

  it('shows one commit per region and Deployment: Progressing, then Complete', async () => {
    const tmp = await tempDir('cascade-hub-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());

    const progressing = rollout('web', B, 'Progressing', [wave(1, 10, { healthy: 1 }), wave(2, 100, { healthy: 2, updating: 3, pending: 4 })]);
    await pushSummary(hub.url, summary('eu-west', { revision: { attempted: B, applied: B, error: null }, rollouts: [progressing] }));
    await pushSummary(hub.url, summary('us-east', { revision: { attempted: A, applied: A, error: null } }));

    let view = (await getJson(`${hub.url}/api/v1/revisions/${B}`)).body;
    expect(view.state).toBe('Progressing');
    expect(view.regions).toEqual([
      expect.objectContaining({ region: 'eu-west', applied: true, refused: false }),
      expect.objectContaining({ region: 'us-east', applied: false, deployments: [] }),
    ]);
    expect(view.regions[0].deployments[0].counts).toEqual({ devices: 10, converged: 3, new: 0, updating: 3, pending: 4, failed: 0, offline: 0 });
    expect(view.deployments).toEqual([expect.objectContaining({ deployment: 'web', version: '2.0.0', states: { 'eu-west': 'Progressing' } })]);

    const complete = rollout('web', B, 'Complete', [wave(1, 10, { healthy: 1 }), wave(2, 100, { healthy: 9 })]);
    await pushSummary(hub.url, summary('eu-west', { revision: { attempted: B, applied: B, error: null }, rollouts: [complete] }));
    view = (await getJson(`${hub.url}/api/v1/revisions/${B.slice(0, 7)}`)).body;
    expect(view.state).toBe('Complete');
    expect(view.revision).toBe(B);
    expect(view.undo).toBeNull();

    expect((await getJson(`${hub.url}/api/v1/revisions/${'d'.repeat(40)}`)).status).toBe(404);
    expect((await getJson(`${hub.url}/api/v1/revisions/not-a-sha`)).body.error.code).toBe('revision-invalid');
  });

  it('marks a commit Halted with the reason and the commands that undo it, and Refused when a region refused it', async () => {
    const tmp = await tempDir('cascade-hub-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());

    const halted = rollout('web', B, 'Halted', [wave(1, 10, { healthy: 1, failed: 3 })], {
      halted: { reason: '3 of 4 attempted devices failed (75% >= 20%)', devices: ['d1', 'd2', 'd3'], at: 5 },
    });
    await pushSummary(hub.url, summary('eu-west', { revision: { attempted: B, applied: B, error: null }, rollouts: [halted] }));
    const view = (await getJson(`${hub.url}/api/v1/revisions/${B}`)).body;
    expect(view.state).toBe('Halted');
    expect(view.halted).toEqual([{ region: 'eu-west', deployment: 'web', version: '2.0.0', reason: 'at the halt (1970-01-01T00:00:00Z): 3 of 4 attempted devices failed (75% >= 20%); now: 3 failed, 0 updating, 1 healthy of 4', devices: ['d1', 'd2', 'd3'] }]);
    expect(view.undo).toEqual({ revert: `git revert ${B}`, rollbacks: ['cascade rollback --deployment web'] });

    await pushSummary(hub.url, summary('us-east', { revision: { attempted: C, applied: A, error: ['fleet.yaml:3:1: unknown field'] } }));
    const refused = (await getJson(`${hub.url}/api/v1/revisions/${C}`)).body;
    expect(refused.state).toBe('Refused');
    expect(refused.regions.find((r: { region: string }) => r.region === 'us-east')).toMatchObject({ refused: true, applied: false, errors: ['fleet.yaml:3:1: unknown field'] });

    const recent = (await getJson(`${hub.url}/api/v1/revisions`)).body.revisions.map((r: { revision: string; state: string }) => [r.revision, r.state]);
    expect(recent).toEqual(expect.arrayContaining([[B, 'Halted'], [C, 'Refused'], [A, 'Complete']]));
  });

  it('shows the revert a region pushed on a halt (onHalt), and refuses a summary whose revert record is hostile', async () => {
    const tmp = await tempDir('cascade-hub-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());
    const revert: HaltRevert = { mode: 'revert', outcome: 'pushed', commit: 'c'.repeat(40), reverted: B.padEnd(40, '0').slice(0, 40), branch: 'main', at: 6, message: 'pushed cccccccc to main' };
    const halted = rollout('web', B, 'Halted', [wave(1, 10, { failed: 1 })], { halted: { reason: '1 of 1 attempted device failed', devices: ['d1'], at: 5 }, revert });
    await pushSummary(hub.url, summary('eu-west', { revision: { attempted: B, applied: B, error: null }, rollouts: [halted] }));
    const view = (await getJson(`${hub.url}/api/v1/revisions/${B}`)).body;
    expect(view.halted[0].revert).toEqual(revert);
    expect(view.regions[0].deployments[0].revert).toEqual(revert);

    const hostile = rollout('web', B, 'Halted', [wave(1, 10, { failed: 1 })], { revert: { ...revert, commit: 'x; rm -rf /', extra: '<script>' } as HaltRevert });
    const refused = await pushSummary(hub.url, summary('us-east', { revision: { attempted: B, applied: B, error: null }, rollouts: [hostile] }));
    expect(refused.status).toBe(400);
  });

  it('survives a restart: regions, sequences and revision history come back from SQLite', async () => {
    const tmp = await tempDir('cascade-hub-');
    cleanups.push(tmp.remove);
    const first = await startTestHub(tmp.path);
    const done = rollout('web', A, 'Complete', [wave(1, 100, { healthy: 2 })]);
    await pushSummary(first.url, summary('eu-west', { sequence: 100, revision: { attempted: A, applied: A, error: null }, rollouts: [done] }));
    await pushSummary(first.url, summary('eu-west', { sequence: 101, revision: { attempted: B, applied: B, error: null }, rollouts: [] }));
    await first.close();

    const second = await startTestHub(tmp.path);
    cleanups.push(() => second.close());
    const fleet = (await getJson(`${second.url}/api/v1/fleet`)).body;
    expect(fleet.regions).toHaveLength(1);
    expect(fleet.regions[0]).toMatchObject({ region: 'eu-west', sequence: 101, revision: { applied: B } });
    // A is no longer referenced by any region: its last known view is kept as history.
    const old = (await getJson(`${second.url}/api/v1/revisions/${A}`)).body;
    expect(old).toMatchObject({ revision: A, state: 'Complete', superseded: true });
    expect((await pushSummary(second.url, summary('eu-west', { sequence: 101 }))).status).toBe(409);
  });

  it('marks a region stale when its summaries stop, and live again when one arrives', async () => {
    const tmp = await tempDir('cascade-hub-');
    cleanups.push(tmp.remove);
    let now = 1_000_000;
    const hub = await startTestHub(tmp.path, { clock: () => now, staleAfterMs: 60_000 });
    cleanups.push(() => hub.close());

    await pushSummary(hub.url, summary('eu-west'));
    await pushSummary(hub.url, summary('us-east'));
    now += 45_000;
    await pushSummary(hub.url, summary('us-east'));
    now += 30_000;
    let fleet = (await getJson(`${hub.url}/api/v1/fleet`)).body;
    expect(fleet.regions.map((r: { region: string; stale: boolean }) => [r.region, r.stale])).toEqual([
      ['eu-west', true],
      ['us-east', false],
    ]);
    const metrics = await (await fetch(`${hub.url}/metrics`)).text();
    expect(metrics).toMatch(/cascade_hub_regions\{state="stale"\} 1/);
    expect(metrics).toMatch(/cascade_hub_summaries_total\{result="accepted"\} 3/);

    await pushSummary(hub.url, summary('eu-west'));
    fleet = (await getJson(`${hub.url}/api/v1/fleet`)).body;
    expect(fleet.regions.every((r: { stale: boolean }) => !r.stale)).toBe(true);
  });

  it('rejects a summary that breaks the schema with the field that is wrong', async () => {
    const tmp = await tempDir('cascade-hub-');
    cleanups.push(tmp.remove);
    const hub = await startTestHub(tmp.path);
    cleanups.push(() => hub.close());
    const bad = { ...summary('eu-west'), devices: { total: -1, converged: 0, updating: 0, failed: 0, offline: 0 } };
    const answer = await pushSummary(hub.url, bad);
    expect(answer.status).toBe(400);
    expect(answer.body.error.message).toContain('body/devices/total');
    const notJson = await pushSummary(hub.url, summary('eu-west'), { body: '{nope' });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toBe('invalid-json');
    expect(hub.fleet().regions).toHaveLength(0);
  });
});

