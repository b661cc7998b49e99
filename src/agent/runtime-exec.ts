import { rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { ExecRuntime as ExecRuntimeSpec, HealthCheck } from '../core/app-spec.js';
import { CascadeError } from '../core/errors.js';
import type { DesiredAppWire } from '../protocol/types.js';
import { sleep } from './abortable.js';
import type { InstalledApp } from './agent-state.js';
import { AppApplyError } from './apply-error.js';
import { parseDuration } from '../core/duration.js';
import type { DeviceRuntime } from './runtime.js';
import { describeShellFailure, renderCommand, runShell } from './shell.js';
import { fetchVerifiedArtifact } from './verify-artifact.js';

export interface ExecRuntimeOptions {
  /** Artifacts are kept under `<stateDir>/artifacts/<app>/<version>/`; commands run here. */
  stateDir: string;
  /** Limit of each install/start/stop command. */
  commandTimeoutMs?: number;
  downloadTimeoutMs?: number;
  /** Pause between health check attempts. */
  healthIntervalMs?: number;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_HEALTH_TIMEOUT = '10s';
/** Retries after the first failed attempt, when the App does not say. */
const DEFAULT_HEALTH_RETRIES = 2;

function safeSegment(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]/g, '_');
}

/**
 * Runs apps with the shell commands of their App document (`runtime: { type: exec, install, start?, stop? }`),
 * after downloading and verifying the version's artifact.
 */
export class ExecRuntime implements DeviceRuntime {
  private readonly commandTimeoutMs: number;
  private readonly healthIntervalMs: number;

  constructor(private readonly opts: ExecRuntimeOptions) {
    this.commandTimeoutMs = opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.healthIntervalMs = opts.healthIntervalMs ?? 2000;
  }

  async install(app: string, target: DesiredAppWire, previous: InstalledApp | null, signal: AbortSignal, log: Logger): Promise<InstalledApp> {
    const runtime = target.runtime;
    if (!runtime || runtime.type !== 'exec') {
      throw new AppApplyError('runtime-unsupported', `${app} ${target.version}: this agent runs exec apps; the App has ${runtime ? `runtime type '${runtime.type}'` : 'no runtime'}`, { touchedPrevious: false });
    }
    const artifactPath = await this.fetchArtifact(app, target, runtime, signal);
    const installed: InstalledApp = { version: target.version, deployment: target.deployment, runtime, artifactPath };
    if (target.healthCheck) installed.healthCheck = target.healthCheck;

    // From here on the running version is disturbed: a failure must put it back.
    if (previous?.runtime?.type === 'exec' && previous.runtime.stop) {
      await this.runStep(app, 'stop', previous.runtime.stop, previous, signal, log, null);
    }
    await this.runStep(app, 'install', runtime.install, installed, signal, log, installed);
    if (runtime.start) await this.runStep(app, 'start', runtime.start, installed, signal, log, installed);
    return installed;
  }

  async healthCheck(app: string, installed: InstalledApp, signal: AbortSignal, log: Logger): Promise<void> {
    const check = installed.healthCheck;
    if (!check || (!check.exec && !check.http)) return;
    let timeoutMs: number;
    try {
      timeoutMs = parseDuration(check.timeout ?? DEFAULT_HEALTH_TIMEOUT);
    } catch (err) {
      throw new AppApplyError('health-check-invalid', `${app} ${installed.version}: healthCheck.timeout: ${(err as Error).message}`, { touchedPrevious: true, partial: installed });
    }
    const attempts = 1 + Math.max(0, check.retries ?? DEFAULT_HEALTH_RETRIES);
    let reason = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const problem = await this.probe(check, installed, timeoutMs, signal);
      if (problem === null) return;
      reason = problem;
      log.warn({ app, version: installed.version, attempt, attempts, reason }, 'health check failed');
      if (attempt < attempts) await sleep(this.healthIntervalMs, signal);
    }
    throw new AppApplyError('health-check-failed', `${app} ${installed.version} failed its health check ${attempts} time(s): ${reason}`, { touchedPrevious: true, partial: installed });
  }

  async restore(app: string, previous: InstalledApp | null, failed: InstalledApp | null, signal: AbortSignal, log: Logger): Promise<void> {
    const failedRuntime = failed?.runtime;
    if (failed && failedRuntime?.type === 'exec' && failedRuntime.stop) {
      try {
        await this.runStep(app, 'stop', failedRuntime.stop, failed, signal, log, null);
      } catch (err) {
        log.warn({ app, version: failed.version, err: (err as Error).message }, 'could not stop the failed version');
      }
    }
    if (failed && failed.artifactPath && failed.artifactPath !== previous?.artifactPath) await this.discard(app, failed);
    const runtime = previous?.runtime;
    if (!previous || runtime?.type !== 'exec') return;
    await this.runStep(app, 'install', runtime.install, previous, signal, log, null);
    if (runtime.start) await this.runStep(app, 'start', runtime.start, previous, signal, log, null);
  }

  async remove(app: string, installed: InstalledApp, signal: AbortSignal, log: Logger): Promise<void> {
    const runtime = installed.runtime;
    if (runtime?.type === 'exec' && runtime.stop) await this.runStep(app, 'stop', runtime.stop, installed, signal, log, null);
    await rm(join(this.opts.stateDir, 'artifacts', safeSegment(app)), { recursive: true, force: true });
  }

  async discard(_app: string, installed: InstalledApp): Promise<void> {
    if (installed.artifactPath) await rm(dirname(installed.artifactPath), { recursive: true, force: true });
  }

  private async fetchArtifact(app: string, target: DesiredAppWire, runtime: ExecRuntimeSpec, signal: AbortSignal): Promise<string | null> {
    const needsArtifact = runtime.install.includes('{artifact}');
    const artifact = target.artifact;
    if (!artifact) {
      if (needsArtifact) {
        throw new AppApplyError('artifact-missing', `${app} ${target.version}: the install command uses {artifact} but the App lists no artifact for this version`, { touchedPrevious: false });
      }
      return null;
    }
    if (!('url' in artifact)) {
      if (needsArtifact) {
        throw new AppApplyError('runtime-unsupported', `${app} ${target.version}: the artifact is an image (${artifact.image}); the exec runtime installs files`, { touchedPrevious: false });
      }
      return null;
    }
    const name = safeSegment(basename(new URL(artifact.url, 'file:///').pathname) || 'artifact');
    const destination = join(this.opts.stateDir, 'artifacts', safeSegment(app), safeSegment(target.version), name);
    try {
      await fetchVerifiedArtifact(artifact, destination, { signal, timeoutMs: this.opts.downloadTimeoutMs });
    } catch (err) {
      if (err instanceof CascadeError) throw new AppApplyError(err.code, `${app} ${target.version}: ${err.message}`, { touchedPrevious: false });
      throw err;
    }
    return destination;
  }

  private async runStep(
    app: string,
    step: 'install' | 'start' | 'stop',
    template: string,
    version: InstalledApp,
    signal: AbortSignal,
    log: Logger,
    partial: InstalledApp | null,
  ): Promise<void> {
    const command = renderCommand(template, { version: version.version, artifact: version.artifactPath });
    log.info({ app, version: version.version, step, command }, `running ${step}`);
    const result = await runShell(command, {
      cwd: this.opts.stateDir,
      env: { CASCADE_APP: app, CASCADE_VERSION: version.version, CASCADE_ARTIFACT: version.artifactPath ?? '' },
      timeoutMs: this.commandTimeoutMs,
      signal,
    });
    if (result.exitCode !== 0) {
      throw new AppApplyError(`${step}-failed`, `${app} ${version.version}: ${step} command ${describeShellFailure(result, this.commandTimeoutMs)}`, { touchedPrevious: true, partial });
    }
  }

  private async probe(check: HealthCheck, installed: InstalledApp, timeoutMs: number, signal: AbortSignal): Promise<string | null> {
    if (check.exec) {
      const command = renderCommand(check.exec, { version: installed.version, artifact: installed.artifactPath });
      const result = await runShell(command, { cwd: this.opts.stateDir, env: { CASCADE_VERSION: installed.version }, timeoutMs, signal });
      if (result.exitCode !== 0) return `\`${check.exec}\` ${describeShellFailure(result, timeoutMs)}`;
    }
    if (check.http) {
      const url = check.http.replaceAll('{version}', encodeURIComponent(installed.version));
      try {
        const response = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
        await response.arrayBuffer();
        if (response.status < 200 || response.status >= 300) return `GET ${url} answered ${response.status}`;
      } catch (err) {
        if (signal.aborted) throw err;
        return `GET ${url} failed: ${(err as Error).message}`;
      }
    }
    return null;
  }
}
