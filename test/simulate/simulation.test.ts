import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fetchInventory } from '../../src/agent/http/region-client.js';
import { startSimulation, type Simulation, type SimulationOptions } from '../../src/simulate/simulation.js';
import { ENROLLMENT_TOKEN, RegionFixture, until } from '../agent/region-fixture.js';

const ROOT = resolve(import.meta.dirname, '../..');
let region: RegionFixture;
let simulations: Simulation[];

beforeEach(async () => {
  region = await RegionFixture.start();
  simulations = [];
});
afterEach(async () => {
  for (const simulation of simulations) await simulation.stop();
  await region.close();
});

async function simulate(opts: Partial<SimulationOptions>): Promise<Simulation> {
  const simulation = await startSimulation({
    regionUrl: region.url,
    devices: 10,
    enrollmentToken: ENROLLMENT_TOKEN,
    applyMs: 20,
    statsIntervalMs: 0,
    ...opts,
  });
  simulations.push(simulation);
  return simulation;
}

const web = (version: string) => ({ web: { version, deployment: 'web-all' } });

function reportedVersions(ids: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const id of ids) {
    const report = region.store.getDevice(id)?.apps.web;
    const key = `${report?.version ?? 'none'}/${report?.state ?? 'none'}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** Every device that should be polling is polling: the fleet is idle. */
async function settled(count: number): Promise<void> {
  await until(() => region.watchers.size === count, 30_000, `${count} devices waiting`);
}

describe('startSimulation', () => {
  it('50 devices enrol, report and converge on a version handed out', async () => {
    const simulation = await simulate({ devices: 50, prefix: 'edge', labels: { ring: 'beta' }, initial: { web: '1.0.0' } });
    expect(simulation.deviceIds.slice(0, 2)).toEqual(['edge-0001', 'edge-0002']);
    await until(() => simulation.stats().enrolled === 50, 30_000, 'enrolment');
    await settled(50);

    const inventory = await fetchInventory(region.url);
    expect(inventory).toHaveLength(50);
    expect(inventory[0]).toEqual({ id: 'edge-0001', region: 'test-region', labels: { ring: 'beta' }, apps: { web: '1.0.0' } });

    expect(region.handOut([...simulation.deviceIds], web('2.0.0'))).toBe(50);
    await until(() => reportedVersions(simulation.deviceIds)['2.0.0/healthy'] === 50, 30_000, 'convergence');
    expect(simulation.stats()).toMatchObject({ devices: 50, enrolled: 50, applied: 50, failed: 0, failing: 0, versions: { web: { '2.0.0': 50 } } });
  });

  it('every update to --fail-version fails and keeps the previous version', async () => {
    const simulation = await simulate({ devices: 20, initial: { web: '1.0.0' }, failVersion: '2.0.0' });
    await until(() => simulation.stats().enrolled === 20, 30_000, 'enrolment');
    region.handOut([...simulation.deviceIds], web('2.0.0'));
    await until(() => reportedVersions(simulation.deviceIds)['1.0.0/failed'] === 20, 30_000, 'failed reports');
    expect(region.store.getDevice('sim-0001')!.apps.web!.message).toMatch(/version 2\.0\.0: .*set to fail \(--fail-version\); running 1\.0\.0 again/);
    expect(simulation.stats()).toMatchObject({ failed: 20, failing: 20, versions: { web: { '1.0.0': 20 } } });

    // The next version works and clears the failure.
    region.handOut([...simulation.deviceIds], web('2.0.1'));
    await until(() => reportedVersions(simulation.deviceIds)['2.0.1/healthy'] === 20, 30_000, 'recovery');
  });

  it('container apps go through pull, start and health check; a rollback to the previous image needs no pull', async () => {
    const simulation = await simulate({ devices: 10, container: { pullMs: 400, startMs: 50, healthMs: 50 } });
    await until(() => simulation.stats().enrolled === 10, 30_000, 'enrolment');
    const catalog = (version: string) => ({
      web: {
        runtime: { type: 'container' as const, image: 'registry.local/web' },
        artifacts: {
          '1.0.0': { image: 'registry.local/web:1.0.0', digest: `sha256:${'1'.repeat(64)}` },
          '2.0.0': { image: 'registry.local/web:2.0.0', digest: `sha256:${'2'.repeat(64)}` },
        },
      },
      version,
    });
    const handOut = (version: string) => region.handOut([...simulation.deviceIds], web(version), { web: catalog(version).web });

    handOut('1.0.0');
    // While the pulls run, the stats say so.
    await until(() => (simulation.stats().containers?.pulling ?? 0) > 0, 30_000, 'devices pulling');
    expect(simulation.statsLine()).toMatch(/containers: \d+ pulling, \d+ starting, \d+ health-checking/);
    await until(() => reportedVersions(simulation.deviceIds)['1.0.0/healthy'] === 10, 30_000, 'install');
    handOut('2.0.0');
    await until(() => reportedVersions(simulation.deviceIds)['2.0.0/healthy'] === 10, 30_000, 'upgrade');
    expect(simulation.stats().containers).toMatchObject({ pulled: 20, cached: 0 });
    // Back to 1.0.0: its image was kept.
    handOut('1.0.0');
    await until(() => reportedVersions(simulation.deviceIds)['1.0.0/healthy'] === 10, 30_000, 'rollback');
    expect(simulation.stats().containers).toEqual({ pulling: 0, starting: 0, checking: 0, pulled: 20, cached: 10 });
  });

  it('--fail-rate fails the same devices for the same seed', async () => {
    /** Runs 30 devices against a fresh region, hands out 5.0.0 and returns the ids that failed it. */
    const failedWith = async (seed: string): Promise<string[]> => {
      const own = await RegionFixture.start();
      const simulation = await startSimulation({ regionUrl: own.url, devices: 30, enrollmentToken: ENROLLMENT_TOKEN, applyMs: 5, statsIntervalMs: 0, failRate: 0.3, seed });
      try {
        await until(() => simulation.stats().enrolled === 30, 30_000, 'enrolment');
        own.handOut([...simulation.deviceIds], web('5.0.0'));
        const done = () => simulation.deviceIds.every((id) => ['healthy', 'failed'].includes(own.store.getDevice(id)?.apps.web?.state ?? ''));
        await until(done, 30_000, 'all attempts reported');
        return simulation.deviceIds.filter((id) => own.store.getDevice(id)!.apps.web!.state === 'failed');
      } finally {
        await simulation.stop();
        await own.close();
      }
    };
    const first = await failedWith('seed-a');
    expect(first.length).toBeGreaterThan(0);
    expect(first.length).toBeLessThan(30);
    expect(await failedWith('seed-a')).toEqual(first);
    expect(await failedWith('seed-b')).not.toEqual(first);
  });

  it('--offline-rate devices report once and then stop taking updates', async () => {
    const simulation = await simulate({ devices: 40, initial: { web: '1.0.0' }, offlineRate: 0.25, seed: 7 });
    const { offline } = simulation.stats();
    expect(offline).toBeGreaterThan(0);
    expect(offline).toBeLessThan(40);
    await until(() => simulation.stats().enrolled === 40 && region.store.listDevices().every((d) => d.lastSeen !== null), 30_000, 'first reports');
    await settled(40 - offline);
    region.handOut([...simulation.deviceIds], web('2.0.0'));
    await until(() => reportedVersions(simulation.deviceIds)['2.0.0/healthy'] === 40 - offline, 30_000, 'online devices updated');
    expect(reportedVersions(simulation.deviceIds)['1.0.0/healthy']).toBe(offline);
  });
});

describe('cascade simulate (a real process)', () => {
  function run(args: string[]): { exited: Promise<number | null>; stderr: () => string; kill: (signal: NodeJS.Signals) => void } {
    const child = spawn(process.execPath, [join(ROOT, 'bin/cascade.js'), 'simulate', ...args], {
      cwd: ROOT,
      env: { ...process.env, CASCADE_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    return {
      exited: new Promise((done) => child.once('exit', (code) => done(code))),
      stderr: () => stderr,
      kill: (signal) => child.kill(signal),
    };
  }

  it('runs devices until SIGINT, then prints the counts and exits 0', async () => {
    const sim = run(['--region-url', region.url, '--devices', '5', '--enrollment-token', ENROLLMENT_TOKEN, '--apply-ms', '10', '--initial', 'web=1.0.0']);
    await until(() => region.store.listDevices().length === 5, 30_000, `enrolment (stderr: ${sim.stderr()})`);
    await settled(5);
    region.handOut(['sim-0001', 'sim-0002', 'sim-0003', 'sim-0004', 'sim-0005'], web('2.0.0'));
    await until(() => reportedVersions(['sim-0001', 'sim-0002', 'sim-0003', 'sim-0004', 'sim-0005'])['2.0.0/healthy'] === 5, 30_000, 'convergence');
    sim.kill('SIGINT');
    expect(await sim.exited).toBe(0);
    expect(sim.stderr()).toContain('simulate: 5 devices, 5 enrolled, 0 offline, 0 applying, 5 updated, 0 failed updates, 0 failing now, 0 connection errors | web 2.0.0=5');
  });

  it('stops with an error when the enrollment token is wrong', async () => {
    const sim = run(['--region-url', region.url, '--devices', '3', '--enrollment-token', 'nope']);
    expect(await sim.exited).toBe(2);
    expect(sim.stderr()).toMatch(/cascade: device sim-000\d: .*enrollment token is wrong.* \[enrollment-token-invalid\]/);
  });
});

describe('startSimulation against a region that slows it down', () => {
  it('a 429 with Retry-After is waited out and retried, counted as throttled, not as a connection error', async () => {
    await region.close();
    region = await RegionFixture.start({ enrollmentLimits: { failuresPerAddress: 2, failuresTotal: 100, windowMs: 1_500 } });
    // Two wrong tokens from this address: the limiter answers every enrolment from it with 429 and Retry-After for a while.
    for (let i = 0; i < 2; i++) {
      const refused = await fetch(`${region.url}/api/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ deviceId: 'guess', labels: {}, enrollmentToken: 'wrong' }) });
      expect(refused.status).toBe(401);
    }
    const simulation = await simulate({ devices: 5 });
    await until(() => simulation.stats().enrolled === 5, 30_000, 'enrolment after the Retry-After');
    const stats = simulation.stats();
    expect(stats.throttled).toBeGreaterThanOrEqual(5);
    expect(stats.connectionErrors).toBe(0);
    expect(stats.errorKinds).toEqual({});
  });

  it('a busy region (event loop late) answers enrolments 503 with Retry-After: devices wait and enrol once it catches up', async () => {
    await region.close();
    let lag = 1_000;
    region = await RegionFixture.start({ enrollmentLimits: { failuresPerAddress: 10, failuresTotal: 100, windowMs: 60_000, busyLagMs: 500, busyRetryAfterSeconds: 1 }, lagMs: () => lag });
    const simulation = await simulate({ devices: 3 });
    await until(() => simulation.stats().throttled >= 3, 30_000, 'enrolments refused while busy');
    expect(simulation.stats().enrolled).toBe(0);
    lag = 0;
    await until(() => simulation.stats().enrolled === 3, 30_000, 'enrolment once the region caught up');
    expect(simulation.stats().connectionErrors).toBe(0);
  });

  it('a region that is down still counts as a connection error, by kind', async () => {
    const simulation = await simulate({ devices: 3 });
    await settled(3);
    await region.pause();
    await until(() => simulation.stats().connectionErrors >= 3, 30_000, 'connection errors while the region is down');
    expect(Object.keys(simulation.stats().errorKinds).every((kind) => kind.startsWith('region-unreachable'))).toBe(true);
    await region.resume();
  });
});

describe('the simulation keeps one socket per device', () => {
  it('after a hand-out that answers every poll at once, the reports reuse the polls\' sockets: no new connections', async () => {
    const devices = 300;
    const simulation = await simulate({ devices, initial: { web: '1.0.0' } });
    await until(() => simulation.stats().enrolled === devices, 60_000, 'enrolment');
    await settled(devices);
    const connections = new Set<unknown>();
    region.app.server.on('connection', (socket) => connections.add(socket));
    region.handOut(simulation.deviceIds.slice(), web('2.0.0'));
    await until(() => reportedVersions(simulation.deviceIds)['2.0.0/healthy'] === devices, 60_000, 'convergence');
    await settled(devices);
    // Node's default agent keeps 256 free sockets: the other 44 reports would connect anew.
    expect(connections.size).toBe(0);
  }, 90_000);
});
