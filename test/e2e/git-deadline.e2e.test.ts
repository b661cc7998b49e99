import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegionStatus } from '../../src/protocol/region-status.js';
import { commitAndPush, makeFleetRemote } from '../support/git-fixtures.js';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http-server.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../support/region-process.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

const GIT_TIMEOUT_S = 3;

describe('a git host that trickles bytes cannot stall the region (--git-timeout)', () => {
  let root: string;
  let server: GitHttpServer;
  let region: RegionProcess;

  const status = async (): Promise<RegionStatus> => (await (await fetch(`${region.url}/api/v1/status`)).json()) as RegionStatus;
  const timeouts = () => region.logs.filter((l) => String(l['err'] ?? '').includes('(--git-timeout)'));

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-trickle-'));
    server = await startGitHttpServer({ root: join(root, 'git') });
  });
  afterAll(async () => {
    await region?.kill();
    await server?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('gives up on a trickling fetch within the deadline, reports it, runs the webhook pass queued behind it, and applies the next commit', async () => {
    const remote = await makeFleetRemote(join(root, 'git'), 'fleet', smallFleet({ web: '1.0.0' }));
    region = await startRegionProcess(['--repo', `${server.url}/fleet.git`, '--region', 'us-east', '--data', join(root, 'data'), '--interval', '1h', '--enrollment-token', 't', '--git-timeout', `${GIT_TIMEOUT_S}s`]);
    await waitFor(async () => ((await status()).revision.applied === remote.head ? true : undefined), 20_000, () => 'first revision');

    // The host now sends one byte a second: a ref listing alone would take minutes.
    server.setTrickle(1000);
    const stalled = await commitAndPush(remote.workdir, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    const started = Date.now();
    await fetch(`${region.url}/api/v1/reconcile`, { method: 'POST' });
    // A webhook while the pass is stuck: it must not be lost.
    expect((await fetch(`${region.url}/api/v1/reconcile`, { method: 'POST' })).status).toBe(202);
    await waitFor(() => (timeouts().length > 0 ? true : undefined), 30_000, () => `a source timeout in the log: ${JSON.stringify(region.logs.slice(-8))} ${JSON.stringify(server.requests().slice(-5))}`);
    const s = await status();
    expect(s.source.reachable).toBe(false);
    expect(s.source.error).toMatch(new RegExp(`did not complete a request \\(.*\\) within ${GIT_TIMEOUT_S} s \\(--git-timeout\\)`));
    expect(s.revision.applied).toBe(remote.head);
    // Well before the trickle could have finished (the refs alone are hundreds of bytes at one a second).
    expect(Date.now() - started).toBeLessThan(120_000);

    // The host recovers while the queued webhook pass waits or runs: that pass (or the next) fetches the commit.
    server.setTrickle(null);
    await waitFor(async () => ((await status()).revision.applied === stalled ? true : undefined), 30_000, async () => JSON.stringify(await status()));
    const next = await commitAndPush(remote.workdir, { 'deployments/web.yaml': webDeployment('2.1.0') }, 'web 2.1.0');
    await fetch(`${region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
    const after = await status();
    expect(after.revision.applied).toBe(next);
    expect(after.source).toMatchObject({ reachable: true, error: null });
  }, 120_000);
});
