import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as openpgp from 'openpgp';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeploymentRolloutStatus } from '../../src/plan/rollout/types.js';
import type { RegionStatus } from '../../src/reconciler/region-status.js';
import { startSimulation, type Simulation, type SimulationOptions } from '../../src/simulate/simulation.js';
import { parseTrustedKeys } from '../../src/source/trusted-keys.js';
import { verifyCommitSignature } from '../../src/source/verify-commit.js';
import { commitAndPush, git, makeFleetRemote, type FileChanges } from '../support/git-fixtures.js';
import { startGitHttpServer } from '../support/git-http-server.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../support/region-process.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const TOKEN = 'rollout-verbs-enrolment';
const OPERATOR = 'rollout-verbs-operator';
const GIT_TOKEN = 'git-write-token-for-the-test';

async function cascade(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: 'Ops', GIT_AUTHOR_EMAIL: 'ops@example.com', ...env }, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/**
 * A fleet repository behind `git http-backend` that requires a token (reads and pushes), a region
 * process following it, and simulated devices on 1.0.0: real git, real region, real agents' loop.
 */
async function fleetScenario(files: FileChanges, devices: number, options: { regionArgs?: string[]; simulation?: Partial<SimulationOptions> } = {}) {
  const root = await mkdtemp(join(tmpdir(), 'cascade-verbs-'));
  const remote = await makeFleetRemote(join(root, 'git'), 'fleet', files);
  const server = await startGitHttpServer({ root: join(root, 'git'), auth: { token: GIT_TOKEN } });
  const region: RegionProcess = await startRegionProcess([
    '--repo', `${server.url}/fleet.git`,
    '--region', 'us-east',
    '--data', join(root, 'region'),
    '--interval', '1h',
    '--enrollment-token', TOKEN,
    '--operator-token', OPERATOR,
    '--git-token', GIT_TOKEN,
    ...(options.regionArgs ?? []),
  ]);
  const simOptions: SimulationOptions = {
    regionUrl: region.url,
    devices,
    enrollmentToken: TOKEN,
    prefix: 'dev',
    applyMs: 50,
    initial: { web: '1.0.0' },
    statsIntervalMs: 0,
    waitSeconds: 5,
    ...options.simulation,
  };
  const sim: Simulation = await startSimulation(simOptions);
  const status = async () => (await (await fetch(`${region.url}/api/v1/status`)).json()) as RegionStatus;
  const rollout = async (name = 'web') => ((await (await fetch(`${region.url}/api/v1/rollouts`)).json()) as DeploymentRolloutStatus[]).find((r) => r.deployment === name);
  const reconcile = () => fetch(`${region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
  const until = <T>(what: string, check: () => Promise<T | undefined>) => waitFor(check, 60_000, async () => `${what}: ${JSON.stringify(await rollout())}`);
  await until('initial convergence', async () => {
    const st = await status();
    return st.devices.converged === devices && st.updatesSent === devices ? st : undefined;
  });
  return {
    root,
    remote,
    server,
    region,
    sim,
    simOptions,
    status,
    rollout,
    reconcile,
    until,
    async close() {
      await sim.stop();
      await region.kill('SIGTERM');
      await server.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

type Scenario = Awaited<ReturnType<typeof fleetScenario>>;

describe('rollout verbs against a real region, real git and simulated devices', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    cleanups.length = 0;
  });
  const start = async (...args: Parameters<typeof fleetScenario>): Promise<Scenario> => {
    const s = await fleetScenario(...args);
    cleanups.push(() => s.close());
    return s;
  };

  it('cascade rollout pause and resume write commits that the region honours: paused hands out nothing, resume continues the same rollout', async () => {
    const DEVICES = 10;
    const s = await start(smallFleet({ web: '1.0.0', db: null, rollout: '    waves: [50, 100]\n' }), DEVICES);
    const clone = join(s.root, 'clone');
    await git(s.root, ['clone', '--quiet', `http://x:${GIT_TOKEN}@${new URL(s.server.url).host}/fleet.git`, clone]);
    const original = await readFile(join(clone, 'deployments/web.yaml'), 'utf8');

    const paused = await cascade(['rollout', 'pause', 'web', clone, '--push']);
    expect(paused.stderr).toBe('');
    expect(paused.code).toBe(0);
    expect(paused.stdout).toMatch(/Wrote [0-9a-f]{8}: Pause the rollout of Deployment web \(1\.0\.0\)/);
    expect(await git(clone, ['log', '-1', '--format=%an <%ae>'])).toBe('Ops <ops@example.com>');
    expect(await git(clone, ['status', '--porcelain'])).toBe('');
    expect(await readFile(join(clone, 'deployments/web.yaml'), 'utf8')).toBe(`${original}  rollout:\n    paused: true\n`);
    // Again: nothing to commit.
    expect((await cascade(['rollout', 'pause', 'web', clone])).stdout).toMatch(/already paused/);

    // The version bump goes out while paused: nobody is handed 2.0.0.
    await writeFile(join(clone, 'deployments/web.yaml'), (await readFile(join(clone, 'deployments/web.yaml'), 'utf8')).replace('version: 1.0.0', 'version: 2.0.0'));
    await git(clone, ['commit', '--quiet', '-am', 'web 2.0.0']);
    await git(clone, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
    const sentBefore = (await s.status()).updatesSent;
    await s.reconcile();
    const held = await s.until('Paused', async () => {
      const r = await s.rollout();
      return r?.version === '2.0.0' && r.state === 'Paused' ? r : undefined;
    });
    expect(held.message).toMatch(/paused/);
    // Reports and timers keep passes running; still nothing is handed out.
    await s.reconcile();
    await sleep(1000);
    expect((await s.status()).updatesSent).toBe(sentBefore);
    expect((await s.rollout())!.state).toBe('Paused');
    // CI gating on the commit: a paused rollout does not move, the watch ends with exit code 1.
    const watched = await cascade(['status', '--region-url', s.region.url, '--watch', '--revision', held.revision, '--until', 'settled', '--interval', '200ms', '--timeout', '30s']);
    expect(watched.code).toBe(1);
    expect(watched.stdout).toMatch(/^Paused: web 2\.0\.0 Paused/m);

    const resumed = await cascade(['rollout', 'resume', 'web', clone, '--push']);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toMatch(/Resume the rollout of Deployment web \(2\.0\.0\)/);
    expect(await readFile(join(clone, 'deployments/web.yaml'), 'utf8')).toBe(original.replace('version: 1.0.0', 'version: 2.0.0'));
    await s.reconcile();
    const done = await s.until('Complete', async () => {
      const r = await s.rollout();
      return r?.version === '2.0.0' && r.state === 'Complete' ? r : undefined;
    });
    // The same rollout went on (pausing and resuming do not change the fingerprint): started when 2.0.0 came.
    expect(done.startedAt).toBe(held.startedAt);
    expect(done.revision).toBe(held.revision);
    const st = await s.until('converged on 2.0.0', async () => {
      const x = await s.status();
      return x.devices.converged === DEVICES ? x : undefined;
    });
    expect(st.updatesSent - sentBefore).toBe(DEVICES);
  });

  it('cascade rollout retry re-attempts exactly the failed devices once: they halt again while the cause holds, and the rollout completes once it is gone', async () => {
    const DEVICES = 20;
    const s = await start(smallFleet({ web: '1.0.0', db: null, rollout: '    waves: [10, 50, 100]\n    failureThreshold: 1\n    bakeTime: 1s\n' }), DEVICES, { simulation: { failVersion: '2.0.0' } });
    const retry = (env: NodeJS.ProcessEnv = { CASCADE_OPERATOR_TOKEN: OPERATOR }) => cascade(['rollout', 'retry', 'web', '--region-url', s.region.url, '--json'], env);

    const notHalted = await retry();
    expect(notHalted.code).toBe(2);
    expect(notHalted.stderr).toMatch(/Complete, not Halted.*\[rollout-not-halted\]/);

    await commitAndPush(s.remote.workdir, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    await s.reconcile();
    const settledHalt = () =>
      s.until('halted and settled', async () => {
        const r = await s.rollout();
        return r?.state === 'Halted' && r.waves.every((w) => w.updating === 0) ? r : undefined;
      });
    const halted = await settledHalt();
    const failedOnce = s.sim.stats().failed;
    expect(failedOnce).toBe(halted.waves.reduce((n, w) => n + w.failed, 0));

    // Without the operator token: refused.
    expect((await retry({ CASCADE_OPERATOR_TOKEN: 'wrong' })).stderr).toMatch(/operator-token-invalid/);

    // The cause still holds: the same devices try again, fail again, and the rollout halts again.
    const first = await retry();
    expect(first.code).toBe(0);
    const answer = JSON.parse(first.stdout) as { devices: string[]; retry: { round: number } };
    expect(answer.retry.round).toBe(1);
    expect(answer.devices.length).toBe(failedOnce);
    const again = await s.until('halted again', async () => {
      const r = await s.rollout();
      return r?.state === 'Halted' && r.retry?.round === 1 && s.sim.stats().failed === 2 * failedOnce && r.waves.every((w) => w.updating === 0) ? r : undefined;
    });
    expect(again.startedAt).toBe(halted.startedAt);
    expect(again.currentWave).toBe(1);
    // It halts at the first failure again (failureThreshold 1), among the devices retried.
    for (const id of again.halted!.devices) expect(answer.devices).toContain(id);

    // The cause was outside the version and is gone now: one more retry, and the rollout goes on to the end.
    s.simOptions.failVersion = null;
    const second = await retry();
    expect(second.code).toBe(0);
    expect((JSON.parse(second.stdout) as { retry: { round: number } }).retry.round).toBe(2);
    const done = await s.until('Complete', async () => {
      const r = await s.rollout();
      return r?.state === 'Complete' ? r : undefined;
    });
    expect(done.startedAt).toBe(halted.startedAt);
    await s.until('converged on 2.0.0', async () => ((await s.status()).devices.converged === DEVICES ? true : undefined));
    const inventory = (await (await fetch(`${s.region.url}/api/v1/devices`, { headers: { authorization: `Bearer ${OPERATOR}` } })).json()) as Array<{ apps: Record<string, string> }>;
    expect(inventory.every((d) => d.apps['web'] === '2.0.0')).toBe(true);
  });

  it('onHalt: revert — the region pushes a signed revert with trailers once, the next pass applies it and the devices go back', async () => {
    const DEVICES = 20;
    const { privateKey, publicKey } = await openpgp.generateKey({ userIDs: [{ name: 'Region us-east', email: 'us-east@example.com' }], format: 'armored' });
    const keyDir = await mkdtemp(join(tmpdir(), 'cascade-key-'));
    cleanups.push(() => rm(keyDir, { recursive: true, force: true }));
    await writeFile(join(keyDir, 'region.asc'), privateKey);
    const s = await start(smallFleet({ web: '1.0.0', db: null, rollout: '    waves: [10, 50, 100]\n    failureThreshold: 1\n    onHalt: revert\n' }), DEVICES, {
      regionArgs: ['--git-push-token', GIT_TOKEN, '--signing-key', join(keyDir, 'region.asc')],
      simulation: { failVersion: '2.0.0' },
    });
    const bump = await commitAndPush(s.remote.workdir, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    await s.reconcile();

    // The region pushes the revert and applies it: the rollout is a rollback to 1.0.0 and completes.
    const back = await s.until('rolled back', async () => {
      const r = await s.rollout();
      return r?.version === '1.0.0' && r.state === 'Complete' ? r : undefined;
    });
    expect(back.rollback).toBe(true);
    expect(back.revert).toMatchObject({ mode: 'revert', outcome: 'pushed', reverted: bump, branch: 'main' });
    const head = await git(s.remote.bare, ['rev-parse', 'main']);
    expect(back.revert!.commit).toBe(head);
    expect(await git(s.remote.bare, ['rev-parse', 'main~1'])).toBe(bump);
    const message = await git(s.remote.bare, ['log', '-1', '--format=%B', 'main']);
    expect(message).toContain('Revert "web 2.0.0"');
    expect(message).toContain(`This reverts commit ${bump}.`);
    expect(message).toMatch(/^Cascade-Halted: web 2\.0\.0$/m);
    expect(message).toMatch(/^Cascade-Region: us-east$/m);
    expect(await git(s.remote.bare, ['show', 'main:deployments/web.yaml'])).toContain('version: 1.0.0');
    // Signed with the region's key: a region with --verify-commits trusting it applies it.
    const trusted = await parseTrustedKeys(publicKey, 'region.asc');
    const verdict = await verifyCommitSignature({ gitdir: s.remote.bare, oid: head, trusted });
    expect(verdict).toMatchObject({ format: 'openpgp' });

    await s.until('devices back on 1.0.0', async () => ((await s.status()).devices.converged === DEVICES ? true : undefined));
    // Exactly once: more passes push nothing more.
    await s.reconcile();
    await s.reconcile();
    expect(await git(s.remote.bare, ['rev-parse', 'main'])).toBe(head);
    const metrics = await (await fetch(`${s.region.url}/metrics`)).text();
    expect(metrics).toMatch(/cascade_halt_reverts_total\{outcome="pushed",region="us-east"\} 1/);
    expect(s.region.logs.some((l) => typeof l['msg'] === 'string' && /halted \(onHalt: revert\): pushed/.test(l['msg'] as string))).toBe(true);

    // A revert of the revert brings 2.0.0 back; it halts again, and the region does not revert a revert.
    await git(s.remote.workdir, ['pull', '--quiet', '--ff-only', 'origin', 'main']);
    await git(s.remote.workdir, ['revert', '--no-edit', 'HEAD']);
    await git(s.remote.workdir, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
    const reapplied = await git(s.remote.workdir, ['rev-parse', 'HEAD']);
    await s.reconcile();
    const skipped = await s.until('halted again, revert skipped', async () => {
      const r = await s.rollout();
      return r?.version === '2.0.0' && r.state === 'Halted' && r.revert?.outcome === 'skipped' ? r : undefined;
    });
    expect(skipped.revert!.message).toMatch(/revert of a revert is not pushed automatically/);
    expect(await git(s.remote.bare, ['rev-parse', 'main'])).toBe(reapplied);
  });

  it('onHalt: revert-branch pushes the revert to cascade/revert-<short> for review and holds', async () => {
    const s = await start(smallFleet({ web: '1.0.0', db: null, rollout: '    waves: [10, 50, 100]\n    failureThreshold: 1\n    onHalt: revert-branch\n' }), 10, {
      regionArgs: ['--git-push-token', GIT_TOKEN],
      simulation: { failVersion: '2.0.0' },
    });
    const bump = await commitAndPush(s.remote.workdir, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    await s.reconcile();
    const halted = await s.until('halted with a revert branch', async () => {
      const r = await s.rollout();
      return r?.state === 'Halted' && r.revert?.outcome === 'pushed' ? r : undefined;
    });
    const branch = `cascade/revert-${bump.slice(0, 8)}`;
    expect(halted.revert).toMatchObject({ mode: 'revert-branch', branch, reverted: bump });
    expect(await git(s.remote.bare, ['rev-parse', branch])).toBe(halted.revert!.commit);
    expect(await git(s.remote.bare, ['rev-parse', 'main'])).toBe(bump);
    expect(await git(s.remote.bare, ['log', '-1', '--format=%B', branch])).toMatch(/^Cascade-Halted: web 2\.0\.0$/m);
  });

  it('onHalt: revert without a write credential holds, and says once what is missing', async () => {
    const s = await start(smallFleet({ web: '1.0.0', db: null, rollout: '    waves: [10, 50, 100]\n    failureThreshold: 1\n    onHalt: revert\n' }), 10, {
      simulation: { failVersion: '2.0.0' },
    });
    const bump = await commitAndPush(s.remote.workdir, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    await s.reconcile();
    const halted = await s.until('halted', async () => {
      const r = await s.rollout();
      return r?.state === 'Halted' ? r : undefined;
    });
    const said = () => s.region.logs.filter((l) => typeof l['msg'] === 'string' && (l['msg'] as string).includes('has no write credential: start it with --git-push-token'));
    await s.until('the warning', async () => (said().length > 0 ? true : undefined));
    await s.reconcile();
    await s.reconcile();
    await s.reconcile();
    expect(said()).toHaveLength(1);
    expect((await s.rollout())!.revert).toBeUndefined();
    expect(halted.revert).toBeUndefined();
    expect(await git(s.remote.bare, ['rev-parse', 'main'])).toBe(bump);
  });
});
