import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLocalSource } from '../src/source/local-source.js';
import { commitFiles, makeLocalRepo } from '../test/support/git-fixtures.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * A local-path fleet repository is followed by watching its refs: the time from `git commit`
 * returning to the watch calling back (median of several commits). The tests only check that the
 * callback comes; how soon is this goal, since a loaded machine may take longer. Baseline from the
 * same run: the `git commit` itself.
 */
const COMMITS = 7;
const GOAL_MS = 1_000;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

export const suite: BenchSuite = {
  name: 'watch',
  async run(): Promise<BenchFigure[]> {
    const root = await mkdtemp(join(tmpdir(), 'cascade-bench-watch-'));
    const { dir } = await makeLocalRepo(join(root, 'fleet'), { 'a.yaml': 'a: 0\n' });
    const source = await openLocalSource({ repo: dir, branch: 'main' });
    let calledAt: number | null = null;
    const stop = source.watch(() => {
      calledAt ??= performance.now();
    });
    try {
      // Let the watcher finish starting, so only the commits below count.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const latencies: number[] = [];
      const commits: number[] = [];
      for (let i = 1; i <= COMMITS; i++) {
        calledAt = null;
        const started = performance.now();
        await commitFiles(dir, { 'a.yaml': `a: ${i}\n` }, `change ${i}`);
        const committed = performance.now();
        commits.push(committed - started);
        const deadline = committed + 30_000;
        while (calledAt === null && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
        if (calledAt === null) throw new Error(`the watch did not call back within 30 s of commit ${i}`);
        latencies.push(Math.max(0, (calledAt as number) - committed));
        // Past the watch's debounce, so the next commit starts a new burst.
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const latency = median(latencies);
      return [
        figure(`local repository: watch callback after \`git commit\` (median of ${COMMITS})`, latency, 'ms', `< ${GOAL_MS} ms`, latency < GOAL_MS, {
          name: '`git commit` itself',
          value: median(commits),
          unit: 'ms',
        }),
      ];
    } finally {
      stop();
      await source.close();
      await rm(root, { recursive: true, force: true });
    }
  },
};
