import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegionStatus } from '../../src/protocol/region-status.js';
import { git, makeLocalRepo } from '../support/git-fixtures.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../support/region-process.js';
import { smallFleet } from '../support/small-fleet.js';

const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));
const run = promisify(execFile);
const TOKEN = 'removal-enrolment-token';

describe('the mass-removal guard, against a real region', { timeout: 120_000 }, () => {
  let root: string;
  let repo: string;
  let first: string;
  let region: RegionProcess;
  const tokens = new Map<string, string>();

  async function reconcile(): Promise<RegionStatus> {
    await fetch(`${region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
    return (await (await fetch(`${region.url}/api/v1/status`)).json()) as RegionStatus;
  }

  async function desiredApps(id: string): Promise<string[]> {
    const answer = await fetch(`${region.url}/api/v1/devices/${id}/desired`, { headers: { authorization: `Bearer ${tokens.get(id)}` } });
    return Object.keys(((await answer.json()) as { apps: Record<string, unknown> }).apps);
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-removal-'));
    const made = await makeLocalRepo(join(root, 'repo'), smallFleet({ web: '1.0.0' }));
    repo = made.dir;
    first = made.head;
    region = await startRegionProcess(['--repo', repo, '--region', 'us-east', '--data', join(root, 'data'), '--interval', '1h', '--enrollment-token', TOKEN]);
    for (const id of ['d1', 'd2', 'd3', 'd4']) {
      const answer = await fetch(`${region.url}/api/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ deviceId: id, labels: {}, enrollmentToken: TOKEN }) });
      tokens.set(id, ((await answer.json()) as { token: string }).token);
      // A device is handed its desired state after its first report: these report nothing installed.
      const report = await fetch(`${region.url}/api/v1/devices/${id}/report`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.get(id)}` }, body: JSON.stringify({ apps: {} }) });
      expect(report.status).toBe(200);
    }
    await waitFor(async () => ((await reconcile()).revision.applied === first && (await desiredApps('d1')).includes('web') ? true : undefined), 60_000, () => 'first revision handed out');
  }, 120_000);
  afterAll(async () => {
    await region?.kill();
    await rm(root, { recursive: true, force: true });
  });

  it('cascade plan warns before merge; a commit that deletes every file is refused and the last good revision keeps being served', async () => {
    const served = new Map<string, string[]>();
    for (const id of tokens.keys()) served.set(id, await desiredApps(id));
    expect(served.get('d1')).toEqual(['web']);
    await git(repo, ['rm', '-r', '--quiet', '.']);
    const inventory = join(root, 'inventory.json');
    await writeFile(inventory, JSON.stringify(['d1', 'd2', 'd3', 'd4'].map((id) => ({ id, region: 'us-east', labels: {}, apps: { web: '1.0.0' } }))));
    const plan = await run(process.execPath, [BIN, 'plan', repo, '--inventory', inventory, '--format', 'markdown']);
    expect(plan.stdout).toContain('> **Warning:** 4 of 4 devices of region us-east (100%) would lose apps (web on 4), more than --max-removal 10%');
    const text = await run(process.execPath, [BIN, 'plan', repo, '--inventory', inventory]);
    expect(text.stdout).toContain('warning: 4 of 4 devices of region us-east (100%) would lose apps (web on 4)');

    await git(repo, ['commit', '--quiet', '-m', 'oops: everything deleted']);
    const emptied = await git(repo, ['rev-parse', 'HEAD']);
    const status = await reconcile();
    expect(status.revision).toMatchObject({ attempted: emptied, applied: first });
    const error = status.revision.error!.join('\n');
    expect(error).toContain('it deletes the Region document of this region (us-east)');
    expect(error).toContain('4 of 4 devices of region us-east (100%) would lose apps (web on 4)');
    expect(error).toContain('Cascade-Allow-Removal: yes');
    // Nothing was taken away (the served revision's rollout may have handed out more meanwhile).
    for (const id of tokens.keys()) expect(await desiredApps(id)).toEqual(expect.arrayContaining(served.get(id)!));
    expect(region.logs.some((l) => l['level'] === 50 && String(l['msg']).startsWith(`refused ${emptied.slice(0, 8)}`))).toBe(true);

    // The same tree, with the trailer that says it is meant: applied.
    await git(repo, ['commit', '--quiet', '--allow-empty', '-m', 'Retire the us-east fleet', '-m', 'Cascade-Allow-Removal: yes']);
    const meant = await git(repo, ['rev-parse', 'HEAD']);
    const after = await reconcile();
    expect(after.revision).toMatchObject({ attempted: meant, applied: meant, error: null });
    await waitFor(async () => ((await desiredApps('d1')).length === 0 ? true : undefined), 10_000, () => 'web removed');
  });
});
