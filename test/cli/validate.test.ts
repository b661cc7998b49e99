import { execFile, execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';

// Each test runs the real CLI several times; on a busy 2-core machine one run can take seconds.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VALID = join(ROOT, 'test/fixtures/fleets/valid');
const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: tmpdir(),
};

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cascade(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'bin/cascade.js'), ...args], { cwd: ROOT }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A copy of the valid fixture fleet in a temp dir, optionally as a git repository with one commit. */
function fleetCopy(options: { git?: boolean } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-validate-'));
  dirs.push(dir);
  cpSync(VALID, dir, { recursive: true });
  if (options.git) {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, env: GIT_ENV, encoding: 'utf8' }).trim();
    git('init', '-q', '-b', 'main');
    git('add', '-A');
    git('commit', '-q', '-m', 'fleet');
  }
  return dir;
}

const BROKEN_DEPLOYMENT = `apiVersion: cascade/v1
kind: Deployment
metadata:
  name: broken
spec:
  app: no-such-app
  version: "1"
  rollout:
    bakeTime: soon
`;

describe('cascade validate', () => {
  it('exits 0 and summarises a valid working tree', async () => {
    const run = await cascade('validate', VALID);
    expect(run).toMatchObject({ code: 0, stdout: 'valid: valid (4 apps, 7 deployments, 4 regions) at the working tree\n' });
  });

  it('prints {valid, revision, problems, warnings} alone on stdout with --json', async () => {
    const run = await cascade('validate', VALID, '--json');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ valid: true, revision: null, problems: [], warnings: [] });
  });

  it('exits 1 and prints every problem as path:line:col: message', async () => {
    const dir = fleetCopy();
    writeFileSync(join(dir, 'deployments/broken.yaml'), BROKEN_DEPLOYMENT);
    writeFileSync(join(dir, 'apps/dup.yaml'), 'apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: camera\n  name: other\n');
    const run = await cascade('validate', dir);
    expect(run.code).toBe(1);
    expect(run.stdout.trimEnd().split('\n')).toEqual([
      'apps/dup.yaml:5:3: key "name" appears more than once in the same mapping; keep one',
      'deployments/broken.yaml:9:15: spec.rollout.bakeTime "soon" is not a duration; write whole numbers with units d, h, m, s or ms, largest first, e.g. 45s, 10m, 1h30m',
    ]);
    expect(run.stderr).toBe(`${basename(dir)}: 2 problems at the working tree\n`);
  });

  it('gives every problem field in --json, and nothing else on stdout', async () => {
    const dir = fleetCopy();
    writeFileSync(join(dir, 'deployments/broken.yaml'), BROKEN_DEPLOYMENT.replace('soon', '10m'));
    const run = await cascade('validate', dir, '--json');
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout)).toEqual({
      valid: false,
      revision: null,
      problems: [
        {
          path: 'deployments/broken.yaml',
          line: 6,
          col: 8,
          pointer: '/spec/app',
          code: 'unknown-app',
          message: 'Deployment "broken" deploys app "no-such-app", but there is no App named "no-such-app"; add an App document or fix spec.app',
        },
      ],
      warnings: [],
    });
  });

  it('checks a commit with --rev, whatever the working tree holds, also in a bare repository', async () => {
    const dir = fleetCopy({ git: true });
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: dir, encoding: 'utf8' }).trim();
    writeFileSync(join(dir, 'deployments/broken.yaml'), BROKEN_DEPLOYMENT);

    expect((await cascade('validate', dir)).code).toBe(1);
    const atMain = await cascade('validate', dir, '--rev', 'main');
    expect(atMain).toMatchObject({ code: 0, stdout: `${basename(dir)}: valid (4 apps, 7 deployments, 4 regions) at main (${head})\n` });
    const json = await cascade('validate', dir, '--rev', head.slice(0, 10), '--json');
    expect(JSON.parse(json.stdout)).toEqual({ valid: true, revision: head, problems: [], warnings: [] });

    const bare = `${dir}-bare.git`;
    dirs.push(bare);
    execFileSync('git', ['clone', '-q', '--bare', dir, bare], { env: GIT_ENV });
    const fromBare = await cascade('validate', bare, '--rev', 'main', '--json');
    expect(fromBare.code).toBe(0);
    expect(JSON.parse(fromBare.stdout)).toMatchObject({ valid: true, revision: head });
  });

  it('exits 2 with what to do for a missing directory, an unknown --rev, or --rev outside git', async () => {
    const missing = await cascade('validate', '/nonexistent/fleet');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('/nonexistent/fleet is not a directory; pass the directory of a fleet repository');

    const dir = fleetCopy({ git: true });
    const unknown = await cascade('validate', dir, '--rev', 'no-such-branch');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('"no-such-branch" is not a branch, tag or commit');
    expect(unknown.stdout).toBe('');

    const notGit = await cascade('validate', VALID, '--rev', 'main');
    expect(notGit.code).toBe(2);
    expect(notGit.stderr).toContain('is not a git repository');
  });
});
