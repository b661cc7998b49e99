import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RegionStatus } from '../../src/reconciler/region-status.js';
import { startSimulation } from '../../src/simulate/simulation.js';
import { forcePush, git, makeFleetRemote, writeFiles, type FleetRemote } from '../support/git-fixtures.js';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http-server.js';
import { OPENSSL, requireEach, SSH_KEYGEN } from '../support/requirements.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../support/region-process.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));
const run = promisify(execFile);
const TOKEN = 'security-enrolment-token';
/** git signs commits with SSH keys through ssh-keygen; the HTTPS test makes its certificate with openssl. */
const { ssh: noSshKeygen, openssl: noOpenssl } = await requireEach({ ssh: SSH_KEYGEN, openssl: OPENSSL });

async function status(url: string): Promise<RegionStatus> {
  return (await (await fetch(`${url}/api/v1/status`)).json()) as RegionStatus;
}

async function reconcile(url: string): Promise<RegionStatus> {
  await fetch(`${url}/api/v1/reconcile?wait=true`, { method: 'POST' });
  return status(url);
}

async function sshKey(dir: string, name: string): Promise<{ privateKey: string; publicLine: string }> {
  const privateKey = join(dir, name);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@example.com`, '-f', privateKey]);
  return { privateKey, publicLine: (await readFile(`${privateKey}.pub`, 'utf8')).trim() };
}

/** Commits in the work tree, signed with `key` (or unsigned), pushes, returns the sha. */
async function commitAndPushSigned(remote: FleetRemote, files: Record<string, string>, message: string, key: string | null): Promise<string> {
  await writeFiles(remote.workdir, files);
  await git(remote.workdir, ['add', '-A']);
  const sign = key ? ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${key}`] : [];
  await git(remote.workdir, [...sign, 'commit', '--quiet', ...(key ? ['-S'] : []), '-m', message]);
  await git(remote.workdir, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
  return git(remote.workdir, ['rev-parse', 'HEAD']);
}

describe('attacks on a region, each refused with nothing lost', () => {
  let root: string;
  let server: GitHttpServer;
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-security-'));
    server = await startGitHttpServer({ root: join(root, 'git') });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    cleanups.length = 0;
  });
  afterAll(async () => {
    await server?.stop();
    await rm(root, { recursive: true, force: true });
  });

  async function region(name: string, args: string[]): Promise<RegionProcess> {
    const r = await startRegionProcess(['--repo', `${server.url}/${name}.git`, '--region', 'us-east', '--data', join(root, `data-${name}`), '--interval', '1h', '--enrollment-token', TOKEN, ...args]);
    cleanups.push(() => r.kill('SIGTERM'));
    return r;
  }

  it.skipIf(noSshKeygen)('with --verify-commits: an unsigned commit and a commit signed by an unknown key are refused; a trusted signature is applied', async () => {
    const keys = join(root, 'keys');
    await run('mkdir', ['-p', keys]);
    const trusted = await sshKey(keys, 'release');
    const stranger = await sshKey(keys, 'stranger');
    await writeFile(join(keys, 'allowed_signers'), `release@example.com ${trusted.publicLine}\n`);
    const remote = await makeFleetRemote(join(root, 'git'), 'signed', {});
    const good = await commitAndPushSigned(remote, smallFleet({ web: '1.0.0' }) as Record<string, string>, 'signed fleet', trusted.privateKey);
    const r = await region('signed', ['--verify-commits', '--trusted-keys', join(keys, 'allowed_signers')]);
    await waitFor(async () => ((await status(r.url)).revision.applied === good ? true : undefined), 60_000, async () => JSON.stringify(await status(r.url)));

    const unsigned = await commitAndPushSigned(remote, { 'deployments/web.yaml': webDeployment('6.6.6') }, 'unsigned bump', null);
    let s = await reconcile(r.url);
    expect(s.revision).toMatchObject({ attempted: unsigned, applied: good });
    expect(s.revision.error!.join()).toMatch(/is not signed/);

    const foreign = await commitAndPushSigned(remote, { 'deployments/web.yaml': webDeployment('6.6.7') }, 'foreign bump', stranger.privateKey);
    s = await reconcile(r.url);
    expect(s.revision).toMatchObject({ attempted: foreign, applied: good });
    expect(s.revision.error!.join()).toMatch(/unknown key/);

    const fixed = await commitAndPushSigned(remote, { 'deployments/web.yaml': webDeployment('1.1.0') }, 'signed bump', trusted.privateKey);
    s = await reconcile(r.url);
    expect(s.revision).toMatchObject({ attempted: fixed, applied: fixed, error: null });
  });

  it('a force-push back to an old commit is refused as a rollback attack, the served revision stays', async () => {
    const remote = await makeFleetRemote(join(root, 'git'), 'history', smallFleet({ web: '1.0.0' }));
    const r = await region('history', []);
    await waitFor(async () => ((await status(r.url)).revision.applied === remote.head ? true : undefined), 60_000, () => 'first revision');
    await writeFiles(remote.workdir, { 'deployments/web.yaml': webDeployment('2.0.0') });
    await git(remote.workdir, ['commit', '--quiet', '-am', 'web 2.0.0']);
    await git(remote.workdir, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
    const bump = await git(remote.workdir, ['rev-parse', 'HEAD']);
    expect((await reconcile(r.url)).revision.applied).toBe(bump);

    const old = await forcePush(remote.workdir, remote.head);
    const s = await reconcile(r.url);
    expect(s.revision).toMatchObject({ attempted: old, applied: bump });
    expect(s.revision.error!.join()).toMatch(/does not descend from the served revision/);
  });

  it('a revoked device is refused at once and cannot enrol again; operator endpoints need the operator token', async () => {
    const remote = await makeFleetRemote(join(root, 'git'), 'revoke', smallFleet({ web: '1.0.0' }));
    void remote;
    const r = await region('revoke', ['--operator-token', 'ops-secret']);
    const enrol = await fetch(`${r.url}/api/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ deviceId: 'dev-1', labels: {}, enrollmentToken: TOKEN }) });
    const { token } = (await enrol.json()) as { token: string };
    const desired = () => fetch(`${r.url}/api/v1/devices/dev-1/desired`, { headers: { authorization: `Bearer ${token}` } });
    expect((await desired()).status).toBe(200);

    expect((await fetch(`${r.url}/api/v1/admin/devices`)).status).toBe(401);
    expect((await fetch(`${r.url}/api/v1/devices`)).status).toBe(401);
    const listed = await run(process.execPath, [BIN, 'devices', 'list', '--region-url', r.url, '--operator-token', 'ops-secret']);
    expect(listed.stdout).toMatch(/dev-1\tactive/);
    await run(process.execPath, [BIN, 'devices', 'revoke', 'dev-1', '--region-url', r.url], { env: { ...process.env, CASCADE_OPERATOR_TOKEN: 'ops-secret' } });

    expect((await desired()).status).toBe(401);
    const report = await fetch(`${r.url}/api/v1/devices/dev-1/report`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ apps: {} }) });
    expect(report.status).toBe(401);
    const again = await fetch(`${r.url}/api/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ deviceId: 'dev-1', labels: {}, enrollmentToken: TOKEN }) });
    expect(again.status).toBe(403);
    expect((await run(process.execPath, [BIN, 'devices', 'list', '--region-url', r.url, '--operator-token', 'ops-secret'])).stdout).toMatch(/dev-1\tREVOKED/);
  });

  it('enrolment attempts with wrong tokens are rate-limited per address', async () => {
    await makeFleetRemote(join(root, 'git'), 'limit', smallFleet({ web: '1.0.0' }));
    const r = await region('limit', []);
    const attempt = (token: string) =>
      fetch(`${r.url}/api/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ deviceId: 'guess', labels: {}, enrollmentToken: token }) });
    const codes: number[] = [];
    for (let i = 0; i < 12; i++) codes.push((await attempt(`guess-${i}`)).status);
    expect(codes.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(codes.slice(10)).toEqual([429, 429]);
    const limited = await attempt(TOKEN);
    expect(limited.status).toBe(429); // even the right token waits: the address is guessing
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it.skipIf(noOpenssl)('serves HTTPS with --tls-cert/--tls-key; devices trusting the CA converge over it', async () => {
    const tls = join(root, 'tls');
    await run('mkdir', ['-p', tls]);
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(tls, 'key.pem'), '-out', join(tls, 'cert.pem')]);
    await makeFleetRemote(join(root, 'git'), 'tls', smallFleet({ web: '1.0.0' }));
    const r = await region('tls', ['--tls-cert', join(tls, 'cert.pem'), '--tls-key', join(tls, 'key.pem')]);
    expect(r.url).toMatch(/^https:/);
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: join(tls, 'cert.pem') };
    const sim = spawn(process.execPath, [BIN, 'simulate', '--region-url', r.url, '--devices', '3', '--enrollment-token', TOKEN, '--prefix', 'tls', '--apply-ms', '20', '--labels', 'role=storage'], { env, stdio: 'ignore' });
    cleanups.push(async () => sim.kill('SIGKILL'));
    const converged = await waitFor(async () => {
      const { stdout } = await run(process.execPath, [BIN, 'status', '--region-url', r.url, '--json'], { env });
      const s = JSON.parse(stdout) as RegionStatus;
      return s.devices.converged === 3 ? s : undefined;
    }, 60_000, () => 'devices did not converge over HTTPS');
    expect(converged.updatesSent).toBe(6); // web and db, for each of 3 devices
  });

  it('simulated devices still converge over plain HTTP next to these guards', async () => {
    await makeFleetRemote(join(root, 'git'), 'plain', smallFleet({ web: '1.0.0', db: null }));
    const r = await region('plain', ['--operator-token', 'ops']);
    const sim = await startSimulation({ regionUrl: r.url, devices: 5, enrollmentToken: TOKEN, prefix: 'plain', applyMs: 20, statsIntervalMs: 0 });
    cleanups.push(() => sim.stop());
    await waitFor(async () => ((await status(r.url)).devices.converged === 5 ? true : undefined), 60_000, async () => JSON.stringify(await status(r.url)));
  });
});
