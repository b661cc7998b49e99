import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RegionStatus } from '../src/reconciler/region-status.js';
import { makeLocalRepo } from '../test/support/git-fixtures.js';
import { smallFleet } from '../test/support/small-fleet.js';
import { BIN, cpuSeconds, median, memoryMb, startRegionChild, until } from './support/region-child.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * A light agent (issue 11, deliverable 8): an idle `cascade agent` (simulated runtime, HTTP long poll,
 * converged, nothing changing), its resident memory and CPU over 20 s, against a bare `node -e`
 * process holding one HTTP connection to the same region. Runs the compiled dist/ (built first when
 * stale), as the container image does. Three agents (three devices) and three bare processes run side
 * by side; the figures are their medians, with the spread.
 */
const TOKEN = 'bench-agent-token';
const BUILD = fileURLToPath(new URL('../scripts/build-dist.mjs', import.meta.url));
const IDLE_MS = 20_000;
const AGENTS = 3;

export const suite: BenchSuite = {
  name: 'agent',
  async run(): Promise<BenchFigure[]> {
    spawnSync(process.execPath, [BUILD, '--if-stale'], { stdio: 'ignore' });
    const root = await mkdtemp(join(tmpdir(), 'cascade-bench-agent-'));
    const repo = join(root, 'fleet');
    await makeLocalRepo(repo, smallFleet({ web: '1.0.0', db: null }));
    const region = await startRegionChild(['--repo', repo, '--region', 'us-east', '--data', join(root, 'region'), '--interval', '1h', '--enrollment-token', TOKEN]);
    const agents = Array.from({ length: AGENTS }, (_, i) =>
      spawn(process.execPath, [BIN, 'agent', '--region-url', region.url, '--device-id', `bench-agent-${i}`, '--state-dir', join(root, `agent-${i}`), '--enrollment-token', TOKEN, '--runtime', 'simulated', '--apply-ms', '10', '--wait', '30'], {
        env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' },
        stdio: 'ignore',
      }),
    );
    // The baseline: node holding one HTTP connection (a long request) to the region, doing nothing else.
    const bares = Array.from({ length: AGENTS }, () =>
      spawn(process.execPath, ['-e', `require('node:http').get(${JSON.stringify(`${region.url}/api/v1/status`)}, { agent: new (require('node:http').Agent)({ keepAlive: true }) }, (r) => r.resume()); setInterval(() => {}, 1e9);`], { stdio: 'ignore' }),
    );
    try {
      await until(async () => {
        const s = (await (await fetch(`${region.url}/api/v1/status`)).json()) as RegionStatus;
        return s.devices.converged === AGENTS ? true : undefined;
      }, 60_000, () => 'the agents to converge');
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const cpuBefore = agents.map((agent) => cpuSeconds(agent.pid!));
      await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
      const idleCpu = agents.map((agent, i) => ((cpuSeconds(agent.pid!) - cpuBefore[i]!) / (IDLE_MS / 1000)) * 100);
      const agentRss = agents.map((agent) => memoryMb(agent.pid!, 'VmRSS'));
      const bareRss = bares.map((bare) => memoryMb(bare.pid!, 'VmRSS'));
      const rss = median(agentRss);
      const cpu = median(idleCpu);
      const range = (values: number[], digits: number) => `${Math.min(...values).toFixed(digits)}-${Math.max(...values).toFixed(digits)}`;
      return [
        figure(`idle agent RSS (simulated runtime, HTTP long poll, converged; median of ${AGENTS} agents, spread ${range(agentRss, 1)} MB)`, rss, 'MB', '< 50 MB', rss < 50, {
          name: `bare node holding one HTTP connection (spread ${range(bareRss, 1)} MB)`,
          value: median(bareRss),
          unit: 'MB',
        }),
        figure(`idle agent CPU (median of ${AGENTS}, spread ${range(idleCpu, 2)}%)`, cpu, '% of a core', 'near zero (< 0.5%)', cpu < 0.5),
      ];
    } finally {
      for (const child of [...agents, ...bares]) child.kill('SIGTERM');
      await region.stop();
      await rm(root, { recursive: true, force: true });
    }
  },
};
