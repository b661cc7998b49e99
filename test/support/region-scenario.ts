import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RegionStatus } from '../../src/reconciler/region-status.js';
import type { DeploymentRolloutStatus } from '../../src/plan/rollout/types.js';
import { commitAndPush, makeFleetRemote, type FileChanges, type FleetRemote } from './git-fixtures.js';
import { startGitHttpServer, type GitHttpServer } from './git-http-server.js';
import { startRegionProcess, waitFor, type RegionProcess } from './region-process.js';

export const SCENARIO_TOKEN = 'scenario-enrolment-token';

/** A fleet repository served over git smart HTTP and a region process following it. */
export interface RegionScenario {
  root: string;
  remote: FleetRemote;
  server: GitHttpServer;
  region: RegionProcess;
  status(): Promise<RegionStatus>;
  rollout(deployment: string): Promise<DeploymentRolloutStatus | undefined>;
  /** Commits and pushes, then calls the region's webhook and waits for the pass. Returns the commit id. */
  commit(files: FileChanges, message: string): Promise<string>;
  waitForStatus(check: (s: RegionStatus) => boolean, what: string, timeoutMs?: number): Promise<RegionStatus>;
  close(): Promise<void>;
}

export async function startRegionScenario(files: FileChanges, extraArgs: string[] = []): Promise<RegionScenario> {
  const root = await mkdtemp(join(tmpdir(), 'cascade-scenario-'));
  const remote = await makeFleetRemote(join(root, 'git'), 'fleet', files);
  const server = await startGitHttpServer({ root: join(root, 'git') });
  const region = await startRegionProcess([
    '--repo', `${server.url}/fleet.git`,
    '--region', 'us-east',
    '--data', join(root, 'region'),
    '--interval', '1h',
    '--enrollment-token', SCENARIO_TOKEN,
    ...extraArgs,
  ]);
  const status = async (): Promise<RegionStatus> => (await (await fetch(`${region.url}/api/v1/status`)).json()) as RegionStatus;
  return {
    root,
    remote,
    server,
    region,
    status,
    async rollout(deployment) {
      const rollouts = (await (await fetch(`${region.url}/api/v1/rollouts`)).json()) as DeploymentRolloutStatus[];
      return rollouts.find((r) => r.deployment === deployment);
    },
    async commit(changes, message) {
      const head = await commitAndPush(remote.workdir, changes, message);
      await fetch(`${region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
      return head;
    },
    async waitForStatus(check, what, timeoutMs = 60_000) {
      return waitFor(async () => {
        const s = await status();
        return check(s) ? s : undefined;
      }, timeoutMs, async () => `${what}; status: ${JSON.stringify(await status())}`);
    },
    async close() {
      await region.kill('SIGTERM');
      await server.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}
