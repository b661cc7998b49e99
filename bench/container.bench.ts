import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { AppSpec } from '../src/desired/model.js';
import { freePort } from '../test/support/free-port.js';
import { ENROLLMENT_TOKEN, RegionFixture } from '../test/agent/region-fixture.js';
import { cleanupContainers, containerTestProblem, podman, podmanEnvironment, pushImage, startRegistry, type Registry } from '../test/agent/container/oci-fixture.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * The container runtime on this machine (podman with runc, a local docker-registry), through a real
 * region and a real `cascade agent` process: time from the region handing out a version to the device
 * reporting it healthy,
 * - for an upgrade (the new image is pulled by digest, the old container stopped, the new one started
 *   and health-checked), against `podman pull` + `podman run` of the same image until it answers;
 * - for a rollback to the previous version, whose image was kept on the device (no download), against
 *   `podman run` of that image until it answers.
 * Median of 3 rounds, with the spread. The health check is HTTP, polled every 100 ms by the agent and
 * every 20 ms for the baseline.
 */
const ROUNDS = 3;
const ROOT = resolve(import.meta.dirname, '..');

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function spread(values: number[]): string {
  return `${(Math.min(...values) / 1000).toFixed(2)}–${(Math.max(...values) / 1000).toFixed(2)} s`;
}

async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function answers(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/healthz`);
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

export const suite: BenchSuite = {
  name: 'container',
  async run(): Promise<BenchFigure[]> {
    const scratch = mkdtempSync(join(tmpdir(), 'cascade-bench-ctr-'));
    const problem = await containerTestProblem(scratch);
    if (problem) {
      process.stderr.write(`container benchmark skipped: ${problem}\n`);
      rmSync(scratch, { recursive: true, force: true });
      return [];
    }
    const device = `cbench-${randomBytes(4).toString('hex')}`;
    let registry: Registry | undefined;
    let region: RegionFixture | undefined;
    let agent: ChildProcess | undefined;
    let env: NodeJS.ProcessEnv = process.env;
    try {
      registry = await startRegistry(join(scratch, 'registry'));
      env = await podmanEnvironment(join(scratch, 'podman'), [registry.host]);
      const repository = `${registry.host}/${device}/web`;
      const port = await freePort();
      const digests: Record<string, string> = {};
      for (const version of ['1', '2']) {
        digests[version] = await pushImage(env, join(scratch, `image-${version}`), `${repository}:${version}.0.0`, { 'www/healthz': `ok ${version}\n` });
      }
      const command = ['/bin/busybox', 'sh', '-c'];
      const script = `trap 'exit 0' TERM; /bin/busybox httpd -f -p 127.0.0.1:${port} -h /www & wait`;
      const app: AppSpec = {
        runtime: { type: 'container', image: repository, command, args: [script], network: 'host' },
        artifacts: {
          '1.0.0': { image: `${repository}:1.0.0`, digest: digests['1']! },
          '2.0.0': { image: `${repository}:2.0.0`, digest: digests['2']! },
        },
        healthCheck: { http: `http://127.0.0.1:${port}/healthz`, timeout: '2s', retries: 50 },
      };
      region = await RegionFixture.start();
      const handOut = (version: string) => region!.handOut([device], { web: { version, deployment: 'web' } }, { web: app });
      const healthy = (version: string) => {
        const report = region!.store.getDevice(device)?.apps['web'];
        return report?.version === version && report.state === 'healthy';
      };
      agent = spawn(
        process.execPath,
        [join(ROOT, 'bin/cascade.js'), 'agent', '--region-url', region.url, '--device-id', device, '--state-dir', join(scratch, 'agent'),
          '--enrollment-token', ENROLLMENT_TOKEN, '--wait', '30', '--container-engine', 'podman', '--container-prefix', device, '--health-interval', '100ms'],
        { cwd: ROOT, env: { ...env, CASCADE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'inherit'] },
      );
      await waitUntil(() => region!.store.getDevice(device) !== null, 60_000, 'enrolment');
      handOut('1.0.0');
      await waitUntil(() => healthy('1.0.0'), 120_000, 'the first install');

      const upgrade: number[] = [];
      const rollback: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        // The upgrade pulls: 2.0.0's image is not on the device.
        await podman(['rmi', '--force', `${repository}@${digests['2']}`], env).catch(() => '');
        let started = performance.now();
        handOut('2.0.0');
        await waitUntil(() => healthy('2.0.0'), 120_000, 'upgrade');
        upgrade.push(performance.now() - started);
        // 1.0.0's image was kept: no download.
        started = performance.now();
        handOut('1.0.0');
        await waitUntil(() => healthy('1.0.0'), 120_000, 'rollback');
        rollback.push(performance.now() - started);
      }
      agent.kill('SIGTERM');
      await new Promise((done) => agent!.once('exit', done));
      agent = undefined;
      await cleanupContainers(env, `io.cascade.device=${device}`, '\u0000');

      // Baselines: the same image with podman run, until it answers.
      const pullRun: number[] = [];
      const run: number[] = [];
      const baselineName = `${device}-baseline`;
      for (let round = 0; round < ROUNDS; round++) {
        for (const withPull of [true, false]) {
          if (withPull) await podman(['rmi', '--force', `${repository}@${digests['2']}`], env).catch(() => '');
          const started = performance.now();
          await podman(['run', '-d', '--name', baselineName, '--label', `io.cascade.device=${device}`, '--network', 'host', '--entrypoint', command[0]!, `${repository}@${digests['2']}`, ...command.slice(1), script], env);
          await waitUntil(() => answers(port), 60_000, 'podman run to answer');
          (withPull ? pullRun : run).push(performance.now() - started);
          await podman(['rm', '--force', '--time', '0', baselineName], env);
          await waitUntil(async () => !(await answers(port)), 30_000, 'the baseline container to stop');
        }
      }
      const s = (ms: number) => ms / 1000;
      return [
        figure(
          `upgrade, hand-out to healthy (pull by digest, swap, HTTP check; median of ${ROUNDS}, spread ${spread(upgrade)})`,
          s(median(upgrade)),
          's',
          'within 2 s of podman pull + run',
          median(upgrade) - median(pullRun) < 2000,
          { name: `podman run with pull, until it answers (spread ${spread(pullRun)})`, value: s(median(pullRun)), unit: 's' },
        ),
        figure(
          `rollback, hand-out to healthy (image kept, no download; median of ${ROUNDS}, spread ${spread(rollback)})`,
          s(median(rollback)),
          's',
          'within 2 s of podman run',
          median(rollback) - median(run) < 2000,
          { name: `podman run, image present, until it answers (spread ${spread(run)})`, value: s(median(run)), unit: 's' },
        ),
      ];
    } finally {
      if (agent && agent.exitCode === null) {
        agent.kill('SIGKILL');
        await new Promise((done) => agent!.once('exit', done));
      }
      await cleanupContainers(env, `io.cascade.device=${device}`, `${registry?.host}/${device}/`);
      await registry?.stop();
      await region?.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
