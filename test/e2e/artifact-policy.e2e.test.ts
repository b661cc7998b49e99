/**
 * A real `cascade region` refuses a revision whose artifact URLs a device must never fetch, keeps
 * serving the last good one, accepts a lab's local server only when named with
 * --allow-artifact-origin, and names the symlinks it does not follow in a warning.
 */
import { symlink } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RegionStatus } from '../../src/reconciler/region-status.js';
import { commitFiles, git, makeLocalRepo } from '../support/git-fixtures.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../support/region-process.js';
import { smallFleet } from '../support/small-fleet.js';

const TOKEN = 'artifact-policy-token';

async function status(url: string): Promise<RegionStatus> {
  return (await (await fetch(`${url}/api/v1/status`)).json()) as RegionStatus;
}

async function reconcile(url: string): Promise<RegionStatus> {
  await fetch(`${url}/api/v1/reconcile?wait=true`, { method: 'POST' });
  return status(url);
}

function webApp(url: string): string {
  return `apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: web\nspec:\n  artifacts:\n    "1.0.0":\n      url: ${url}\n      sha256: "${'a'.repeat(64)}"\n      size: 3\n`;
}

describe('a region and the artifact URLs of a revision', () => {
  let root: string;
  const regions: RegionProcess[] = [];
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-artifact-policy-'));
  });
  afterEach(async () => {
    for (const r of regions.splice(0)) await r.kill('SIGTERM');
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('refuses file: and metadata URLs, keeps the last good revision, and warns about a symlink it does not follow', async () => {
    const repo = join(root, 'fleet');
    const { head: good } = await makeLocalRepo(repo, { ...smallFleet(), 'apps/web.yaml': webApp('https://artifacts.example.com/web-1.0.0.tgz') });
    const r = await startRegionProcess(['--repo', repo, '--region', 'us-east', '--data', join(root, 'data-1'), '--interval', '1h', '--enrollment-token', TOKEN]);
    regions.push(r);
    await waitFor(async () => ((await status(r.url)).revision.applied === good ? true : undefined), 20_000, async () => JSON.stringify(await status(r.url)));

    for (const url of ['file:///etc/shadow', 'http://169.254.169.254/latest/meta-data/', 'http://0x7f.1:8080/web.tgz', 'https://[::ffff:127.0.0.1]/web.tgz']) {
      const bad = await commitFiles(repo, { 'apps/web.yaml': webApp(url) }, `artifact ${url}`);
      const s = await waitFor(async () => {
        const current = await reconcile(r.url);
        return current.revision.attempted === bad ? current : undefined;
      }, 20_000, async () => JSON.stringify(await status(r.url)));
      expect(s.revision.applied, url).toBe(good);
      expect(s.revision.error?.join('\n'), url).toMatch(/^apps\/web\.yaml:8:12: App "web" artifact of version "1\.0\.0": /);
    }

    // A link in the repository: never followed, and said so.
    await symlink('/etc/passwd', join(repo, 'apps', 'passwd.yaml'));
    await git(repo, ['add', '-A']);
    const linked = await commitFiles(repo, { 'apps/web.yaml': webApp('https://artifacts.example.com/web-1.0.0.tgz') }, 'a link');
    await waitFor(async () => ((await reconcile(r.url)).revision.applied === linked ? true : undefined), 20_000, async () => JSON.stringify(await status(r.url)));
    const warning = await waitFor(() => r.logs.find((l) => l['level'] === 40 && String(l['msg']).includes('apps/passwd.yaml')), 10_000, () => 'a warning naming apps/passwd.yaml');
    expect(String(warning['msg'])).toContain('symlink not followed');
  });

  it('accepts a lab server on 127.0.0.1 only when --allow-artifact-origin names it', async () => {
    const repo = join(root, 'lab');
    const { head } = await makeLocalRepo(repo, { ...smallFleet(), 'apps/web.yaml': webApp('http://127.0.0.1:8765/web-1.0.0.tgz') });
    const refused = await startRegionProcess(['--repo', repo, '--region', 'us-east', '--data', join(root, 'data-2'), '--interval', '1h', '--enrollment-token', TOKEN]);
    regions.push(refused);
    const s = await waitFor(async () => {
      const current = await status(refused.url);
      return current.revision.attempted === head ? current : undefined;
    }, 20_000, async () => JSON.stringify(await status(refused.url)));
    expect(s.revision.applied).toBeNull();
    expect(s.revision.error?.join('\n')).toContain('--allow-artifact-origin http://127.0.0.1:8765/');

    const allowed = await startRegionProcess(
      ['--repo', repo, '--region', 'us-east', '--data', join(root, 'data-3'), '--interval', '1h', '--enrollment-token', TOKEN],
      { CASCADE_ALLOW_ARTIFACT_ORIGIN: 'http://127.0.0.1:8765/' },
    );
    regions.push(allowed);
    await waitFor(async () => ((await status(allowed.url)).revision.applied === head ? true : undefined), 20_000, async () => JSON.stringify(await status(allowed.url)));
  });
});
