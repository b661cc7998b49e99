import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { git, writeFiles } from '../support/git-fixtures.js';

// Each test runs the real CLI several times; on a busy 2-core machine one run can take seconds.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const CLI = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI asynchronously, so that an HTTP server in this process can answer it. */
function cascade(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' }, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const doc = (kind: string, name: string, spec: string) => `apiVersion: cascade/v1\nkind: ${kind}\nmetadata:\n  name: ${name}\nspec:\n${spec}`;

const FLEET = {
  'apps/web.yaml': doc('App', 'web', '  description: web UI\n'),
  'apps/agent.yaml': doc('App', 'agent', '  description: device agent\n'),
  'regions/eu-west.yaml': doc('Region', 'eu-west', '  rollout:\n    waves: [10, 100]\n'),
  'deployments/web.yaml': doc('Deployment', 'web', '  app: web\n  version: 2.0.0\n'),
  'deployments/web-eu.yaml': doc('Deployment', 'web-eu', '  app: web\n  version: 2.1.0\n  priority: 10\n  selector:\n    regions: [eu-west]\n'),
  'deployments/agent.yaml': doc('Deployment', 'agent', '  app: agent\n  version: 1.4.0\n'),
};

const INVENTORY = [
  { id: 'eu-1', region: 'eu-west', labels: { hw: 'rpi4' }, apps: { web: '2.0.0', agent: '1.4.0' } },
  { id: 'eu-2', region: 'eu-west', labels: {}, apps: { agent: '1.3.9', old: '0.1' } },
  { id: 'us-1', region: 'us-east', labels: {}, apps: { web: '2.0.0', agent: '1.4.0' } },
];

let root: string;
let repo: string;
let inventory: string;
let firstCommit: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-plan-'));
  repo = join(root, 'fleet');
  await writeFiles(repo, { ...FLEET, 'deployments/web-eu.yaml': FLEET['deployments/web-eu.yaml'].replace('2.1.0', '2.0.5') });
  await git(repo, ['init', '-q', '-b', 'main']);
  await git(repo, ['add', '-A']);
  await git(repo, ['commit', '-q', '-m', 'web-eu 2.0.5']);
  firstCommit = await git(repo, ['rev-parse', 'HEAD']);
  await writeFiles(repo, FLEET);
  await git(repo, ['commit', '-q', '-am', 'web-eu 2.1.0']);
  inventory = join(root, 'inventory.json');
  await writeFile(inventory, JSON.stringify(INVENTORY, null, 2));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('cascade plan', () => {
  it('prints totals and steps as text', async () => {
    const run = await cascade(['plan', repo, '--inventory', inventory], root);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Cascade plan for the working tree');
    expect(run.stdout).toContain('4 steps on 2 devices: 1 install, 2 upgrades, 1 removal');
    expect(run.stdout).toContain('upgrades 1 device in eu-west');
    expect(run.stdout).toMatch(/eu-west +web-eu +\d +eu-1 +web +upgrade +2\.0\.0 +2\.1\.0 +deployment web-eu asks for 2\.1\.0 \(priority 10\), device runs 2\.0\.0/);
    expect(run.stdout).not.toContain('us-1');
  });

  it('prints only the plan JSON on stdout with --json and --format json', async () => {
    const run = await cascade(['plan', repo, '--inventory', inventory, '--json'], root);
    expect(run.code).toBe(0);
    const json = JSON.parse(run.stdout);
    expect(json.revision).toBeNull();
    expect(json.conflicts).toEqual([]);
    // Plan order: region, Deployment (removals last), wave, device.
    expect(json.steps.map((s: Record<string, unknown>) => [s.device, s.app, s.from, s.to, s.action, s.deployment])).toEqual([
      ['eu-2', 'agent', '1.3.9', '1.4.0', 'upgrade', 'agent'],
      ['eu-1', 'web', '2.0.0', '2.1.0', 'upgrade', 'web-eu'],
      ['eu-2', 'web', null, '2.1.0', 'install', 'web-eu'],
      ['eu-2', 'old', '0.1', null, 'remove', null],
    ]);
    for (const step of json.steps) expect(Object.keys(step).slice(0, 7)).toEqual(['device', 'app', 'from', 'to', 'action', 'deployment', 'wave']);
    const viaFormat = await cascade(['plan', repo, '--inventory', inventory, '--format', 'json'], root);
    expect(viaFormat.stdout).toBe(run.stdout);
  });

  it('prints a Markdown PR comment with --format markdown', async () => {
    const run = await cascade(['plan', repo, '--inventory', inventory, '--format', 'markdown'], root);
    expect(run.code).toBe(0);
    expect(run.stdout.startsWith('### Cascade plan for the working tree\n')).toBe(true);
    expect(run.stdout).toContain('<summary><b>web-eu</b>: web → 2.1.0 on 2 devices (1 install, 1 upgrade)</summary>');
  });

  it('plans a commit with --rev and names its revision', async () => {
    const run = await cascade(['plan', repo, '--inventory', inventory, '--rev', firstCommit, '--json'], root);
    expect(run.code).toBe(0);
    const json = JSON.parse(run.stdout);
    expect(json.revision).toBe(firstCommit);
    expect(json.steps.filter((s: { deployment: string }) => s.deployment === 'web-eu').map((s: { to: string }) => s.to)).toEqual(['2.0.5', '2.0.5']);
  });

  it('prints fleet problems as path:line:col and exits 1 without a plan', async () => {
    const broken = join(root, 'broken');
    await writeFiles(broken, { ...FLEET, 'deployments/agent.yaml': doc('Deployment', 'agent', '  app: agnet\n  version: 1.4.0\n') });
    const run = await cascade(['plan', broken, '--inventory', inventory, '--json'], root);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/deployments\/agent\.yaml:\d+:\d+: .*agnet/);
    expect(run.stderr).toContain('fix it to get a plan');
  });

  it('rejects a bad inventory with its file, device index and id, exit 2', async () => {
    const duplicate = join(root, 'duplicate.json');
    await writeFile(duplicate, JSON.stringify([...INVENTORY, { ...INVENTORY[0], region: 'us-east' }]));
    const run = await cascade(['plan', repo, '--inventory', duplicate], root);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(`${duplicate}: device at index 3 (id "eu-1"): duplicate id, already used by the device at index 0`);
    expect(run.stderr).toContain('[invalid-inventory]');

    const notJson = join(root, 'not-json.json');
    await writeFile(notJson, '[{"id": "a",}]');
    const bad = await cascade(['plan', repo, '--inventory', notJson], root);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`${notJson}:1:13: not valid JSON`);

    const missing = await cascade(['plan', repo, '--inventory', join(root, 'nope.json')], root);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('nope.json: ENOENT; check the --inventory path');

    const none = await cascade(['plan', repo], root);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('pass --inventory FILE');
  });

  describe('with --region-url', () => {
    let server: Server;
    let url: string;
    let requests: string[];

    beforeAll(async () => {
      requests = [];
      server = createServer((req, res) => {
        requests.push(req.url ?? '');
        if (req.url === '/api/v1/devices') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(INVENTORY));
        } else {
          res.writeHead(404).end('no such route');
        }
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    afterAll(async () => {
      await new Promise((resolve) => server.close(resolve));
    });

    it('reads the inventory from GET URL/api/v1/devices', async () => {
      const fromRegion = await cascade(['plan', repo, '--region-url', `${url}/`, '--json'], root);
      const fromFile = await cascade(['plan', repo, '--inventory', inventory, '--json'], root);
      expect(fromRegion.code).toBe(0);
      expect(requests).toEqual(['/api/v1/devices']);
      expect(fromRegion.stdout).toBe(fromFile.stdout);
    });

    it('says which URL it could not reach or what the region answered, exit 2', async () => {
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      const unreachable = await cascade(['plan', repo, '--region-url', `http://127.0.0.1:${port}`], root);
      expect(unreachable.code).toBe(2);
      expect(unreachable.stderr).toContain(`cannot reach the region at http://127.0.0.1:${port}/api/v1/devices: ECONNREFUSED`);

      const wrongPath = await cascade(['plan', repo, '--region-url', `${url}/prefix`], root);
      expect(wrongPath.code).toBe(2);
      expect(wrongPath.stderr).toContain(`${url}/prefix/api/v1/devices answered 404`);
    });
  });
});
