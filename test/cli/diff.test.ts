import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { git, writeFiles } from '../support/git-fixtures.js';
import { runCli } from '../support/run-cli.js';

// Each test runs the real CLI several times; on a busy 2-core machine one run can take seconds.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const doc = (kind: string, name: string, spec: string) => `apiVersion: cascade/v1\nkind: ${kind}\nmetadata:\n  name: ${name}\nspec:\n${spec}`;

const BASE = {
  'apps/web.yaml': doc('App', 'web', '  description: web UI\n'),
  'apps/old.yaml': doc('App', 'old', '  description: retired\n'),
  'regions/eu-west.yaml': doc('Region', 'eu-west', '  rollout:\n    waves: [10, 100]\n    window: {schedule: "0 2 * * *", duration: 2h}\n'),
  'regions/us-east.yaml': doc('Region', 'us-east', '  description: no window\n'),
  'deployments/web.yaml': doc('Deployment', 'web', '  app: web\n  version: 2.0.0\n'),
  'deployments/old.yaml': doc('Deployment', 'old', '  app: old\n  version: 0.1.0\n  selector:\n    regions: [us-east]\n'),
};

const INVENTORY = [
  { id: 'eu-1', region: 'eu-west', labels: {}, apps: { web: '2.0.0' } },
  { id: 'us-1', region: 'us-east', labels: {}, apps: { web: '2.0.0', old: '0.1.0' } },
  { id: 'us-2', region: 'us-east', labels: {}, apps: { web: '1.9.0', old: '0.1.0' } },
];

let root: string;
let repo: string;
let inventory: string;
let baseCommit: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-diff-'));
  repo = join(root, 'fleet');
  await writeFiles(repo, BASE);
  await git(repo, ['init', '-q', '-b', 'main']);
  await git(repo, ['add', '-A']);
  await git(repo, ['commit', '-q', '-m', 'base']);
  baseCommit = await git(repo, ['rev-parse', 'HEAD']);
  await writeFiles(repo, { 'deployments/web.yaml': doc('Deployment', 'web', '  app: web\n  version: 2.1.0\n') });
  await git(repo, ['rm', '-q', 'deployments/old.yaml']);
  await git(repo, ['commit', '-q', '-am', 'web 2.1.0, retire old']);
  inventory = join(root, 'inventory.json');
  await writeFile(inventory, JSON.stringify(INVENTORY));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('cascade diff', () => {
  it('shows which devices move between two commits, per Deployment and region', async () => {
    const run = await runCli(['diff', repo, '--base', 'HEAD~1', '--head', 'HEAD', '--inventory', inventory]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Cascade diff HEAD~1 (${baseCommit.slice(0, 8)}) -> HEAD`);
    expect(run.stdout).toContain('3 devices in 2 regions change: 3 upgrades, 2 removals');
    expect(run.stdout).toContain('web in eu-west: web 2.0.0 -> 2.1.0 on 1 device (1 upgrade)');
    expect(run.stdout).toContain('web in us-east: web 2.0.0 -> 2.1.0 on 2 devices (2 upgrades)');
    expect(run.stdout).toContain('! old is removed from 2 devices in us-east');
    expect(run.stdout).toContain('! 2 devices in us-east change outside any maintenance window');
  });

  it('diffs the working tree against a base by default, and the JSON is the same data', async () => {
    const worktree = await runCli(['diff', repo, '--base', baseCommit, '--inventory', inventory, '--json']);
    const commits = await runCli(['diff', repo, '--base', baseCommit, '--head', 'main', '--inventory', inventory, '--format', 'json']);
    expect(worktree.code).toBe(0);
    const [a, b] = [JSON.parse(worktree.stdout), JSON.parse(commits.stdout)];
    expect(a.head.revision).toBeNull();
    expect(b.head.revision).toMatch(/^[0-9a-f]{40}$/);
    expect(a.groups).toEqual(b.groups);
    expect(a.totals).toEqual({ devices: 3, changes: 5, counts: { install: 0, upgrade: 3, downgrade: 0, remove: 2 }, regions: 2 });
  });

  it('writes the pull-request comment with --format markdown: summary first, devices folded', async () => {
    const run = await runCli(['diff', repo, '--base', 'main~1', '--head', 'main', '--inventory', inventory, '--format', 'markdown']);
    expect(run.code).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines[0]).toMatch(/^### Cascade diff: `main~1 \([0-9a-f]{8}\)` → `main \([0-9a-f]{8}\)`$/);
    expect(lines[2]).toBe('**3 devices in 2 regions change: 3 upgrades, 2 removals.**');
    expect(run.stdout).toContain('> [!WARNING]\n> Deployment old (old 0.1.0) is deleted');
    expect(run.stdout).toContain('<summary>web in us-east: web 2.0.0 → 2.1.0 on 2 devices (2 upgrades)</summary>');
  });

  it('without an inventory still lists the Deployments that change', async () => {
    const run = await runCli(['diff', repo, '--base', 'HEAD~1', '--head', 'HEAD'], { env: { CASCADE_REGION_URL: undefined } });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('No inventory given: only the Deployments are compared.');
    expect(run.stdout).toContain('  old: deleted (was old 0.1.0)');
    expect(run.stdout).toContain('  web: web 2.0.0 -> 2.1.0');
  });

  it('exits 1 with located problems when head is invalid, 2 on a bad revision or a missing --base', async () => {
    const broken = join(root, 'broken');
    await writeFiles(broken, BASE);
    await git(broken, ['init', '-q', '-b', 'main']);
    await git(broken, ['add', '-A']);
    await git(broken, ['commit', '-q', '-m', 'base']);
    await writeFiles(broken, { 'deployments/web.yaml': doc('Deployment', 'web', '  app: wbe\n  version: 2.1.0\n') });
    const invalid = await runCli(['diff', broken, '--base', 'main']);
    expect(invalid.code).toBe(1);
    expect(invalid.stdout).toBe('');
    expect(invalid.stderr).toMatch(/deployments\/web\.yaml:\d+:\d+: .*wbe/);
    const unknown = await runCli(['diff', repo, '--base', 'no-such-branch']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('"no-such-branch" is not a branch, tag or commit');
    const missing = await runCli(['diff', repo]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('diff needs --base <rev>');
  });

  describe('with --region-url', () => {
    let server: Server;
    let url: string;
    beforeAll(async () => {
      // Answers like a region started with --operator-token s3cret.
      server = createServer((req, res) => {
        if (req.headers.authorization !== 'Bearer s3cret') return void res.writeHead(401).end('{"error":{"code":"unauthorized"}}');
        if (req.url === '/api/v1/devices') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(INVENTORY));
        res.writeHead(404).end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it("reads the region's live inventory with its operator token, and says when the token is missing", async () => {
      const run = await runCli(['diff', repo, '--base', 'HEAD~1', '--head', 'HEAD', '--region-url', url, '--json'], { env: { CASCADE_OPERATOR_TOKEN: 's3cret' } });
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout).inventory).toBe(3);
      const denied = await runCli(['diff', repo, '--base', 'HEAD~1', '--region-url', url], { env: { CASCADE_OPERATOR_TOKEN: undefined } });
      expect(denied.code).toBe(2);
      expect(denied.stderr).toContain("needs the region's operator token");
    });
  });
});
