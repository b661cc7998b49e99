import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DeviceId } from '../../src/core/types.js';
import { FleetLoader } from '../../src/desired/load.js';
import { FleetIndex } from '../../src/reconciler/fleet-index.js';
import { Reconciler } from '../../src/reconciler/reconciler.js';
import { createRegionMetrics } from '../../src/reconciler/region-metrics.js';
import { openFleetSource } from '../../src/source/open-fleet-source.js';
import type { FleetSource } from '../../src/source/fleet-source.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';
import { commitFiles, makeLocalRepo } from '../support/git-fixtures.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

/**
 * A commit that changes thousands of devices is handed out in slices: each slice written in its own
 * transaction and announced (published, long polls woken) only once durable, with the event loop
 * served between slices; a crash between slices leaves the rest to the next pass, nobody twice.
 */
const REGION = 'us-east';
// Two slices of resolution rows (1,000 devices each), five of hand-outs (250 each).
const DEVICES = 1_150;
const log = pino({ level: 'silent' });

describe('hand-out in slices', () => {
  let root: string;
  let source: FleetSource | undefined;
  let index: FleetIndex | undefined;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-slices-'));
  });
  afterEach(async () => {
    await source?.close();
    index?.close();
    source = undefined;
    index = undefined;
    await rm(root, { recursive: true, force: true });
  });

  async function setUp(options: { failHandOutWrite?: number; failResolvedWrite?: number } = {}) {
    const repo = join(root, 'fleet');
    await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: null }));
    const now = 1_800_000_000_000;
    const clock = () => now;
    const durable = SqliteStateStore.open(join(root, 'data'));
    // The store fails the n-th transaction that hands something out (a full disk, a crash).
    let handOutWrites = 0;
    let armed = false;
    const failing = Object.create(durable) as SqliteStateStore;
    const rolloutWrites = { count: 0 };
    failing.writeBatch = (batch) => {
      if (batch.rollouts) rolloutWrites.count++;
      if (armed && Array.isArray(batch.handed) && batch.handed.length > 0 && ++handOutWrites === options.failHandOutWrite) throw new Error('disk full');
      durable.writeBatch(batch);
    };
    // ... or the n-th transaction of a new revision's resolution rows.
    let resolvedWrites = 0;
    failing.writeResolvedRows = (rows) => {
      if (armed && ++resolvedWrites === options.failResolvedWrite) throw new Error('disk full');
      durable.writeResolvedRows(rows);
    };
    index = new FleetIndex({ durable: failing, clock, offlineAfterMs: () => 600_000, log });
    source = await openFleetSource({ repo, branch: 'main', dataDir: join(root, 'data'), log });
    const announced: DeviceId[][] = [];
    const events: string[] = [];
    const metrics = createRegionMetrics(REGION);
    const reconciler = new Reconciler({
      region: REGION,
      source,
      store: index,
      loader: new FleetLoader({}),
      clock,
      log,
      metrics,
      onHandOut: (devices) => {
        const slice = [...devices];
        // Durable before announced: every device of the slice has this hand-out in SQLite already.
        for (const id of slice) expect(durable.getHanded(id)?.apps['web']?.version, id).toBe(index!.getHanded(id)?.apps['web']?.version);
        announced.push(slice);
        events.push(`slice ${slice.length}`);
        setImmediate(() => events.push('turn'));
      },
    });
    await reconciler.runPass({ fetch: true, reason: 'start' });
    for (let i = 0; i < DEVICES; i++) {
      const id = `dev-${String(i).padStart(5, '0')}`;
      index.enrollDevice(id, { role: 'a' }, `${id}-token`.padEnd(64, '0'), now);
      index.recordReport(id, { web: { version: '1.0.0', state: 'healthy' } }, now);
    }
    await reconciler.runPass({ fetch: false, reason: 'reports' });
    await new Promise((resolve) => setImmediate(resolve));
    // Every device was handed 1.0.0 (what it runs) at its first report: one update each.
    expect(durable.updatesSent()).toBe(DEVICES);
    announced.length = 0;
    events.length = 0;
    await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    armed = true;
    return { reconciler, durable, announced, events, metrics, rolloutWrites, head: () => durable.getRevision() };
  }

  it('writes and announces each slice before the next, with the event loop served between', async () => {
    const { reconciler, announced, events, durable } = await setUp();
    await reconciler.runPass({ fetch: true, reason: 'commit' });
    expect(announced.map((slice) => slice.length)).toEqual([250, 250, 250, 250, 150]);
    // Each slice was followed by a turn of the event loop before the next one was announced.
    expect(events.slice(0, 4), events.join()).toEqual(['slice 250', 'turn', 'slice 250', 'turn']);
    expect(new Set(announced.flat()).size).toBe(DEVICES);
    expect(durable.updatesSent()).toBe(2 * DEVICES);
    expect(index!.updatesSent()).toBe(2 * DEVICES);
  });

  it('after a failed slice, the next pass hands out the rest and nobody twice', async () => {
    const { reconciler, announced, durable } = await setUp({ failHandOutWrite: 2 });
    await reconciler.runPass({ fetch: true, reason: 'commit' });
    // The first slice was written and announced; the second failed and was not announced.
    expect(announced.map((slice) => slice.length)).toEqual([250]);
    await reconciler.runPass({ fetch: false, reason: 'retry' });
    const all = announced.flat();
    expect(all.length).toBe(DEVICES);
    expect(new Set(all).size).toBe(DEVICES);
    for (const id of all) expect(durable.getHanded(id)?.generation, id).toBe(2);
    expect(durable.listHanded().size).toBe(DEVICES);
    expect(durable.updatesSent()).toBe(2 * DEVICES);
    expect(index!.updatesSent()).toBe(2 * DEVICES);
  });

  it('a revision whose resolution fails half-written stays unapplied, and the next pass applies it whole', async () => {
    const { reconciler, durable, announced, head } = await setUp({ failResolvedWrite: 2 });
    const before = head().applied;
    await reconciler.runPass({ fetch: true, reason: 'commit' });
    // The first slice of rows was written, the second failed: the old revision is still the applied one,
    // nothing was handed out, and the commit is not taken for a refusal (no error recorded against it).
    expect(head().applied).toBe(before);
    expect(head().errors).toEqual([]);
    expect(announced).toEqual([]);
    await reconciler.runPass({ fetch: true, reason: 'retry' });
    expect(head().applied).not.toBe(before);
    expect(new Set(announced.flat()).size).toBe(DEVICES);
    expect(durable.getResolved().size).toBe(DEVICES);
    for (const apps of durable.getResolved().values()) expect(apps['web']?.version).toBe('2.0.0');
    expect(durable.updatesSent()).toBe(2 * DEVICES);
  });

  it('writes the rollout states only in passes that change them', async () => {
    const { reconciler, rolloutWrites, durable } = await setUp();
    await reconciler.runPass({ fetch: true, reason: 'commit' });
    const afterCommit = rolloutWrites.count;
    expect(afterCommit).toBeGreaterThan(0);
    // The rollout is under way (nobody reported 2.0.0 yet): each pass plans it again, and nothing in its state changes.
    for (let i = 0; i < 3; i++) await reconciler.runPass({ fetch: false, reason: 'tick' });
    expect(rolloutWrites.count).toBe(afterCommit);
    expect(durable.getRolloutStates().get('web')?.version).toBe('2.0.0');
  });
});
