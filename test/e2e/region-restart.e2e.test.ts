import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import type { RegionStatus } from '../../src/reconciler/region-status.js';
import { startSimulation, type Simulation } from '../../src/simulate/simulation.js';
import { commitAndPush, makeFleetRemote, makeLocalRepo } from '../support/git-fixtures.js';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http-server.js';
import { freePort } from '../support/free-port.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../support/region-process.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

const TOKEN = 'restart-token';
const run = promisify(execFile);

async function status(url: string): Promise<RegionStatus> {
  return (await (await fetch(`${url}/api/v1/status`)).json()) as RegionStatus;
}

describe('region restarts and local repositories', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    cleanups.length = 0;
  });

  it('after SIGKILL mid-rollout and with git down, a restarted region serves the last good revision from disk and finishes without updating any device twice', async () => {
    const DEVICES = 12;
    const root = await mkdtemp(join(tmpdir(), 'cascade-restart-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    // One device at a time, 300 ms each: the rollout takes seconds, so the kill lands in the middle.
    const remote = await makeFleetRemote(join(root, 'git'), 'fleet', smallFleet({ web: '1.0.0', db: null, rollout: '    waves: [100]\n    maxUnavailable: 1\n' }));
    const server: GitHttpServer = await startGitHttpServer({ root: join(root, 'git') });
    cleanups.push(() => server.stop());
    const port = await freePort();
    const args = ['--repo', `${server.url}/fleet.git`, '--region', 'us-east', '--data', join(root, 'region'), '--interval', '1h', '--enrollment-token', TOKEN, '--listen', `127.0.0.1:${port}`];
    let region: RegionProcess = await startRegionProcess(args);
    cleanups.push(() => region.kill('SIGKILL'));
    const simulation: Simulation = await startSimulation({
      regionUrl: region.url,
      devices: DEVICES,
      enrollmentToken: TOKEN,
      prefix: 'restart',
      applyMs: 300,
      initial: { web: '1.0.0' },
      waitSeconds: 5,
      statsIntervalMs: 0,
    });
    cleanups.push(() => simulation.stop());
    await waitFor(async () => ((await status(region.url)).devices.converged === DEVICES ? true : undefined), 60_000, () => 'initial convergence');
    expect(simulation.stats().applied).toBe(0); // everyone already ran 1.0.0

    const head = await commitAndPush(remote.workdir, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    await fetch(`${region.url}/api/v1/reconcile`, { method: 'POST' });
    await waitFor(() => ((simulation.stats().versions['web']?.['2.0.0'] ?? 0) >= 3 ? true : undefined), 60_000, () => 'rollout start');
    const killedAt = simulation.stats().versions['web']?.['2.0.0'] ?? 0;
    expect(await region.kill('SIGKILL')).toBeNull();
    expect(killedAt).toBeLessThan(DEVICES);

    server.setDown(true);
    region = await startRegionProcess(args);
    // Ready once the last good revision is loaded from disk, which the region does after it listens
    // (asked at once, a loaded machine answered 503 'not loaded (yet)'); with git down it must get there.
    await waitFor(async () => ((await fetch(`${region.url}/readyz`)).status === 200 ? true : undefined), 60_000, async () => `not ready: ${await (await fetch(`${region.url}/readyz`)).text()}`);
    const s = await waitFor(
      async () => {
        const current = await status(region.url);
        return current.devices.converged === DEVICES && current.revision.applied === head ? current : undefined;
      },
      60_000,
      async () => JSON.stringify(await status(region.url)),
    );
    expect(s.source.reachable).toBe(false);
    expect(simulation.stats().versions['web']).toEqual({ '2.0.0': DEVICES });
    // Each device was handed 1.0.0 once and 2.0.0 once, and installed 2.0.0 exactly once.
    expect(s.updatesSent).toBe(2 * DEVICES);
    expect(simulation.stats().applied).toBe(DEVICES);
  });

  it('a local-path repository reconciles a new commit as soon as its refs move, not on the interval', async () => {
    const root = await mkdtemp(join(tmpdir(), 'cascade-local-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    const repo = join(root, 'fleet');
    await makeLocalRepo(repo, smallFleet({ web: '1.0.0' }));
    // The interval is an hour: only the watch on the repository's refs can notice the commit.
    const region = await startRegionProcess(['--repo', repo, '--region', 'us-east', '--data', join(root, 'region'), '--interval', '1h', '--insecure-open-enrollment']);
    cleanups.push(() => region.kill('SIGTERM'));
    await waitFor(async () => ((await status(region.url)).revision.applied ? true : undefined), 60_000, () => 'first revision');
    await run('git', ['-C', repo, 'commit', '--quiet', '--allow-empty', '-m', 'nothing for devices']);
    const { stdout } = await run('git', ['-C', repo, 'rev-parse', 'HEAD']);
    const head = stdout.trim();
    // An hour-long interval means any pass before the test's timeout came from the watch. How fast
    // is a speed goal, not a pass/fail condition: a loaded machine may take longer than a second.
    const committedAt = Date.now();
    await waitFor(async () => ((await status(region.url)).revision.applied === head ? true : undefined), 60_000, () => `commit ${head} not applied: the watch on the refs did not fire`);
    console.info(`local repository: commit applied ${Date.now() - committedAt} ms after it was made`);
  });

  it('refuses to start without an enrolment token, and says how to fix it', async () => {
    const root = await mkdtemp(join(tmpdir(), 'cascade-noauth-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    await expect(startRegionProcess(['--repo', root, '--region', 'us-east', '--data', join(root, 'data')])).rejects.toThrow(
      /--enrollment-token.*--insecure-open-enrollment/s,
    );
  });
});
