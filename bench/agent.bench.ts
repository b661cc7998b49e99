import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RegionStatus } from '../src/reconciler/region-status.js';
import { makeLocalRepo } from '../test/support/git-fixtures.js';
import { smallFleet } from '../test/support/small-fleet.js';
import { BIN, cpuSeconds, memoryMb, startRegionChild, until } from './support/region-child.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * A light agent (issue 11, deliverable 8): an idle `cascade agent` (simulated runtime, HTTP long poll,
 * converged, nothing changing), its resident memory and CPU over 20 s, against a bare `node -e`
 * process holding one HTTP connection to the same region. Runs the compiled dist/ (built first when
 * stale), as the container image does.
 */
const TOKEN = 'bench-agent-token';
const BUILD = fileURLToPath(new URL('../scripts/build-dist.mjs', import.meta.url));
const IDLE_MS = 20_000;

export const suite: BenchSuite = {
  name: 'agent',
  async run(): Promise<BenchFigure[]> {
    spawnSync(process.execPath, [BUILD, '--if-stale'], { stdio: 'ignore' });
    const root = await mkdtemp(join(tmpdir(), 'cascade-bench-agent-'));
    const repo = join(root, 'fleet');
    await makeLocalRepo(repo, smallFleet({ web: '1.0.0', db: null }));
    const region = await startRegionChild(['--repo', repo, '--region', 'us-east', '--data', join(root, 'region'), '--interval', '1h', '--enrollment-token', TOKEN]);
    const agent = spawn(process.execPath, [BIN, 'agent', '--region-url', region.url, '--device-id', 'bench-agent', '--state-dir', join(root, 'agent'), '--enrollment-token', TOKEN, '--runtime', 'simulated', '--apply-ms', '10', '--wait', '30'], {
      env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    });
    // The baseline: node holding one HTTP connection (a long request) to the region, doing nothing else.
    const bare = spawn(process.execPath, ['-e', `require('node:http').get(${JSON.stringify(`${region.url}/api/v1/status`)}, { agent: new (require('node:http').Agent)({ keepAlive: true }) }, (r) => r.resume()); setInterval(() => {}, 1e9);`], { stdio: 'ignore' });
    try {
      await until(async () => {
        const s = (await (await fetch(`${region.url}/api/v1/status`)).json()) as RegionStatus;
        return s.devices.converged === 1 ? true : undefined;
      }, 60_000, () => 'the agent to converge');
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const cpuBefore = cpuSeconds(agent.pid!);
      await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
      const idleCpu = ((cpuSeconds(agent.pid!) - cpuBefore) / (IDLE_MS / 1000)) * 100;
      const agentRss = memoryMb(agent.pid!, 'VmRSS');
      const bareRss = memoryMb(bare.pid!, 'VmRSS');
      return [
        figure('idle agent RSS (simulated runtime, HTTP long poll, converged)', agentRss, 'MB', '< 50 MB', agentRss < 50, { name: 'bare node holding one HTTP connection', value: bareRss, unit: 'MB' }),
        figure('idle agent CPU', idleCpu, '% of a core', 'near zero (< 0.5%)', idleCpu < 0.5),
      ];
    } finally {
      agent.kill('SIGTERM');
      bare.kill('SIGTERM');
      await region.stop();
      await rm(root, { recursive: true, force: true });
    }
  },
};
