import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { git } from './support/git-fixtures.js';
import { CLI, runCli } from './support/run-cli.js';

/**
 * The CI recipes of fleet-repo-template/ run: their commands are taken from the YAML files as shipped
 * and executed on a two-commit fleet repository made by `cascade init`, with the local `cascade`.
 * Not run here: the steps that need the internet (GitHub's `uses:` actions, cloning and installing
 * Cascade from its repository); `gh` and the GitLab API are stand-ins that record what they are sent.
 */
const PROJECT = fileURLToPath(new URL('../', import.meta.url));
const TEMPLATE = join(PROJECT, 'fleet-repo-template');

interface Step {
  name?: string;
  uses?: string;
  if?: string;
  run?: string;
  env?: Record<string, string>;
}

/** The few GitHub expressions the workflow uses: dotted names, 'strings', `a || b`, `a == b`. */
function evaluate(expression: string, context: Record<string, unknown>): string {
  const value = (term: string): string => {
    term = term.trim();
    const literal = /^'(.*)'$/.exec(term);
    if (literal) return literal[1]!;
    let current: unknown = context;
    for (const part of term.split('.')) current = (current as Record<string, unknown> | undefined)?.[part];
    return current === undefined || current === null ? '' : String(current);
  };
  const eq = /^(.*?)==(.*)$/.exec(expression);
  if (eq) return value(eq[1]!) === value(eq[2]!) ? 'true' : '';
  return expression.split('||').map(value).find((v) => v !== '') ?? '';
}

const substitute = (text: string, context: Record<string, unknown>) => text.replace(/\$\{\{\s*(.*?)\s*\}\}/g, (_, expr: string) => evaluate(expr, context));

function sh(shell: string, args: string[], script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(shell, [...args, script], { cwd, env, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let root: string;
let repo: string;
let base: string;
let head: string;
let bin: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-ci-'));
  repo = join(root, 'fleet');
  expect((await runCli(['init', repo])).code).toBe(0);
  await copyFile(join(PROJECT, 'examples', 'inventory.json'), join(repo, 'inventory.json'));
  await git(repo, ['add', '-A']);
  await git(repo, ['commit', '-q', '-m', 'inventory for the CI diff']);
  base = await git(repo, ['rev-parse', 'HEAD']);
  const deployment = join(repo, 'deployments', 'telemetry-forwarder.yaml');
  await writeFile(deployment, (await readFile(deployment, 'utf8')).replace('version: 0.14.2', 'version: 0.15.0'));
  await git(repo, ['commit', '-q', '-am', 'telemetry-forwarder 0.15.0']);
  head = await git(repo, ['rev-parse', 'HEAD']);
  // `cascade` on PATH is this checkout; `gh` records its arguments and the body it would post.
  bin = join(root, 'bin');
  await mkdir(bin);
  await symlink(CLI, join(bin, 'cascade'));
  await writeFile(join(bin, 'gh'), `#!/bin/sh\nprintf '%s\\n' "$*" >> "${root}/gh-calls"\nwhile [ $# -gt 0 ]; do if [ "$1" = --body-file ]; then cp "$2" "${root}/gh-body.md"; fi; shift; done\n`);
  await chmod(join(bin, 'gh'), 0o755);
}, 120_000);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('the template ships CI recipes', () => {
  it('cascade init copies them into a new fleet repository, and the loader does not read them as documents', async () => {
    const files = (await git(repo, ['ls-files'])).split('\n');
    expect(files).toContain('.github/workflows/cascade.yml');
    expect(files).toContain('.gitlab-ci.yml');
    const validate = await runCli(['validate', repo]);
    expect(validate.stdout).toMatch(/valid \(4 apps, 8 deployments, 3 regions\)/);
  });

  it('neither installs the unrelated npm package "cascade"', async () => {
    for (const file of ['.github/workflows/cascade.yml', '.gitlab-ci.yml']) {
      const text = await readFile(join(TEMPLATE, file), 'utf8');
      expect(text).not.toMatch(/npm (install|i|add) [^\n]*\bcascade\b/);
      expect(text).not.toMatch(/npx cascade/);
    }
  });
});

describe('GitHub Actions: .github/workflows/cascade.yml', () => {
  const runWorkflow = async (event: 'push' | 'pull_request') => {
    const workflow = parse(await readFile(join(TEMPLATE, '.github/workflows/cascade.yml'), 'utf8')) as {
      on: Record<string, unknown>;
      env: Record<string, string>;
      jobs: Record<string, { steps: Step[] }>;
    };
    expect(Object.keys(workflow.on)).toEqual(['push', 'pull_request']);
    const temp = await mkdtemp(join(root, 'runner-'));
    const context = {
      github: { event_name: event, event: { number: 7, pull_request: { base: { sha: base } } }, token: 'github-token' },
      vars: {},
      secrets: {},
    };
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: `${bin}:${process.env['PATH']}`,
      RUNNER_TEMP: temp,
      GITHUB_PATH: join(temp, 'github-path'),
      GITHUB_STEP_SUMMARY: join(temp, 'summary.md'),
      CASCADE_LOG_LEVEL: 'warn',
      CASCADE_REGION_URL: undefined,
      CASCADE_OPERATOR_TOKEN: undefined,
    };
    for (const [key, value] of Object.entries(workflow.env)) env[key] = substitute(value, context);
    const ran: string[] = [];
    for (const step of workflow.jobs['check']!.steps) {
      if (step.uses || step.name === 'Install Cascade') continue; // need the internet
      if (step.if && evaluate(step.if, context) === '') continue;
      const stepEnv = { ...env };
      for (const [key, value] of Object.entries(step.env ?? {})) stepEnv[key] = substitute(value, context);
      const result = await sh('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c'], substitute(step.run!, context), repo, stepEnv);
      expect(result.code, `step "${step.name}" failed:\n${result.stderr}`).toBe(0);
      ran.push(step.name!);
    }
    return { ran, temp };
  };

  it('on a push: validates', async () => {
    const { ran } = await runWorkflow('push');
    expect(ran).toEqual(['Validate']);
  }, 120_000);

  it('on a pull request: validates, diffs against the base commit and comments with the Markdown', async () => {
    const { ran, temp } = await runWorkflow('pull_request');
    expect(ran).toEqual(['Validate', 'Diff against the base branch', 'Comment on the pull request']);
    const body = await readFile(join(root, 'gh-body.md'), 'utf8');
    expect(body).toMatch(/^### Cascade diff: `[0-9a-f]{8}` → `HEAD \([0-9a-f]{8}\)`/);
    expect(body).toContain(head.slice(0, 8));
    expect(body).toContain('**30 devices in 3 regions change: 30 upgrades.**');
    expect(body).toContain('_Compared against 30 devices of inventory.json._');
    expect(body).toContain('change outside any maintenance window');
    expect(await readFile(join(root, 'gh-calls'), 'utf8')).toContain(`pr comment 7 --edit-last --body-file ${temp}/cascade-diff.md`);
    expect(await readFile(join(temp, 'summary.md'), 'utf8')).toBe(body);
  }, 120_000);
});

describe('GitLab CI: .gitlab-ci.yml', () => {
  let api: Server;
  let apiUrl: string;
  const notes: Array<{ url: string; token: string; body: string }> = [];
  beforeAll(async () => {
    // Stands in for GitLab's API: records the merge-request note the job posts.
    api = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        notes.push({ url: req.url ?? '', token: String(req.headers['private-token']), body: (JSON.parse(body) as { body: string }).body });
        res.writeHead(201, { 'content-type': 'application/json' }).end('{"id":1}');
      });
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}/api/v4`;
  });
  afterAll(() => new Promise<void>((resolve) => api.close(() => resolve())));

  const runJob = async (mergeRequest: boolean) => {
    const ci = parse(await readFile(join(TEMPLATE, '.gitlab-ci.yml'), 'utf8')) as {
      variables: Record<string, string>;
      cascade: { image: { name: string; entrypoint: string[] }; script: string[] };
    };
    expect(ci.cascade.image).toEqual({ name: '$CASCADE_IMAGE', entrypoint: [''] });
    expect(ci.variables['GIT_DEPTH']).toBe('0');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...ci.variables,
      // In the image Cascade is /app/bin/cascade.js; here it is this checkout.
      CASCADE: `${process.execPath} ${CLI}`,
      CASCADE_LOG_LEVEL: 'warn',
      CASCADE_REGION_URL: undefined,
      CASCADE_OPERATOR_TOKEN: undefined,
      CI_API_V4_URL: apiUrl,
      CI_PROJECT_ID: '42',
      CASCADE_GITLAB_TOKEN: 'gitlab-token',
      ...(mergeRequest ? { CI_MERGE_REQUEST_IID: '9', CI_MERGE_REQUEST_DIFF_BASE_SHA: base } : { CI_MERGE_REQUEST_IID: undefined }),
    };
    // The runner runs the script lines in one shell that stops at the first failing one.
    return sh('sh', ['-e', '-c'], ci.cascade.script.join('\n'), repo, env);
  };

  it('on a push: validates, posts nothing', async () => {
    const result = await runJob(false);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/valid \(4 apps, 8 deployments, 3 regions\)/);
    expect(notes).toEqual([]);
  }, 120_000);

  it('on a merge request: validates, diffs against the merge base and posts the Markdown as a note', async () => {
    const result = await runJob(true);
    expect(result.code, result.stderr).toBe(0);
    expect(notes).toHaveLength(1);
    expect(notes[0]!.url).toBe('/api/v4/projects/42/merge_requests/9/notes');
    expect(notes[0]!.token).toBe('gitlab-token');
    expect(notes[0]!.body).toContain('**30 devices in 3 regions change: 30 upgrades.**');
    expect(notes[0]!.body).toContain('telemetry-forwarder');
  }, 120_000);
});
