import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CascadeError } from '../../src/core/errors.js';
import { FleetLoader } from '../../src/desired/load.js';
import type { Condition } from '../../src/protocol/region-status.js';
import { Reconciler } from '../../src/reconciler/reconciler.js';
import { createRegionMetrics, type RegionMetrics } from '../../src/reconciler/region-metrics.js';
import type { FleetSource } from '../../src/source/fleet-source.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';
import { FleetIndex } from '../../src/reconciler/fleet-index.js';
import { commitFiles, git, makeLocalRepo } from '../support/git-fixtures.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

/**
 * The Reconciler on its own, against a scripted source (each sync answers what the test says: a
 * commit id, or an error) over a real repository, and the region's real store (the in-memory index over
 * SQLite in a temp dir). What it
 * checks: refusals are final for their head, passing failures are retried with backoff, conditions
 * say which is which, one bad Deployment does not stop the others, and an operator can adopt a
 * rewritten branch without a restart.
 */
class ScriptedSource implements FleetSource {
  readonly location: { gitdir: string; dir: string };
  next: () => string = () => {
    throw new Error('no script');
  };
  syncs = 0;
  constructor(dir: string) {
    this.location = { gitdir: join(dir, '.git'), dir };
  }
  async sync(): Promise<string> {
    this.syncs++;
    return this.next();
  }
  async current(): Promise<string | null> {
    return null;
  }
  watch(): () => void {
    return () => undefined;
  }
  async close(): Promise<void> {}
}

describe('Reconciler: final and temporary errors, conditions, adoption', () => {
  let base: string;
  let repo: string;
  let source: ScriptedSource;
  let store: FleetIndex;
  let metrics: RegionMetrics;
  let retries: number[];
  let now: number;
  let reconciler: Reconciler;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'cascade-reconciler-'));
    repo = join(base, 'fleet');
    await makeLocalRepo(repo, smallFleet({ web: '1.0.0', db: null }));
    source = new ScriptedSource(repo);
    now = 1_700_000_000_000;
    store = new FleetIndex({ durable: SqliteStateStore.open(join(base, 'data')), clock: () => now, offlineAfterMs: () => 600_000, log: pino({ level: 'silent' }) });
    metrics = createRegionMetrics('us-east');
    retries = [];
    now = 1_700_000_000_000;
    reconciler = new Reconciler({
      region: 'us-east',
      source,
      store,
      loader: new FleetLoader(),
      clock: () => now,
      log: pino({ level: 'silent' }),
      metrics,
      onHandOut: () => undefined,
      retryIn: (ms) => retries.push(ms),
      maxBackoffMs: 8000,
    });
    store.enrollDevice('dev-1', {}, 'h1', now);
    store.recordReport('dev-1', { web: { version: '1.0.0', state: 'healthy' } }, now);
  });

  afterEach(async () => {
    store.close();
    await rm(base, { recursive: true, force: true });
  });

  const head = () => git(repo, ['rev-parse', 'HEAD']);
  const condition = (type: Condition['type']) => reconciler.regionConditions.find((c) => c.type === type)!;
  const failures = async (reason: string) => {
    const text = await metrics.registry.metrics();
    return Number(new RegExp(`cascade_reconcile_failures_total\\{reason="${reason}",region="us-east"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  };
  const pass = () => reconciler.runPass({ fetch: true, reason: 'test' });

  it('applies a good head: Ready True, Stalled False, nothing to retry', async () => {
    const first = await head();
    source.next = () => first;
    await pass();
    expect(store.getRevision().applied).toBe(first);
    expect(condition('Ready')).toMatchObject({ status: 'True', reason: 'Applied' });
    expect(condition('Stalled')).toMatchObject({ status: 'False' });
    expect(retries).toEqual([]);
  });

  it('retries an unreachable git with growing backoff, says so in the conditions and metrics, and resets once it answers', async () => {
    const first = await head();
    source.next = () => first;
    await pass();
    source.next = () => {
      throw new CascadeError('source-unreachable', 'cannot reach the fleet repository');
    };
    for (let i = 0; i < 5; i++) await pass();
    expect(retries).toEqual([1000, 2000, 4000, 8000, 8000]);
    expect(condition('Ready')).toMatchObject({ status: 'False', reason: 'SourceUnreachable' });
    expect(condition('Reconciling')).toMatchObject({ status: 'True', reason: 'Retrying' });
    expect(await failures('source-unreachable')).toBe(5);
    // Still serving the last good revision all along.
    expect(store.getRevision().applied).toBe(first);

    source.next = () => first;
    await pass();
    expect(condition('Ready')).toMatchObject({ status: 'True' });
    expect(condition('Reconciling').status).toBe('False');
    source.next = () => {
      throw new CascadeError('source-unreachable', 'down again');
    };
    retries = [];
    await pass();
    expect(retries).toEqual([1000]);
  });

  it('treats a history it cannot read now as temporary: the head is not recorded as refused and is tried again', async () => {
    const first = await head();
    source.next = () => first;
    await pass();
    // Two commits on top of the served one, and the middle one's object is lost: whether the head
    // descends cannot be told until it is back.
    const middle = await commitFiles(repo, { 'deployments/web.yaml': webDeployment('1.5.0') }, 'web 1.5.0');
    const next = await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    const object = join(repo, '.git', 'objects', middle.slice(0, 2), middle.slice(2));
    const saved = await readFile(object);
    await rm(object);
    source.next = () => next;
    await pass();
    expect(store.getRevision().attempted).not.toBe(next);
    expect(condition('Stalled').status).toBe('False');
    expect(condition('Ready')).toMatchObject({ status: 'False', reason: 'ancestry-unknown' });
    expect(retries).toEqual([1000]);
    expect(await failures('ancestry-unknown')).toBe(1);

    // The object is back: the next attempt applies the head.
    await writeFile(object, saved);
    await pass();
    expect(store.getRevision().applied).toBe(next);
    expect(condition('Ready').status).toBe('True');
  });

  it('refuses a head that does not descend, finally: Stalled, no retry, no second look; an operator adopts it with accept', async () => {
    const first = await head();
    source.next = () => first;
    await pass();
    await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    const advanced = await head();
    source.next = () => advanced;
    await pass();
    // The branch is rewritten: an unrelated commit replaces the served one.
    await git(repo, ['checkout', '--quiet', '--orphan', 'rewritten']);
    const rewritten = await commitFiles(repo, smallFleet({ web: '3.0.0', db: null }), 'rewritten history');
    source.next = () => rewritten;
    await pass();
    expect(store.getRevision()).toMatchObject({ applied: advanced, attempted: rewritten });
    expect(store.getRevision().errors[0]).toMatch(/does not descend.*cascade region accept/);
    expect(condition('Stalled')).toMatchObject({ status: 'True', reason: 'not-fast-forward' });
    expect(condition('Ready')).toMatchObject({ status: 'False', reason: 'HeadRefused' });
    expect(retries).toEqual([]);
    expect(await failures('not-fast-forward')).toBe(1);

    await pass();
    expect(await failures('not-fast-forward')).toBe(1); // final: not looked at again

    reconciler.accept(rewritten);
    await pass();
    expect(store.getRevision().applied).toBe(rewritten);
    expect(condition('Stalled').status).toBe('False');
    expect(condition('Ready')).toMatchObject({ status: 'True' });
  });

  it('refuses an invalid revision and keeps serving the last good one; the next good commit clears it', async () => {
    const first = await head();
    source.next = () => first;
    await pass();
    const bad = await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0', '  rolout: {}\n') }, 'typo');
    source.next = () => bad;
    await pass();
    expect(store.getRevision().applied).toBe(first);
    expect(condition('Stalled')).toMatchObject({ status: 'True', reason: 'invalid' });
    expect(condition('Stalled').message).toMatch(/rolout/);
    const good = await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'fixed');
    source.next = () => good;
    await pass();
    expect(store.getRevision().applied).toBe(good);
    expect(condition('Stalled').status).toBe('False');
  });

  it('a time zone this machine does not know is refused with the revision, never half-applied (the engine Stalled path: test/plan/rollout/problems.test.ts)', async () => {
    const first = await head();
    source.next = () => first;
    await pass();
    const withBadWindow = await commitFiles(
      repo,
      { 'deployments/web.yaml': webDeployment('2.0.0', '  rollout:\n    window:\n      schedule: "0 2 * * *"\n      duration: 2h\n      timezone: Mars/Olympus_Mons\n') },
      'web with a bad window',
    );
    source.next = () => withBadWindow;
    await pass();
    expect(store.getRevision().applied).toBe(first);
    expect(store.getRevision().errors.join('\n')).toMatch(/deployments\/web\.yaml:\d+:\d+: .*Mars\/Olympus_Mons/);
    expect(store.getHanded('dev-1')?.apps['web']?.version ?? '1.0.0').toBe('1.0.0');
  });
});
