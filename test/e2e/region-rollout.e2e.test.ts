import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegionStatus } from '../../src/reconciler/region-status.js';
import { startSimulation, type Simulation } from '../../src/simulate/simulation.js';
import { commitAndPush, git, makeFleetRemote, type FleetRemote } from '../support/git-fixtures.js';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http-server.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../support/region-process.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

const TOKEN = 'e2e-enrolment-token';
const DEVICES = 12;

async function status(region: RegionProcess): Promise<RegionStatus> {
  const response = await fetch(`${region.url}/api/v1/status`);
  return (await response.json()) as RegionStatus;
}

async function reconcile(region: RegionProcess): Promise<void> {
  const response = await fetch(`${region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
  expect(response.status).toBe(202);
}

async function converged(region: RegionProcess, revision: string): Promise<RegionStatus> {
  return waitFor(
    async () => {
      const s = await status(region);
      return s.revision.applied === revision && s.devices.converged === DEVICES ? s : undefined;
    },
    60_000,
    async () => `devices did not converge on ${revision.slice(0, 8)}: ${JSON.stringify(await status(region))}`,
  );
}

describe('a region in its own process, a real git server, simulated devices over HTTP', () => {
  let root: string;
  let server: GitHttpServer;
  let remote: FleetRemote;
  let region: RegionProcess;
  let simulation: Simulation;
  const heads: string[] = [];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-e2e-'));
    remote = await makeFleetRemote(join(root, 'git'), 'fleet', smallFleet({ web: '1.0.0' }));
    heads.push(remote.head);
    server = await startGitHttpServer({ root: join(root, 'git') });
    region = await startRegionProcess([
      '--repo', `${server.url}/fleet.git`,
      '--region', 'us-east',
      '--data', join(root, 'region'),
      '--interval', '1h',
      '--enrollment-token', TOKEN,
    ]);
    simulation = await startSimulation({
      regionUrl: region.url,
      devices: DEVICES,
      enrollmentToken: TOKEN,
      prefix: 'e2e',
      applyMs: 50,
      labelsFor: (index): Record<string, string> => (index <= 4 ? { role: 'storage' } : {}),
      statsIntervalMs: 0,
    });
  });

  afterAll(async () => {
    await simulation?.stop();
    await region?.kill('SIGTERM');
    await server?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('hands every device its desired versions and sees them converge', async () => {
    const s = await converged(region, remote.head);
    // 12 devices get web, the 4 storage devices also get db: every hand-out counts once.
    expect(s.updatesSent).toBe(DEVICES + 4);
    expect(simulation.stats().versions).toEqual({ web: { '1.0.0': DEVICES }, db: { '5.0.0': 4 } });
  });

  it('a commit that changes one app for every device adds exactly one update per device', async () => {
    const before = (await status(region)).updatesSent;
    const head = await commitAndPush(remote.workdir, { 'deployments/web.yaml': webDeployment('1.1.0') }, 'web: roll out 1.1.0');
    heads.push(head);
    await reconcile(region);
    const s = await converged(region, head);
    expect(s.updatesSent - before).toBe(DEVICES);
    expect(simulation.stats().versions['web']).toEqual({ '1.1.0': DEVICES });
  });

  it('a commit that changes nothing for devices adds no update', async () => {
    const before = (await status(region)).updatesSent;
    const head = await commitAndPush(remote.workdir, { 'README.md': '# the fleet\n' }, 'docs only');
    await reconcile(region);
    const s = await converged(region, head);
    expect(s.updatesSent).toBe(before);
  });

  it('a git revert rolls the devices back', async () => {
    const before = (await status(region)).updatesSent;
    await git(remote.workdir, ['revert', '--no-edit', heads[1]!]);
    await git(remote.workdir, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
    const head = await git(remote.workdir, ['rev-parse', 'HEAD']);
    await reconcile(region);
    const s = await converged(region, head);
    expect(s.updatesSent - before).toBe(DEVICES);
    expect(simulation.stats().versions['web']).toEqual({ '1.0.0': DEVICES });
  });

  it('an invalid commit is refused: the last good revision stays and no update is sent', async () => {
    const good = (await status(region)).revision.applied!;
    const before = (await status(region)).updatesSent;
    const bad = await commitAndPush(
      remote.workdir,
      { 'deployments/web.yaml': webDeployment('9.9.9', '  replicas: 3\n'), 'deployments/ghost.yaml': webDeployment('1.0.0').replace('name: web\n', 'name: ghost\n').replace('app: web', 'app: nope') },
      'a broken commit',
    );
    await reconcile(region);
    const s = await status(region);
    expect(s.revision.attempted).toBe(bad);
    expect(s.revision.applied).toBe(good);
    expect(s.revision.error!.join('\n')).toMatch(/deployments\/web\.yaml:\d+:\d+: .*replicas/);
    expect(s.revision.error!.join('\n')).toMatch(/deployments\/ghost\.yaml:\d+:\d+: .*nope/);
    expect(s.updatesSent).toBe(before);
    expect(s.devices.converged).toBe(DEVICES);
    const metrics = await (await fetch(`${region.url}/metrics`)).text();
    expect(metrics).toMatch(/cascade_revisions_refused_total\{region="us-east"\} 1/);
  });
});
