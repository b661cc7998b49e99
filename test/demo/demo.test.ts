import { execFile, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const execFileAsync = promisify(execFile);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const kept: string[] = [];
afterEach(() => {
  for (const dir of kept.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Runs `cascade demo` as a user would; the demo must end by itself (the test's timeout says when it did not). */
function demo(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/cascade.js'), 'demo', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function workDirOf(stdout: string): string {
  const match = /^Working in (\S+) /m.exec(stdout);
  if (!match) throw new Error(`no "Working in" line in:\n${stdout}`);
  return match[1]!;
}

describe('cascade demo', () => {
  it('rolls out, rolls back with git revert and refuses a bad commit, then cleans up and exits 0', async () => {
    const run = await demo('--devices', '20');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const out = run.stdout;

    // First install, then the rollout: every device on the new version, one update each.
    expect(out).toMatch(/converged: 20\/20 devices run edge-gateway 1\.8\.2, sensor-agent 2\.5\.0, telemetry-forwarder 0\.14\.2/);
    expect(out).toMatch(/commit [0-9a-f]{8} {2}sensor-agent: roll out 2\.6\.0\n/);
    expect(out).toContain('deployments/sensor-agent.yaml: spec.version 2.5.0 -> 2.6.0');
    expect(out).toContain('converged: 20/20 devices run sensor-agent 2.6.0; 20 updates handed out, one per device');

    // The revert goes back to the old version, again one update per device.
    expect(out).toMatch(/commit [0-9a-f]{8} {2}Revert "sensor-agent: roll out 2\.6\.0"/);
    expect(out).toMatch(/rolled back: 20\/20 devices run sensor-agent 2\.5\.0 again.*; 20 updates handed out/);

    // The bad commit is refused with located errors, and the last good revision (the revert) stays.
    const revert = /commit ([0-9a-f]{8}) {2}Revert/.exec(out)![1]!;
    const bad = /commit ([0-9a-f]{8}) {2}camera-agent: deploy to us-east/.exec(out)![1]!;
    expect(out).toContain(`refused: revision ${bad} failed validation:`);
    expect(out).toMatch(/^ {4}deployments\/camera-agent\.yaml:\d+:\d+: .*no App named "camera-agent"/m);
    expect(out).toMatch(/^ {4}deployments\/camera-agent\.yaml:\d+:\d+: unknown field "rolout"/m);
    expect(out).toContain(`last good revision kept: the region still serves ${revert} (attempted ${bad}, applied ${revert})`);
    expect(out).toContain('0 updates handed out, 20/20 devices still converged on sensor-agent 2.5.0');

    expect(out).toMatch(/^ {2}total +\d+\.\d s$/m);
    expect(out).toContain('Demo complete: rollout converged, rolled back with git revert, bad commit refused, last good revision kept.');
    expect(existsSync(workDirOf(out))).toBe(false);
  }, 120_000);

  it('--keep leaves a fleet repository whose history git itself reads, pushed to the git host', async () => {
    const run = await demo('--devices', '5', '--keep');
    const workDir = workDirOf(run.stdout);
    kept.push(workDir);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Kept ${workDir}`);

    const log = async (cwd: string) =>
      (await execFileAsync('git', ['log', '--format=%s', 'main'], { cwd, env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' } })).stdout.trim().split('\n');
    const history = [
      'camera-agent: deploy to us-east',
      'Revert "sensor-agent: roll out 2.6.0"',
      'sensor-agent: roll out 2.6.0',
      'demo: fast rollouts for the demo (bakeTime 3s)',
      'Create fleet repository from the Cascade template',
    ];
    expect(await log(join(workDir, 'fleet'))).toEqual(history);
    expect(await log(join(workDir, 'git/fleet.git'))).toEqual(history);
    const { stdout: status } = await execFileAsync('git', ['status', '--porcelain'], { cwd: join(workDir, 'fleet') });
    expect(status).toBe('');
  }, 120_000);

  it('rejects a device count out of range before starting anything', async () => {
    const run = await demo('--devices', '0');
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('"0" must be a whole number from 1 to 1000');
    expect(run.stdout).toBe('');
  });
});
