import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RegionStatus } from '../src/reconciler/region-status.js';
import { startSimulation } from '../src/simulate/simulation.js';
import { commitAndPush, makeFleetRemote } from '../test/support/git-fixtures.js';
import { startGitHttpServer } from '../test/support/git-http-server.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../test/support/region-process.js';
import { smallFleet, webDeployment } from '../test/support/small-fleet.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * The regional reconciler under a rollout to 2,500 simulated devices (real HTTP, one process each
 * for the region and the devices): time from a push to every update handed out, and to every device
 * converged; the region's peak RSS. Baselines from the same run: a pass after a commit that changes
 * nothing for devices, and the peak RSS of the same region idle with no device.
 */
const DEVICES = Number(process.env['CASCADE_BENCH_DEVICES'] ?? 2_500);
const TOKEN = 'bench-token';
const BUILD = fileURLToPath(new URL('../scripts/build-dist.mjs', import.meta.url));

/**
 * Measures the region as it is deployed: bin/cascade.js runs the compiled dist/ only while it matches
 * src/ (otherwise the sources through tsx, ~25 MB more), so build it first unless it is up to date.
 */
function buildDist(): void {
  const built = spawnSync(process.execPath, [BUILD, '--if-stale'], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (built.status !== 0) throw new Error(`${BUILD} --if-stale failed (exit ${built.status ?? built.signal}): cannot measure the compiled region`);
}

/** False when src/ changed during the run: a region started then ran the sources through tsx. */
function distStillCurrent(): boolean {
  return spawnSync(process.execPath, [BUILD, '--check'], { stdio: 'ignore' }).status === 0;
}

function peakRssMb(region: RegionProcess): number {
  const status = readFileSync(`/proc/${region.child.pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : NaN;
}

async function status(region: RegionProcess): Promise<RegionStatus> {
  return (await (await fetch(`${region.url}/api/v1/status`)).json()) as RegionStatus;
}

export const suite: BenchSuite = {
  name: 'region',
  async run(): Promise<BenchFigure[]> {
    buildDist();
    const root = await mkdtemp(join(tmpdir(), 'cascade-bench-region-'));
    const remote = await makeFleetRemote(join(root, 'git'), 'fleet', smallFleet({ web: '1.0.0', db: null }));
    const server = await startGitHttpServer({ root: join(root, 'git') });
    const args = ['--repo', `${server.url}/fleet.git`, '--region', 'us-east', '--interval', '1h', '--enrollment-token', TOKEN];
    const idle = await startRegionProcess([...args, '--data', join(root, 'idle')], { CASCADE_LOG_LEVEL: 'info' });
    const region = await startRegionProcess([...args, '--data', join(root, 'region')], { CASCADE_LOG_LEVEL: 'info', NODE_OPTIONS: process.env['BENCH_REGION_NODE_OPTIONS'] ?? '' });
    const simulation = await startSimulation({
      regionUrl: region.url,
      devices: DEVICES,
      enrollmentToken: TOKEN,
      prefix: 'bench',
      applyMs: 200,
      initial: { web: '1.0.0' },
      statsIntervalMs: 0,
      enrollConcurrency: 50,
    });
    try {
      await waitFor(async () => ((await status(region)).updatesSent === DEVICES ? true : undefined), 180_000, () => 'enrolment');
      await fetch(`${idle.url}/api/v1/reconcile?wait=true`, { method: 'POST' });

      // Baseline: push a commit that changes nothing for devices, until the region applied it.
      let started = performance.now();
      const noop = await commitAndPush(remote.workdir, { 'README.md': 'fleet\n' }, 'docs');
      await fetch(`${region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
      await waitFor(async () => ((await status(region)).revision.applied === noop ? true : undefined), 60_000, () => 'no-op commit');
      const noopMs = performance.now() - started;

      started = performance.now();
      await commitAndPush(remote.workdir, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
      await fetch(`${region.url}/api/v1/reconcile`, { method: 'POST' });
      await waitFor(async () => ((await status(region)).updatesSent === 2 * DEVICES ? true : undefined), 120_000, () => 'hand-out');
      const handedMs = performance.now() - started;
      await waitFor(async () => ((await status(region)).devices.converged === DEVICES ? true : undefined), 120_000, async () => JSON.stringify((await status(region)).devices));
      const convergedMs = performance.now() - started;

      const metrics = await (await fetch(`${region.url}/metrics`)).text();
      const metric = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)`, 'm').exec(metrics)?.[1] ?? NaN) / 1024 / 1024;
      process.stderr.write(`region memory now: heap used ${metric('cascade_process_nodejs_heap_size_used_bytes').toFixed(0)} MB, heap total ${metric('cascade_process_nodejs_heap_size_total_bytes').toFixed(0)} MB, external ${metric('cascade_process_nodejs_external_memory_bytes').toFixed(0)} MB, rss ${metric('cascade_process_process_resident_memory_bytes').toFixed(0)} MB\n`);
      const rss = peakRssMb(region);
      const idleRss = peakRssMb(idle);
      if (!distStillCurrent()) process.stderr.write('warning: src/ changed during the run, so the regions may have run the sources through tsx instead of dist/; run again\n');
      const noopBaseline = { name: 'push of a no-op commit to applied', value: noopMs, unit: 'ms' };
      return [
        figure(`push to every update handed out (${DEVICES} devices)`, handedMs, 'ms', '< 5 s', handedMs < 5000, noopBaseline),
        figure(`push to 100% converged (${DEVICES} devices, 200 ms installs)`, convergedMs, 'ms', 'informational', true, noopBaseline),
        figure(`region peak RSS with ${DEVICES} devices`, rss, 'MB', '< 150 MB', rss < 150, { name: 'idle region, no device', value: idleRss, unit: 'MB' }),
      ];
    } finally {
      await simulation.stop();
      await region.kill('SIGTERM');
      await idle.kill('SIGTERM');
      await server.stop();
      await rm(root, { recursive: true, force: true });
    }
  },
};
