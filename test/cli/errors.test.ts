import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { freePort } from '../support/free-port.js';
import { git, writeFiles } from '../support/git-fixtures.js';
import { CLI, runCli } from '../support/run-cli.js';
import { startRegionProcess, waitFor } from '../support/region-process.js';

// Each test runs the real CLI several times; on a busy 2-core machine one run can take seconds.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

/** Every failure a user can cause: one line `cascade: ... [code]`, exit 2, nothing left behind. */
const ONE_LINE = /^cascade: [^\n]+ \[[a-z-]+\]\n$/;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-errors-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('option errors', () => {
  it('a typo of a required flag is an unknown option with a suggestion, not "required option not specified"', async () => {
    const run = await runCli(['region', '--regoin', 'eu', '--repo', root]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(ONE_LINE);
    expect(run.stderr).toContain("unknown option '--regoin'; did you mean --region?");
    expect(run.stderr).toContain('cascade region --help');
    expect(run.stderr).toContain('[unknown-option]');
    expect(run.stderr).not.toContain('required');
  });

  it('the start of a longer flag, or a typo of it, suggests that flag', async () => {
    for (const typed of ['--region', '--regoin']) {
      const run = await runCli(['devices', 'list', typed, 'http://127.0.0.1:1']);
      expect(run.code).toBe(2);
      expect(run.stderr).toBe(`cascade: devices list: unknown option '${typed}'; did you mean --region-url? (see \`cascade devices list --help\`) [unknown-option]\n`);
    }
  });

  it('a missing required flag names it, its variable and where to look', async () => {
    const run = await runCli(['devices', 'list'], { env: { CASCADE_REGION_URL: undefined } });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(ONE_LINE);
    expect(run.stderr).toContain('devices list needs --region-url <url>');
    expect(run.stderr).toContain('CASCADE_REGION_URL');
    expect(run.stderr).toContain('[missing-option]');
  });

  it('unknown commands, bad choices and bad values exit 2 with our wording', async () => {
    const command = await runCli(['devcies']);
    expect(command).toMatchObject({ code: 2, stdout: '' });
    expect(command.stderr).toMatch(ONE_LINE);
    expect(command.stderr).toContain("unknown command 'devcies'; did you mean devices?");
    const choice = await runCli(['plan', '--format', 'xml', '--inventory', 'x']);
    expect(choice.code).toBe(2);
    expect(choice.stderr).toMatch(ONE_LINE);
    expect(choice.stderr).toContain('Allowed choices are text, json, markdown');
    expect(choice.stderr).toContain('[invalid-argument]');
    const duration = await runCli(['status', '--region-url', 'http://127.0.0.1:1', '--interval', '5q']);
    expect(duration.code).toBe(2);
    expect(duration.stderr).toContain('"5q" is not a duration');
  });

  it('a URL that is not http(s), from a flag or a variable, is refused before anything is asked', async () => {
    const flag = await runCli(['devices', 'list', '--region-url', 'ftp://region']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(ONE_LINE);
    expect(flag.stderr).toContain('"ftp://region" is not an http(s) URL');
    const variable = await runCli(['status'], { env: { CASCADE_REGION_URL: 'region:8080' } });
    expect(variable.code).toBe(2);
    expect(variable.stderr).toContain("value 'region:8080' from env 'CASCADE_REGION_URL' is invalid");
  });

  it('--help and --version still exit 0', async () => {
    expect((await runCli(['--version'])).code).toBe(0);
    const help = await runCli(['plan', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--inventory');
  });
});

describe('files, folders and revisions', () => {
  it('a region pointed at a missing repository creates no state folder', async () => {
    const data = join(root, 'never-created');
    const run = await runCli(['region', '--repo', join(root, 'no-such-repo'), '--region', 'eu', '--data', data, '--insecure-open-enrollment']);
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split('\n').at(-1)).toMatch(/^cascade: --repo .*no-such-repo: no such folder.* \[source-not-a-repo\]$/);
    expect(existsSync(data)).toBe(false);
  });

  it('a state folder it cannot create is refused before anything starts, with advice', async () => {
    const repo = join(root, 'repo');
    await writeFiles(repo, { 'README.md': 'fleet\n' });
    await git(repo, ['init', '-q', '-b', 'main']);
    const file = join(root, 'a-file');
    await writeFile(file, 'not a folder');
    for (const [command, args] of [
      ['region', ['--repo', repo, '--region', 'eu', '--insecure-open-enrollment']],
      ['hub', ['--token', 'secret']],
    ] as const) {
      const run = await runCli([command, ...args, '--data', join(file, 'state'), '--listen', '127.0.0.1:0']);
      expect(run.code).toBe(2);
      expect(run.stderr.trim().split('\n').at(-1)).toMatch(/a-file is a file, not a folder; pass --data DIR .* \[state-dir-unusable\]$/);
    }
  });

  it('an empty repository has no revision yet, and says how to make one', async () => {
    const empty = join(root, 'empty');
    await mkdir(empty);
    await git(empty, ['init', '-q', '-b', 'main']);
    const run = await runCli(['validate', empty, '--rev', 'HEAD']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(ONE_LINE);
    expect(run.stderr).toContain('has no commits yet');
    expect(run.stderr).toContain('[no-commits]');
  });

  it('an unreadable inventory file names the file and the flag', async () => {
    // A folder of its own: root holds other tests' repositories, which plan would warn about as submodules.
    const fleet = join(root, 'plain-fleet');
    await mkdir(fleet, { recursive: true });
    const run = await runCli(['plan', fleet, '--inventory', join(root, 'missing.json')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(ONE_LINE);
    expect(run.stderr).toContain('missing.json: ENOENT; check the --inventory path');
  });
});

describe('a port in use', () => {
  let blocker: Server;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => blocker.close(() => resolve())));

  it('the region and the hub say which address is taken and what to do, without a stack trace', async () => {
    const repo = join(root, 'repo-port');
    await writeFiles(repo, { 'README.md': 'fleet\n' });
    await git(repo, ['init', '-q', '-b', 'main']);
    await git(repo, ['add', '-A']);
    await git(repo, ['commit', '-q', '-m', 'first']);
    const region = await runCli(['region', '--repo', repo, '--region', 'eu', '--insecure-open-enrollment', '--data', join(root, 'region-data'), '--listen', `127.0.0.1:${port}`]);
    const hub = await runCli(['hub', '--token', 'secret', '--data', join(root, 'hub-data'), '--listen', `127.0.0.1:${port}`]);
    for (const run of [region, hub]) {
      expect(run.code).toBe(2);
      const last = run.stderr.trim().split('\n').at(-1)!;
      expect(last).toBe(`cascade: cannot listen on 127.0.0.1:${port}: the port is already in use (another cascade process?); stop it, or pick a free port with --listen HOST:PORT [address-in-use]`);
      expect(run.stderr).not.toContain('    at ');
    }
  });
});

describe('a closed pipe', () => {
  it('`cascade plan ... | head` ends quietly when the reader goes away', async () => {
    const inventory = join(root, 'big-inventory.json');
    const devices = Array.from({ length: 20_000 }, (_, i) => ({ id: `d${i}`, region: 'eu-west', labels: {}, apps: {} }));
    await writeFile(inventory, JSON.stringify(devices));
    const fleet = join(root, 'fleet');
    await writeFiles(fleet, {
      'apps/web.yaml': 'apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: web\nspec: {}\n',
      'deployments/web.yaml': 'apiVersion: cascade/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  app: web\n  version: 1.0.0\n',
    });
    const child = spawn(process.execPath, [CLI, 'plan', fleet, '--inventory', inventory], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // Like `head -1`: read the first line, then close the pipe.
    await new Promise<void>((resolve) => {
      child.stdout.once('data', () => {
        child.stdout.destroy();
        resolve();
      });
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
});

describe('a region whose repository cannot be read', () => {
  it('does not claim to serve a last good revision it never had, and `status --watch` says why nothing moves', async () => {
    const port = await freePort(); // nothing listens there
    const region = await startRegionProcess(['--repo', `http://127.0.0.1:${port}/fleet.git`, '--region', 'eu', '--insecure-open-enrollment', '--data', join(root, 'unreachable-data')]);
    try {
      const line = await waitFor(() => region.logs.find((l) => String(l['msg']).includes('git source unreachable')), 60_000, () => JSON.stringify(region.logs));
      expect(line['msg']).toBe('git source unreachable and no revision applied yet: devices get nothing until it can be read; check --repo and the credentials');
      expect(region.logs.some((l) => String(l['msg']).includes('last good revision'))).toBe(false);
      const watch = await runCli(['status', '--watch', '--region-url', region.url]);
      expect(watch.code).toBe(2);
      expect(watch.stderr).toMatch(/^cascade: region eu has applied no revision yet and cannot read its repository: .*; check its --repo and git credentials \[no-revision-yet\]\n$/);
      const once = await runCli(['status', '--region-url', region.url]);
      expect(once.stdout).toContain('(git unreachable: no revision applied yet)');
    } finally {
      await region.kill('SIGKILL');
    }
  }, 120_000);
});
