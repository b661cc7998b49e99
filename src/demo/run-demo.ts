import { compareStrings } from '../core/text.js';
import { regionDashboard } from '../dashboard/serve.js';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import git from 'isomorphic-git';
import { pino, type Logger } from 'pino';
import { parse } from 'yaml';
import { CascadeError } from '../core/errors.js';
import { startRegion, type RunningRegion } from '../region/compose.js';
import { startSimulation, type Simulation } from '../simulate/simulation.js';
import { commitFiles } from '../source/commit-files.js';
import { initFleetRepository } from '../source/init-repository.js';
import { pushBranch } from '../source/push-branch.js';
import { revertCommit } from '../source/revert-commit.js';
import { BROKEN_DEPLOYMENT_PATH, BROKEN_DEPLOYMENT_YAML, DEMO_ROLLOUT, bumpDeploymentVersion, withDemoRollout } from './fleet-edits.js';
import { startGitHttpServer, type GitHttpServer } from './git-http-server.js';
import { ProgressPrinter, type DemoOutput } from './progress-printer.js';
import { getStatus, triggerReconcile } from './region-api.js';
import { plural } from '../core/text.js';
import { short, waitForConvergence, type ConvergenceContext } from './wait-for-convergence.js';

export interface DemoOptions {
  /** Simulated devices in the region. */
  devices: number;
  /** Keep the temporary folder (fleet repository, bare repository, region data) instead of removing it. */
  keep: boolean;
  /** Region and device logs on standard error. */
  verbose: boolean;
  out: DemoOutput;
  /** Longest a step may take to converge. */
  stepTimeoutMs?: number;
  /** Typical install time of a simulated device. */
  applyMs?: number;
  /** Aborting stops the demo (Ctrl-C); everything started is still shut down. */
  signal?: AbortSignal;
  /** Logger for --verbose; a plain pino logger on standard error when absent. */
  log?: Logger;
}

export interface DemoStepTiming {
  step: string;
  ms: number;
}

export interface DemoResult {
  steps: DemoStepTiming[];
  totalMs: number;
  /** The temporary folder; already removed unless `keep`. */
  workDir: string;
}

const REGION = 'us-east';
const BRANCH = 'main';
const DEVICE_LABELS = { hardware: 'rpi4' };
/** The Deployment the demo rolls out and back; the template's default sensor-agent for every non-rpi3 device. */
const DEPLOYMENT = { name: 'sensor-agent', app: 'sensor-agent', file: 'deployments/sensor-agent.yaml', appFile: 'apps/sensor-agent.yaml' };
const AUTHOR = { name: 'Cascade Demo', email: 'demo@cascade.invalid' };
/** Quiet time after the refused commit, to show that nothing moves. */
const REFUSED_HOLD_MS = 2_000;

/**
 * `cascade demo`: a throwaway fleet repository served over git smart HTTP, one region, simulated
 * devices; a rollout, a `git revert` and a refused bad commit, each shown converging. Everything runs
 * in this process on 127.0.0.1 and is shut down at the end, also when a step fails.
 */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const printer = new ProgressPrinter(options.out);
  const say = (text = '') => printer.line(text);
  const stepTimeoutMs = options.stepTimeoutMs ?? 60_000;
  const n = options.devices;
  const started = Date.now();
  const steps: DemoStepTiming[] = [];
  const timed = async <T>(step: string, run: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    const result = await run();
    steps.push({ step, ms: Date.now() - t0 });
    return result;
  };

  const workDir = await fs.promises.mkdtemp(path.join(tmpdir(), 'cascade-demo-'));
  const fleetDir = path.join(workDir, 'fleet');
  const gitRoot = path.join(workDir, 'git');
  // Quiet unless --verbose; what still gets through (a device's own error log) goes to standard error, never into the demo's output.
  const log = options.verbose ? (options.log ?? pino({ level: 'info' }, pino.destination(2))) : pino({ level: 'silent' }, pino.destination(2));

  let gitServer: GitHttpServer | null = null;
  let region: RunningRegion | null = null;
  let simulation: Simulation | null = null;
  let fatal: Error | null = null;
  try {
    say(`Cascade demo: a throwaway fleet repository, region ${REGION} and ${plural(n, 'simulated device')}.`);
    say(`Working in ${workDir}${options.keep ? ' (kept at the end: --keep)' : ' (removed at the end)'}.`);

    // 1. The fleet repository, and a git host serving it.
    say();
    say('[1/6] A fleet repository on a git host');
    const remote = await timed('fleet repository and git host', async () => {
      const init = await initFleetRepository(fleetDir, { branch: BRANCH, author: AUTHOR });
      say(`  created ${fleetDir} from fleet-repo-template/ (commit ${short(init.commit)}, ${plural(init.files.length, 'file')})`);
      await git.init({ fs, dir: path.join(gitRoot, 'fleet.git'), bare: true, defaultBranch: BRANCH });
      gitServer = await startGitHttpServer({ root: gitRoot });
      const url = `${gitServer.url}/fleet.git`;
      say(`  serving ${url} over git smart HTTP (git http-backend), the demo's git host`);

      const fleetYaml = await readText(fleetDir, 'fleet.yaml');
      const fast = await commitFiles({
        dir: fleetDir,
        files: { 'fleet.yaml': withDemoRollout(fleetYaml) },
        message: `demo: fast rollouts for the demo (bakeTime ${DEMO_ROLLOUT.bakeTime})\n`,
        author: AUTHOR,
      });
      say(`  commit ${short(fast)}  demo: fast rollouts for the demo (bakeTime ${DEMO_ROLLOUT.bakeTime})`);
      say(
        `    fleet.yaml rollout: waves [${DEMO_ROLLOUT.waves.join(', ')}], bakeTime ${DEMO_ROLLOUT.bakeTime}, maxUnavailable ${DEMO_ROLLOUT.maxUnavailable}, ` +
          `failureThreshold ${DEMO_ROLLOUT.failureThreshold} after ${DEMO_ROLLOUT.minSample}, rollback ${DEMO_ROLLOUT.rollback}`,
      );
      const production = (parse(fleetYaml)?.spec?.rollout ?? {}) as { waves?: number[]; bakeTime?: string };
      say(
        `    (in production the template's defaults apply: waves [${production.waves?.join(', ') ?? '-'}], bakeTime ${production.bakeTime ?? '-'}, ` +
          `and eu-west's nightly maintenance window)`,
      );
      await pushBranch({ dir: fleetDir, url, branch: BRANCH });
      say(`  pushed ${BRANCH} to the git host`);
      return { url, head: fast };
    });

    // 2. A region following the repository, and its devices' first install.
    say();
    say(`[2/6] Region ${REGION} and ${plural(n, 'device')}`);
    const enrollmentToken = randomBytes(16).toString('hex');
    region = await startRegion({
      plugins: [regionDashboard],
      repo: remote.url,
      branch: BRANCH,
      region: REGION,
      host: '127.0.0.1',
      port: 0,
      dataDir: path.join(workDir, 'region'),
      intervalMs: 5_000,
      enrollmentToken,
      log: log.child({ component: 'region' }),
    });
    const regionUrl = region.url;
    say(`  region ${REGION} listening on ${regionUrl}, following ${BRANCH} of ${remote.url} (polls every 5 s, and on webhook)`);
    const initialVersion = await deploymentVersion(fleetDir);
    const applyMs = options.applyMs ?? 400;
    simulation = await startSimulation({
      regionUrl,
      devices: n,
      enrollmentToken,
      labels: DEVICE_LABELS,
      prefix: REGION,
      applyMs,
      seed: 'demo',
      statsIntervalMs: 0,
      log: log.child({ component: 'simulate' }),
      onFatal: (deviceId, err) => {
        fatal ??= new CascadeError('demo-device-stopped', `simulated device ${deviceId} stopped: ${err.message}`);
      },
    });
    const sim = simulation;
    const first = sim.deviceIds[0]!;
    const last = sim.deviceIds[sim.deviceIds.length - 1]!;
    say(`  started ${plural(n, 'simulated device')} ${first} .. ${last} (labels hardware=rpi4, real HTTP protocol), each install ~${applyMs} ms`);
    const context = (updatesBefore: number): ConvergenceContext => ({
      regionUrl,
      simulation: sim,
      printer,
      timeoutMs: stepTimeoutMs,
      updatesBefore,
      signal: options.signal,
      fatal: () => fatal,
    });

    const installed = await timed(`first install (${plural(n, 'device')})`, async () => {
      const converged = await waitForConvergence(context(0), {
        what: `the first install of ${plural(n, 'device')}`,
        revision: remote.head,
        versions: { [DEPLOYMENT.app]: initialVersion },
      });
      const versions = Object.entries(sim.stats().versions)
        .sort(([a], [b]) => compareStrings(a, b))
        .map(([app, counts]) => `${app} ${Object.keys(counts).join('/')}`)
        .join(', ');
      say(`  converged: ${n}/${n} devices run ${versions} (revision ${short(remote.head)}, ${plural(converged.status.updatesSent, 'update')} handed out)`);
      return converged;
    });
    const engine = installed.rollouts !== null;
    if (!engine) say(`  (this region has no rollout engine yet: it hands every update to every device at once)`);

    // 3. A rollout: a commit that changes one Deployment's version.
    say();
    const bump = bumpDeploymentVersion(await readText(fleetDir, DEPLOYMENT.file), await readText(fleetDir, DEPLOYMENT.appFile), {
      deployment: DEPLOYMENT.file,
      app: DEPLOYMENT.appFile,
    });
    say(`[3/6] Roll out ${DEPLOYMENT.name} ${bump.to}`);
    const rollout = await timed(`rollout of ${DEPLOYMENT.name} ${bump.to}`, async () => {
      const message = `${DEPLOYMENT.name}: roll out ${bump.to}`;
      const files: Record<string, string> = { [DEPLOYMENT.file]: bump.deploymentYaml };
      if (bump.appYaml) files[DEPLOYMENT.appFile] = bump.appYaml;
      const commit = await commitFiles({ dir: fleetDir, files, message: `${message}\n`, author: AUTHOR });
      say(`  commit ${short(commit)}  ${message}`);
      say(`    ${DEPLOYMENT.file}: spec.version ${bump.from} -> ${bump.to}`);
      if (bump.appYaml) say(`    ${DEPLOYMENT.appFile}: artifact for ${bump.to} added (url, sha256, size; the simulated devices download nothing)`);
      const before = await publish(fleetDir, remote.url, regionUrl, options.signal);
      say(`  pushed; webhook POST /api/v1/reconcile`);
      const converged = await waitForConvergence(context(before), {
        what: `the rollout of ${DEPLOYMENT.name} ${bump.to}`,
        revision: commit,
        versions: { [DEPLOYMENT.app]: bump.to },
        deployments: [DEPLOYMENT.name],
      });
      const handed = converged.status.updatesSent - before;
      expectUpdates(handed, n, `the rollout of ${DEPLOYMENT.name} ${bump.to}`);
      say(`  converged: ${n}/${n} devices run ${DEPLOYMENT.app} ${bump.to}; ${plural(handed, 'update')} handed out, one per device`);
      return { commit, updatesSent: converged.status.updatesSent };
    });

    // 4. A rollback: `git revert` of the rollout commit.
    say();
    say(`[4/6] Roll back: git revert ${short(rollout.commit)}`);
    const reverted = await timed('rollback (git revert)', async () => {
      const revert = await revertCommit({
        dir: fleetDir,
        gitdir: path.join(fleetDir, '.git'),
        commit: rollout.commit,
        author: AUTHOR,
        explanation: `${DEPLOYMENT.name} goes back to ${bump.from}.`,
      });
      say(`  commit ${short(revert.commit)}  ${revert.message.split('\n')[0]}  (${revert.paths.join(', ')})`);
      const before = await publish(fleetDir, remote.url, regionUrl, options.signal);
      say(`  pushed; webhook POST /api/v1/reconcile`);
      const converged = await waitForConvergence(context(before), {
        what: `the rollback of ${DEPLOYMENT.name} to ${bump.from}`,
        revision: revert.commit,
        versions: { [DEPLOYMENT.app]: bump.from },
        deployments: [DEPLOYMENT.name],
      });
      const handed = converged.status.updatesSent - before;
      expectUpdates(handed, n, `the rollback of ${DEPLOYMENT.name} to ${bump.from}`);
      const rollback = converged.rollouts?.find((r) => r.deployment === DEPLOYMENT.name);
      const how = !engine ? ' (all devices at once)' : rollback?.rollback ? ` (a rollback: ${DEMO_ROLLOUT.rollback}, no waves)` : '';
      say(`  rolled back: ${n}/${n} devices run ${DEPLOYMENT.app} ${bump.from} again${how}; ${plural(handed, 'update')} handed out`);
      return { commit: revert.commit, updatesSent: converged.status.updatesSent };
    });

    // 5. A bad commit: the region refuses it and keeps serving the last good revision.
    say();
    say('[5/6] A bad commit');
    await timed('bad commit refused', async () => {
      const message = 'camera-agent: deploy to us-east';
      const commit = await commitFiles({ dir: fleetDir, files: { [BROKEN_DEPLOYMENT_PATH]: BROKEN_DEPLOYMENT_YAML }, message: `${message}\n`, author: AUTHOR });
      say(`  commit ${short(commit)}  ${message}`);
      say(`    ${BROKEN_DEPLOYMENT_PATH}: two Deployments of an App the commit forgot to add, one with a misspelt field`);
      await publish(fleetDir, remote.url, regionUrl, options.signal);
      say(`  pushed; webhook POST /api/v1/reconcile`);
      const status = await waitForRefusal(regionUrl, commit, stepTimeoutMs, options.signal);
      say(`  refused: revision ${short(commit)} failed validation:`);
      for (const error of status.revision.error ?? []) say(`    ${error}`);
      // Watch a little while: nothing may be handed out, and every device stays where it is.
      await sleepUnlessAborted(REFUSED_HOLD_MS, options.signal);
      const after = await getStatus(regionUrl, options.signal);
      if (after.revision.applied !== reverted.commit) {
        throw new CascadeError('demo-check-failed', `after the bad commit the region applied ${short(after.revision.applied)}; it should have kept the last good revision ${short(reverted.commit)}`);
      }
      if (after.updatesSent !== reverted.updatesSent) {
        throw new CascadeError('demo-check-failed', `after the bad commit the region handed out ${after.updatesSent - reverted.updatesSent} updates; it should have handed out none`);
      }
      const running = sim.stats().versions[DEPLOYMENT.app]?.[bump.from] ?? 0;
      if (after.devices.converged !== n || running !== n) {
        throw new CascadeError('demo-check-failed', `after the bad commit ${after.devices.converged}/${n} devices are converged and ${running}/${n} run ${DEPLOYMENT.app} ${bump.from}; all should have stayed`);
      }
      say(`  last good revision kept: the region still serves ${short(reverted.commit)} (attempted ${short(after.revision.attempted)}, applied ${short(after.revision.applied)})`);
      say(`  ${(REFUSED_HOLD_MS / 1000).toFixed(0)} s later: 0 updates handed out, ${n}/${n} devices still converged on ${DEPLOYMENT.app} ${bump.from}`);
    });

    // 6. Summary.
    const totalMs = Date.now() - started;
    say();
    say('[6/6] Summary');
    const width = Math.max(...steps.map((s) => s.step.length));
    for (const step of steps) say(`  ${step.step.padEnd(width)}  ${seconds(step.ms)}`);
    say(`  ${'total'.padEnd(width)}  ${seconds(totalMs)}`);
    say(`Demo complete: rollout converged, rolled back with git revert, bad commit refused, last good revision kept.`);
    return { steps, totalMs, workDir };
  } finally {
    printer.settle();
    const stopping: Array<[string, () => Promise<void>]> = [
      ['simulated devices', async () => simulation?.stop()],
      ['region', async () => region?.close()],
      ['git host', async () => gitServer?.stop()],
    ];
    for (const [what, stop] of stopping) {
      try {
        await stop();
      } catch (err) {
        process.stderr.write(`cascade demo: stopping the ${what} failed: ${(err as Error).message}\n`);
      }
    }
    if (options.keep) say(`Kept ${workDir}: fleet/ (the fleet repository), git/fleet.git (the git host's copy), region/ (the region's data).`);
    else await fs.promises.rm(workDir, { recursive: true, force: true });
  }
}

async function readText(dir: string, file: string): Promise<string> {
  return fs.promises.readFile(path.join(dir, ...file.split('/')), 'utf8');
}

async function deploymentVersion(fleetDir: string): Promise<string> {
  const version: unknown = parse(await readText(fleetDir, DEPLOYMENT.file))?.spec?.version;
  if (typeof version !== 'string') {
    throw new CascadeError('demo-template-changed', `${DEPLOYMENT.file} has no spec.version; the demo expects the template's ${DEPLOYMENT.name} Deployment`);
  }
  return version;
}

/**
 * Pushes, then calls the region's webhook as the git host would. Returns updatesSent from before the
 * push: the region's own poll may pick the commit up before the webhook does.
 */
async function publish(fleetDir: string, url: string, regionUrl: string, signal?: AbortSignal): Promise<number> {
  const before = (await getStatus(regionUrl, signal)).updatesSent;
  await pushBranch({ dir: fleetDir, url, branch: BRANCH });
  await triggerReconcile(regionUrl, signal);
  return before;
}

async function waitForRefusal(regionUrl: string, commit: string, timeoutMs: number, signal?: AbortSignal) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await getStatus(regionUrl, signal);
    if (status.revision.attempted === commit && status.revision.error?.length) return status;
    if (status.revision.applied === commit) {
      throw new CascadeError('demo-check-failed', `the region applied the bad commit ${short(commit)}; it should have refused it`);
    }
    if (Date.now() > deadline) {
      throw new CascadeError(
        'demo-step-timeout',
        `the region did not refuse the bad commit ${short(commit)} within ${Math.round(timeoutMs / 1000)} s (attempted ${short(status.revision.attempted)}, source head ${short(status.source.head)}${status.source.error ? `, source error: ${status.source.error}` : ''})`,
      );
    }
    await sleepUnlessAborted(250, signal);
  }
}

function expectUpdates(handed: number, devices: number, what: string): void {
  if (handed !== devices) {
    throw new CascadeError('demo-check-failed', `${what} handed out ${plural(handed, 'update')} for ${plural(devices, 'device')}; it should be exactly one per device`);
  }
}

async function sleepUnlessAborted(ms: number, signal?: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal });
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1).padStart(5)} s`;
}
