import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { commitFiles, git, makeFleetRemote, type FleetRemote } from '../support/git-fixtures.js';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http-server.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

// Each test runs the real CLI several times; on a busy 2-core machine one run can take seconds.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));
const run = promisify(execFile);

async function cascade(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: 'Ops', GIT_AUTHOR_EMAIL: 'ops@example.com' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('cascade rollback', () => {
  let root: string;
  let server: GitHttpServer;
  let remote: FleetRemote;
  let clone: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-rollback-'));
    remote = await makeFleetRemote(join(root, 'git'), 'fleet', smallFleet({ web: '1.0.0' }));
    server = await startGitHttpServer({ root: join(root, 'git') });
    clone = join(root, 'clone');
    await git(root, ['clone', '--quiet', `${server.url}/fleet.git`, clone]);
    await commitFiles(clone, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web: roll out 2.0.0');
    await commitFiles(clone, { 'README.md': 'fleet\n' }, 'docs');
  });

  afterAll(async () => {
    await server?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('reverts the last commit that changed the Deployment, names what it reverts, and pushes with --push', async () => {
    const bump = await git(clone, ['rev-parse', 'HEAD~1']);
    const result = await cascade(['rollback', clone, '--deployment', 'web', '--push']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Rolls back Deployment web from 2.0.0 to 1.0.0');
    const message = await git(clone, ['log', '-1', '--format=%B']);
    expect(message).toContain('Revert "web: roll out 2.0.0"');
    expect(message).toContain(`This reverts commit ${bump}.`);
    expect(await git(clone, ['show', 'HEAD:deployments/web.yaml'])).toContain('version: 1.0.0');
    expect(await git(clone, ['status', '--porcelain'])).toBe('');
    // The remote has it: the rollback is a new commit on the branch, not a force-push.
    expect(await git(remote.bare, ['rev-parse', 'main'])).toBe(await git(clone, ['rev-parse', 'HEAD']));
    expect(await git(remote.bare, ['rev-parse', 'main~1'])).not.toBe(bump);
  });

  it('refuses with a clear message when the revert does not apply cleanly', async () => {
    await commitFiles(clone, { 'deployments/web.yaml': webDeployment('3.0.0') }, 'web 3.0.0');
    await commitFiles(clone, { 'deployments/web.yaml': webDeployment('3.0.1') }, 'web 3.0.1');
    const head = await git(clone, ['rev-parse', 'HEAD']);
    const older = await git(clone, ['rev-parse', 'HEAD~1']);
    const result = await cascade(['rollback', clone, '--commit', older]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/does not apply cleanly.*deployments\/web\.yaml.*\[revert-conflict\]/s);
    expect(await git(clone, ['rev-parse', 'HEAD'])).toBe(head);
  });

  it('asks for exactly one of --deployment and --commit, and names unknown Deployments', async () => {
    expect((await cascade(['rollback', clone])).stderr).toMatch(/exactly one of --deployment/);
    const unknown = await cascade(['rollback', clone, '--deployment', 'nope']);
    expect(unknown.stderr).toMatch(/no Deployment named "nope".*known: db, web/s);
  });
});
