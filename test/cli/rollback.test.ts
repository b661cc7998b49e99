import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
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

async function cascade(args: string[], env: NodeJS.ProcessEnv = { ...process.env, GIT_AUTHOR_NAME: 'Ops', GIT_AUTHOR_EMAIL: 'ops@example.com' }): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env });
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

  it('refuses to undo a rollback (it would bring back the version rolled back) unless --force', async () => {
    const dir = join(root, 'twice');
    await git(root, ['clone', '--quiet', `${server.url}/fleet.git`, dir]);
    await commitFiles(dir, { 'deployments/web.yaml': webDeployment('5.0.0') }, 'web: roll out 5.0.0');
    const first = await cascade(['rollback', dir, '--deployment', 'web']);
    expect(first.code).toBe(0);
    const rolledBack = await git(dir, ['rev-parse', 'HEAD']);

    const second = await cascade(['rollback', dir, '--deployment', 'web']);
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(/itself a rollback.*bring back web 5\.0\.0.*--force.*\[rollback-of-rollback\]/s);
    expect(await git(dir, ['rev-parse', 'HEAD'])).toBe(rolledBack);

    const forced = await cascade(['rollback', dir, '--deployment', 'web', '--force']);
    expect(forced.code).toBe(0);
    expect(await git(dir, ['show', 'HEAD:deployments/web.yaml'])).toContain('version: 5.0.0');
  });

  it('authors the commit from git config like git does (repository, then global), and refuses without an identity', async () => {
    const dir = join(root, 'author');
    await git(root, ['clone', '--quiet', `${server.url}/fleet.git`, dir]);
    await commitFiles(dir, { 'deployments/web.yaml': webDeployment('6.0.0') }, 'web: roll out 6.0.0');
    const home = join(root, 'home');
    await mkdir(home, { recursive: true });
    const bare: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: home, XDG_CONFIG_HOME: join(home, '.config') };

    const nobody = await cascade(['rollback', dir, '--deployment', 'web'], bare);
    expect(nobody.code).toBe(2);
    expect(nobody.stderr).toMatch(/no commit author.*user\.name.*\[git-identity-unknown\]/s);

    await writeFile(join(home, '.gitconfig'), '[user]\n\tname = "Global Person" # me\n\temail = global@example.com\n');
    expect((await cascade(['rollback', dir, '--deployment', 'web'], bare)).code).toBe(0);
    expect(await git(dir, ['log', '-1', '--format=%an <%ae>'])).toBe('Global Person <global@example.com>');

    await commitFiles(dir, { 'deployments/web.yaml': webDeployment('7.0.0') }, 'web: roll out 7.0.0');
    await git(dir, ['config', 'user.name', 'Repo Person']);
    await git(dir, ['config', 'user.email', 'repo@example.com']);
    expect((await cascade(['rollback', dir, '--deployment', 'web'], bare)).code).toBe(0);
    expect(await git(dir, ['log', '-1', '--format=%an <%ae>'])).toBe('Repo Person <repo@example.com>');
  });
});
