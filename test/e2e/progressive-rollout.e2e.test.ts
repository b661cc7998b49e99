import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { waveOf } from '../../src/plan/waves.js';
import { startSimulation, type Simulation } from '../../src/simulate/simulation.js';
import { git } from '../support/git-fixtures.js';
import { waitFor } from '../support/region-process.js';
import { SCENARIO_TOKEN, startRegionScenario, type RegionScenario } from '../support/region-scenario.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('progressive rollouts, end to end', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    cleanups.length = 0;
  });

  async function scenario(rollout: string, devices: number, simulation: Partial<Parameters<typeof startSimulation>[0]> = {}) {
    const s: RegionScenario = await startRegionScenario(smallFleet({ web: '1.0.0', db: null, rollout }));
    cleanups.push(() => s.close());
    const sim: Simulation = await startSimulation({
      regionUrl: s.region.url,
      devices,
      enrollmentToken: SCENARIO_TOKEN,
      prefix: 'dev',
      applyMs: 50,
      initial: { web: '1.0.0' },
      statsIntervalMs: 0,
      waitSeconds: 5,
      ...simulation,
    });
    cleanups.push(() => sim.stop());
    // Devices start on 1.0.0; convergence is complete once each was also handed 1.0.0.
    await s.waitForStatus((st) => st.devices.converged === devices && st.updatesSent === devices, 'initial convergence');
    return { s, sim };
  }

  it('status --watch started before the commit waits for it, prints one JSON object per change, and exits 0 on Complete', async () => {
    const { s } = await scenario('    waves: [50, 100]\n', 10);
    const child = spawn(process.execPath, [BIN, 'status', '--region-url', s.region.url, '--watch', '--json', '--until', 'complete', '--interval', '100ms', '--timeout', '60s']);
    cleanups.push(async () => child.kill('SIGKILL'));
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // The watch has read the settled region (its first line) before the commit exists.
    await waitFor(async () => (stdout.includes('\n') ? true : undefined), 20_000, async () => 'no first status line');
    await sleep(300);
    expect(stdout.trim().split('\n')).toHaveLength(1);

    await s.commit({ 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    expect(await exited).toBe(0);
    const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as { rollouts: Array<{ deployment: string; version: string; state: string }> });
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.at(-1)!.rollouts.find((r) => r.deployment === 'web')).toMatchObject({ version: '2.0.0', state: 'Complete' });
    // Every line is a change: no two neighbours are equal.
    for (let i = 1; i < lines.length; i++) expect(JSON.stringify(lines[i])).not.toBe(JSON.stringify(lines[i - 1]));
  });

  it('a failing version halts inside the first wave, no device outside it is handed it, and a revert takes the canaries back at once', async () => {
    const DEVICES = 30;
    const { s, sim } = await scenario('    waves: [10, 50, 100]\n    failureThreshold: 1\n    bakeTime: 1s\n', DEVICES, { failVersion: '2.0.0' });
    const canaries = sim.deviceIds.filter((id) => waveOf(id, 'web', [10, 50, 100]) === 1);
    expect(canaries.length).toBeGreaterThan(0); // device ids are fixed, so this holds for every run

    const bump = await s.commit({ 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    // The first failure halts the rollout while other canaries handed 2.0.0 in the same pass may
    // still be applying it: wait until none is updating, so the counts below are final.
    const halted = await waitFor(async () => {
      const r = await s.rollout('web');
      return r?.state === 'Halted' && r.waves.every((w) => w.updating === 0) ? r : undefined;
    }, 60_000, async () => JSON.stringify(await s.rollout('web')));
    expect(halted.currentWave).toBe(1);
    expect(halted.halted!.reason).toMatch(/fail/);
    expect(halted.halted!.devices.every((id) => canaries.includes(id))).toBe(true);

    // Passes keep running (reports, timers), yet nothing more is handed out.
    const failedBefore = sim.stats().failed;
    await fetch(`${s.region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
    await sleep(1500);
    expect(sim.stats().failed).toBe(failedBefore);
    expect(failedBefore).toBeLessThanOrEqual(canaries.length);
    const after = (await s.rollout('web'))!;
    expect(after.state).toBe('Halted');
    for (const wave of after.waves.filter((w) => w.wave > 1)) expect(wave.updating + wave.failed + wave.healthy).toBe(0);
    const inventory = (await (await fetch(`${s.region.url}/api/v1/devices`)).json()) as Array<{ id: string; apps: Record<string, string> }>;
    expect(inventory.every((d) => d.apps['web'] === '1.0.0')).toBe(true); // failed canaries went back to 1.0.0 themselves
    // What an operator sees: `cascade status` names the halt and how to undo it; --watch stops on it.
    const shown = await run(process.execPath, [BIN, 'status', '--region-url', s.region.url]);
    expect(shown.stdout).toMatch(/web -> 2\.0\.0\s+Halted\s+wave 1\/3/);
    expect(shown.stdout).toContain('cascade rollback --deployment web');
    // --watch on the commit stops on the halt with exit code 1, so CI can gate on it.
    const watched = (await run(process.execPath, [BIN, 'status', '--region-url', s.region.url, '--watch', '--revision', bump, '--interval', '200ms'], { timeout: 60_000 }).then(
      () => ({ code: 0, stdout: '', stderr: '' }),
      (err: { code: number; stdout: string; stderr: string }) => err,
    ));
    expect(watched.code).toBe(1);
    expect(watched.stderr).toMatch(/web .*HALTED/);
    expect(watched.stdout).toMatch(/^Halted: web 2\.0\.0 Halted/m);
    const metrics = await (await fetch(`${s.region.url}/metrics`)).text();
    expect(metrics).toMatch(/cascade_rollout_halted\{deployment="web",region="us-east"\} 1/);

    // The revert: the canaries are handed 1.0.0 at once and report healthy; nobody else is touched.
    const updatesBefore = (await s.status()).updatesSent;
    await git(s.remote.workdir, ['revert', '--no-edit', bump]);
    await git(s.remote.workdir, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
    await fetch(`${s.region.url}/api/v1/reconcile?wait=true`, { method: 'POST' });
    const back = await waitFor(async () => {
      const r = await s.rollout('web');
      return r?.version === '1.0.0' && r.state === 'Complete' ? r : undefined;
    }, 60_000, async () => JSON.stringify(await s.rollout('web')));
    expect(back.rollback).toBe(true);
    const st = await s.waitForStatus((x) => x.devices.converged === DEVICES, 'rollback converged');
    expect(st.updatesSent - updatesBefore).toBe(failedBefore);
  });

  it('maxUnavailable caps devices updating at once, and offline devices neither fail nor block: they catch up when back', async () => {
    const ONLINE = 16;
    const { s, sim } = await scenario('    waves: [25, 100]\n    maxUnavailable: 3\n    offlineAfter: 2s\n', ONLINE, { applyMs: 400 });
    const away = await startSimulation({ regionUrl: s.region.url, devices: 4, enrollmentToken: SCENARIO_TOKEN, prefix: 'away', applyMs: 50, initial: { web: '1.0.0' }, statsIntervalMs: 0, waitSeconds: 5 });
    await s.waitForStatus((st) => st.devices.converged === ONLINE + 4 && st.updatesSent === ONLINE + 4, 'away devices enrolled');
    await away.stop();
    // offlineAfter is 2s in the fleet's rollout: the region's periodic pass sets them aside.
    await waitFor(async () => {
      const r = await s.rollout('web');
      return r && r.waves.reduce((n, w) => n + w.offline, 0) === 4 ? r : undefined;
    }, 60_000, async () => JSON.stringify(await s.rollout('web')));

    await s.commit({ 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    let maxUpdating = 0;
    const done = await waitFor(async () => {
      const r = await s.rollout('web');
      if (r) maxUpdating = Math.max(maxUpdating, ...r.waves.map(() => r.waves.reduce((n, w) => n + w.updating, 0)));
      return r?.state === 'Complete' ? r : undefined;
    }, 60_000, async () => JSON.stringify(await s.rollout('web')));
    expect(maxUpdating).toBeLessThanOrEqual(3);
    expect(done.waves.reduce((n, w) => n + w.offline, 0)).toBe(4);
    expect(done.waves.reduce((n, w) => n + w.failed, 0)).toBe(0);
    expect(sim.stats().versions['web']).toEqual({ '2.0.0': ONLINE });

    // The away devices come back (same ids, still on 1.0.0) and get 2.0.0 in turn.
    const back = await startSimulation({ regionUrl: s.region.url, devices: 4, enrollmentToken: SCENARIO_TOKEN, prefix: 'away', applyMs: 50, initial: { web: '1.0.0' }, statsIntervalMs: 0, waitSeconds: 5 });
    cleanups.push(() => back.stop());
    await waitFor(() => (back.stats().versions['web']?.['2.0.0'] === 4 ? true : undefined), 60_000, () => JSON.stringify(back.stats()));
    await s.waitForStatus((st) => st.devices.converged === ONLINE + 4, 'everyone converged');
  });

  it('no update starts outside the maintenance window; inside it the rollout proceeds', async () => {
    // A window that opened an hour ago and closed: "0 H * * *" with H two hours back, lasting 1h (UTC).
    const closedHour = (new Date().getUTCHours() + 22) % 24;
    const DEVICES = 6;
    const { s, sim } = await scenario(`    waves: [100]\n    window:\n      schedule: "0 ${closedHour} * * *"\n      duration: 1h\n      timezone: UTC\n`, DEVICES);
    const before = (await s.status()).updatesSent;
    await s.commit({ 'deployments/web.yaml': webDeployment('2.0.0') }, 'web 2.0.0');
    const waiting = await waitFor(async () => {
      const r = await s.rollout('web');
      return r?.version === '2.0.0' ? r : undefined;
    }, 60_000, () => 'rollout of 2.0.0 not seen');
    expect(waiting.state).toBe('WaitingForWindow');
    await sleep(1000);
    expect((await s.status()).updatesSent).toBe(before);
    expect(sim.stats().applied).toBe(0);

    // A commit that opens the window (every minute, for an hour) lets the rollout go.
    await s.commit(
      { 'fleet.yaml': smallFleet({ rollout: '    waves: [100]\n    window:\n      schedule: "* * * * *"\n      duration: 1h\n      timezone: UTC\n' })['fleet.yaml']! },
      'open the window',
    );
    await s.waitForStatus((st) => st.devices.converged === DEVICES && st.updatesSent === before + DEVICES, 'rollout inside the window');
    expect(sim.stats().versions['web']).toEqual({ '2.0.0': DEVICES });
  });
});
