import * as fs from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import git from 'isomorphic-git';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isCascadeError } from '../../src/core/errors.js';
import { LocalSource, openLocalSource } from '../../src/source/local-source.js';
import { commitAndPush, commitFiles, git as gitBin, makeFleetRemote, makeLocalRepo } from '../support/git-fixtures.js';

/**
 * Waits until `count()` reaches `atLeast`, up to `limitMs`; returns the milliseconds it took, or null.
 * The default limit only bounds a failure (a loaded machine may be slow); quiet checks pass their own.
 */
async function waitFor(count: () => number, atLeast: number, limitMs = 20_000): Promise<number | null> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    if (count() >= atLeast) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 10));
  }
  return null;
}

async function codeOf(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  if (!isCascadeError(err)) throw new Error(`expected a CascadeError, got ${String(err)}`);
  return err;
}

describe('LocalSource', () => {
  let base: string;
  const sources: LocalSource[] = [];

  async function open(repo: string, branch = 'main'): Promise<LocalSource> {
    const source = await openLocalSource({ repo, branch });
    sources.push(source);
    return source;
  }

  /** Subscribes and waits until the watcher has settled, so only later changes count. */
  async function watchCounting(
    source: LocalSource,
  ): Promise<{ calls: () => number; firstCallAt: () => number | null; stop: () => void }> {
    let calls = 0;
    let firstCallAt: number | null = null;
    const stop = source.watch(() => {
      calls++;
      firstCallAt ??= performance.now();
    });
    await new Promise((r) => setTimeout(r, 300));
    calls = 0;
    firstCallAt = null;
    return { calls: () => calls, firstCallAt: () => firstCallAt, stop };
  }

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'cascade-local-'));
  });

  afterEach(async () => {
    for (const source of sources.splice(0)) await source.close();
    await rm(base, { recursive: true, force: true });
  });

  it('reads the branch head of a repository with a work tree, in place', async () => {
    const { dir, head } = await makeLocalRepo(join(base, 'fleet'), { 'fleet.yaml': 'kind: Fleet\n' });
    const source = await open(dir);
    expect(source.location).toEqual({ gitdir: join(dir, '.git'), dir });
    expect(await source.sync()).toBe(head);
    const { commit } = await git.readCommit({ fs, gitdir: source.location.gitdir, oid: head });
    expect(commit.message).toContain('initial fleet');

    const next = await commitFiles(dir, { 'fleet.yaml': 'kind: Fleet\nspec: {}\n' }, 'second');
    expect(await source.sync()).toBe(next);
  });

  it('reads a bare repository that people push into', async () => {
    const remote = await makeFleetRemote(join(base, 'repos'), 'fleet', { 'a.yaml': 'a: 1\n' });
    const source = await open(remote.bare);
    expect(source.location).toEqual({ gitdir: remote.bare });
    expect(await source.sync()).toBe(remote.head);
  });

  it('only counts commits, not uncommitted edits of the work tree', async () => {
    const { dir, head } = await makeLocalRepo(join(base, 'fleet'), { 'fleet.yaml': 'kind: Fleet\n' });
    const source = await open(dir);
    await writeFile(join(dir, 'fleet.yaml'), 'edited but not committed\n');
    expect(await source.sync()).toBe(head);
  });

  it('names the missing branch, the repository and the branches it has', async () => {
    const { dir } = await makeLocalRepo(join(base, 'fleet'), { 'a.yaml': 'a: 1\n' });
    const source = await open(dir, 'release');
    const err = await codeOf(source.sync());
    expect(err.code).toBe('source-branch-missing');
    expect(err.message).toContain('"release"');
    expect(err.message).toContain(dir);
    expect(err.message).toContain('main');
  });

  it('rejects a directory that is not a repository, and one that does not exist', async () => {
    await mkdir(join(base, 'plain'));
    const plain = await codeOf(openLocalSource({ repo: join(base, 'plain'), branch: 'main' }));
    expect(plain.code).toBe('source-not-a-repo');
    expect(plain.message).toContain('not a git repository');
    const missing = await codeOf(openLocalSource({ repo: join(base, 'missing'), branch: 'main' }));
    expect(missing.code).toBe('source-not-a-repo');
    expect(missing.message).toContain('no such directory');
  });

  it('calls back after a `git commit` in the repository', async () => {
    const { dir } = await makeLocalRepo(join(base, 'fleet'), { 'a.yaml': 'a: 1\n' });
    const source = await open(dir);
    const watcher = await watchCounting(source);

    const next = await commitFiles(dir, { 'a.yaml': 'a: 2\n' }, 'change a');
    const committedAt = performance.now();
    await waitFor(watcher.calls, 1);
    const calledAt = watcher.firstCallAt();
    // Measured from the moment `git commit` returned; a callback before that counts as 0 ms.
    const latency = calledAt === null ? null : Math.max(0, calledAt - committedAt);
    console.info(`local watch: callback ${latency === null ? 'never came' : `${Math.round(latency)} ms after the commit finished`}`);
    // How soon is a speed goal (well under a second on an idle machine), not a pass/fail condition.
    expect(latency).not.toBeNull();
    expect(await source.sync()).toBe(next);
    watcher.stop();
  });

  it('does not lose a commit made while the watcher is still starting', async () => {
    const { dir } = await makeLocalRepo(join(base, 'fleet'), { 'a.yaml': 'a: 1\n' });
    const source = await open(dir);
    let calls = 0;
    const stop = source.watch(() => calls++);
    await commitFiles(dir, { 'a.yaml': 'a: 5\n' }, 'right away');
    expect(await waitFor(() => calls, 1)).not.toBeNull();
    stop();
  });

  it('calls back when a commit is pushed into a bare repository', async () => {
    const remote = await makeFleetRemote(join(base, 'repos'), 'fleet', { 'a.yaml': 'a: 1\n' });
    const source = await open(remote.bare);
    const watcher = await watchCounting(source);
    const next = await commitAndPush(remote.workdir, { 'a.yaml': 'a: 2\n' }, 'pushed');
    expect(await waitFor(watcher.calls, 1)).not.toBeNull();
    expect(await source.sync()).toBe(next);
    watcher.stop();
  });

  it('calls back when refs are packed and the branch then moves (packed-refs)', async () => {
    const { dir } = await makeLocalRepo(join(base, 'fleet'), { 'a.yaml': 'a: 1\n' });
    await gitBin(dir, ['pack-refs', '--all']);
    const source = await open(dir);
    const watcher = await watchCounting(source);
    const next = await commitFiles(dir, { 'a.yaml': 'a: 3\n' }, 'after pack-refs');
    expect(await waitFor(watcher.calls, 1)).not.toBeNull();
    expect(await source.sync()).toBe(next);
    watcher.stop();
  });

  it('stays quiet for work-tree edits and after unsubscribing', async () => {
    const { dir } = await makeLocalRepo(join(base, 'fleet'), { 'a.yaml': 'a: 1\n' });
    const source = await open(dir);
    const watcher = await watchCounting(source);
    await writeFile(join(dir, 'a.yaml'), 'not committed\n');
    await gitBin(dir, ['status', '--porcelain']);
    expect(await waitFor(watcher.calls, 1, 500)).toBeNull();

    watcher.stop();
    await commitFiles(dir, { 'a.yaml': 'a: 4\n' }, 'after unsubscribe');
    expect(await waitFor(watcher.calls, 1, 500)).toBeNull();
  });
});
