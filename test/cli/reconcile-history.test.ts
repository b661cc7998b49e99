import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { join } from 'node:path';
import { pushSummary, rollout, startTestHub, summary, tempDir, wave } from '../hub/hub-fixture.js';
import type { RunningHub } from '../../src/hub/hub-server.js';
import { commitAndPush, commitFiles, git, makeLocalRepo } from '../support/git-fixtures.js';
import { startRegionScenario, type RegionScenario } from '../support/region-scenario.js';
import { runCli } from '../support/run-cli.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

// Each test runs the real CLI several times; on a busy 2-core machine one run can take seconds.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const NO_CONTEXT = { CASCADE_CONTEXT: undefined, CASCADE_REGION_URL: undefined, CASCADE_HUB_URL: undefined, XDG_CONFIG_HOME: '/nonexistent-cascade-config' };

describe('cascade reconcile and history against a region', () => {
  let scenario: RegionScenario;
  beforeAll(async () => {
    // The region follows a repository over git smart HTTP and polls once an hour: only a reconcile makes it look.
    scenario = await startRegionScenario(smallFleet({ web: '1.0.0' }));
    await scenario.waitForStatus((s) => s.revision.applied !== null, 'first revision applied');
  });
  afterAll(async () => {
    await scenario?.close();
  });

  it('reconcile --wait applies a new commit at once and says so; without --wait it only asks', async () => {
    const head = await commitAndPush(scenario.remote.workdir, { 'deployments/web.yaml': webDeployment('1.1.0') }, 'web 1.1.0');
    const run = await runCli(['reconcile', '--wait', '--region-url', scenario.region.url], { env: NO_CONTEXT });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`region us-east applied ${head.slice(0, 8)}, the head of its branch\n`);
    const asked = await runCli(['reconcile', '--region-url', scenario.region.url], { env: NO_CONTEXT });
    expect(asked.code).toBe(0);
    expect(asked.stdout).toContain('asked the region at');
  }, 120_000);

  it('reconcile --wait exits 1 with the problems when the region refuses the head', async () => {
    const good = (await scenario.status()).revision.applied!;
    const bad = await commitAndPush(scenario.remote.workdir, { 'deployments/web.yaml': webDeployment('1.2.0').replace('app: web', 'app: wbe') }, 'typo');
    const run = await runCli(['reconcile', '--wait', '--region-url', scenario.region.url], { env: NO_CONTEXT });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe(`region us-east refused ${bad.slice(0, 8)}, the head of its branch; it keeps serving ${good.slice(0, 8)}\n`);
    expect(run.stderr).toMatch(/deployments\/web\.yaml:\d+:\d+: .*wbe/);

    const history = await runCli(['history', '--region-url', scenario.region.url, '--repo', scenario.remote.workdir], { env: NO_CONTEXT });
    expect(history.code).toBe(0);
    const lines = history.stdout.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^${bad.slice(0, 8)}  refused   us-east  typo \\(Cascade Test, .*Z\\)$`));
    expect(lines.find((l) => l.startsWith(good.slice(0, 8)))).toMatch(/applied {3}us-east {2}web 1\.1\.0 \(Cascade Test/);
    expect(history.stderr).toContain('a region keeps only its applied and last attempted revision');
  }, 120_000);

  it('reconcile says when the region is not there', async () => {
    const run = await runCli(['reconcile', '--wait', '--region-url', 'http://127.0.0.1:1'], { env: NO_CONTEXT });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^cascade: cannot reach the region at http:\/\/127\.0\.0\.1:1\/api\/v1\/reconcile\?wait=1: .* \[region-unreachable\]\n$/);
  });
});

describe('cascade history against the hub', () => {
  let hub: RunningHub;
  let tmp: { path: string; remove: () => Promise<void> };
  let repo: string;
  let first: string;
  let second: string;
  beforeAll(async () => {
    tmp = await tempDir('cascade-history-');
    hub = await startTestHub(join(tmp.path, 'hub'));
    repo = (await makeLocalRepo(join(tmp.path, 'fleet'), smallFleet({ web: '1.0.0' }), { message: 'web 1.0.0' })).dir;
    first = await git(repo, ['rev-parse', 'HEAD']);
    second = await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    await pushSummary(hub.url, summary('eu-west', { revision: { attempted: first, applied: first, error: null } }));
    await pushSummary(hub.url, summary('us-east', { revision: { attempted: first, applied: first, error: null } }));
    const halted = rollout('web', second, 'Halted', [wave(1, 10, { healthy: 1, failed: 2 })], { version: '2.0.0', halted: { reason: '2 of 3 attempted devices failed', devices: ['d1', 'd2'], at: 1 } });
    await pushSummary(hub.url, summary('eu-west', { revision: { attempted: second, applied: second, error: null }, rollouts: [halted] }));
    await pushSummary(hub.url, summary('us-east', { revision: { attempted: second, applied: first, error: ['deployments/web.yaml:7:8: bad'] } }));
  });
  afterAll(async () => {
    await hub?.close();
    await tmp?.remove();
  });

  it('lists revisions newest first, per region applied, refused or halted, with subjects from --repo', async () => {
    const run = await runCli(['history', '--hub-url', hub.url, '--repo', repo], { env: { ...NO_CONTEXT, CASCADE_HUB_READ_TOKEN: undefined } });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const text = run.stdout;
    expect(text.indexOf(second.slice(0, 8))).toBeLessThan(text.indexOf(first.slice(0, 8)));
    // One region refused it, another halted: the hub calls the commit Refused.
    expect(text).toMatch(new RegExp(`${second.slice(0, 8)}  Refused +\\d{4}-.*Z  web 2\\.0\\.0 \\(Cascade Test\\)`));
    expect(text).toContain('    eu-west: halted (web 2.0.0: at the halt (1970-01-01T00:00:00Z): 2 of 3 attempted devices failed; now: 2 failed, 0 updating, 1 healthy of 3)');
    expect(text).toContain('    us-east: refused (deployments/web.yaml:7:8: bad)');
    const json = JSON.parse((await runCli(['history', '--hub-url', hub.url, '--json', '--limit', '1'], { env: NO_CONTEXT })).stdout);
    expect(json).toHaveLength(1);
    expect(json[0]).toMatchObject({ revision: second, regions: [{ region: 'eu-west', outcome: 'halted' }, { region: 'us-east', outcome: 'refused' }] });
  }, 120_000);
});
