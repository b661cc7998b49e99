import { rm } from 'node:fs/promises';
import { basename, dirname, relative, resolve, sep } from 'node:path';
import type { Logger } from 'pino';
import type { CommandTemplate, ExecRuntime as ExecRuntimeSpec, HealthCheck } from '../core/app-spec.js';
import type { ArtifactUrlPolicy } from '../core/artifact-url.js';
import { commandTemplateProblem, prepareCommand, usesPlaceholder, type PreparedCommand } from '../core/command-template.js';
import { CascadeError } from '../core/errors.js';
import { VERSION_GRAMMAR_TEXT, isValidVersion } from '../core/version.js';
import type { DesiredAppWire } from '../protocol/types.js';
import { sleep } from './abortable.js';
import type { InstalledApp } from './agent-state.js';
import { AppApplyError } from './apply-error.js';
import { checkHealthWithRetries } from './health-retries.js';
import { parseDuration } from '../core/duration.js';
import type { DeviceRuntime } from './runtime.js';
import { describeShellFailure, runCommand } from './shell.js';
import { checkStatePath, STATE_PATH_REFUSED, statePath } from './state-path.js';
import { fetchVerifiedArtifact } from './verify-artifact.js';
import { downloadFromRelay, type RelaySource } from './download.js';

export interface ExecRuntimeOptions {
  /** Artifacts are kept under `<stateDir>/artifacts/<app>/<version>/`; commands run here. */
  stateDir: string;
  /** Limit of each install/start/stop command. */
  commandTimeoutMs?: number;
  downloadTimeoutMs?: number;
  /** Pause between health check attempts. */
  healthIntervalMs?: number;
  /** Artifact origins allowed beyond the default (--allow-artifact-origin). */
  artifactPolicy?: ArtifactUrlPolicy;
  /** The region and device token: artifacts the region relays are fetched from it (resumable, deltas). */
  relay?: RelaySource;
  /** The zstd command that applies deltas (`zstd` on PATH when absent; missing = full downloads). */
  zstd?: string;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 10 * 60_000;

/** The artifact's file name from its URL, as one harmless path segment. */
function artifactFileName(url: string): string {
  let name: string;
  try {
    name = decodeURIComponent(basename(new URL(url).pathname));
  } catch {
    name = '';
  }
  name = name.replace(/[^A-Za-z0-9._+-]/g, '_').slice(0, 128);
  return name === '' || /^\.+$/.test(name) ? 'artifact' : name;
}

/**
 * Runs apps with the commands of their App document (`runtime: { type: exec, install, start?, stop? }`),
 * after downloading and verifying the version's artifact.
 *
 * Promise: before anything is downloaded or run, the version must match the version grammar and
 * every command template must be safe (core/command-template.ts); values reach commands only as
 * arguments of a list command or as environment variables of a shell command, never as code; every
 * file lives under `<stateDir>/artifacts/<app>/<version>/` (state-path.ts).
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
    refuseUnsafe(app, target, runtime);
    const artifactPath = await this.fetchArtifact(app, target, runtime, signal, previous, log);
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
    await checkHealthWithRetries({
      app,
      installed,
      check,
      intervalMs: this.healthIntervalMs,
      signal,
      log,
      probe: async (timeoutMs) => {
        const problem = await this.probe(app, check, installed, timeoutMs, signal);
        return problem === null ? null : { reason: problem };
      },
    });
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
    await rm(await statePath(this.opts.stateDir, ['artifacts', app]), { recursive: true, force: true });
  }

  async discard(_app: string, installed: InstalledApp): Promise<void> {
    if (!installed.artifactPath) return;
    // The folder of one version, <stateDir>/artifacts/<app>/<version>, and nothing else.
    const folder = await checkStatePath(this.opts.stateDir, dirname(installed.artifactPath));
    const parts = relative(resolve(this.opts.stateDir), folder).split(sep);
    if (parts.length !== 3 || parts[0] !== 'artifacts') throw new CascadeError(STATE_PATH_REFUSED, `refusing to delete ${folder}: not the folder of one artifact version`);
    await rm(folder, { recursive: true, force: true });
  }

  private async fetchArtifact(app: string, target: DesiredAppWire, runtime: ExecRuntimeSpec, signal: AbortSignal, previous: InstalledApp | null, log: Logger): Promise<string | null> {
    const needsArtifact = usesPlaceholder(runtime.install, 'artifact');
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
    try {
      const destination = await statePath(this.opts.stateDir, ['artifacts', app, target.version, artifactFileName(artifact.url)], { create: true });
      if (target.relay && this.opts.relay) {
        // The base of a delta is the file of the running version, if it is still where the agent put it.
        const current = previous?.artifactPath ? await checkStatePath(this.opts.stateDir, previous.artifactPath).catch(() => null) : null;
        const result = await downloadFromRelay(artifact, target.relay, destination, {
          source: this.opts.relay,
          signal,
          timeoutMs: this.opts.downloadTimeoutMs,
          current,
          zstd: this.opts.zstd,
          note: (message, fields) => log.warn({ app, version: target.version, ...fields }, message),
        });
        log.info({ app, version: target.version, via: result.via, bytes: result.bytesReceived, resumed: result.resumed }, `artifact received from the region (${result.via})`);
      } else {
        await fetchVerifiedArtifact(artifact, destination, { signal, timeoutMs: this.opts.downloadTimeoutMs, policy: this.opts.artifactPolicy });
      }
      return destination;
    } catch (err) {
      if (err instanceof CascadeError) throw new AppApplyError(err.code, `${app} ${target.version}: ${err.message}`, { touchedPrevious: false });
      throw err;
    }
  }

  private async runStep(
    app: string,
    step: 'install' | 'start' | 'stop',
    template: CommandTemplate,
    version: InstalledApp,
    signal: AbortSignal,
    log: Logger,
    partial: InstalledApp | null,
  ): Promise<void> {
    const command = prepare(app, step, template, version, partial);
    log.info({ app, version: version.version, step, command: command.display }, `running ${step}`);
    const result = await runCommand(command, { cwd: this.opts.stateDir, timeoutMs: this.commandTimeoutMs, signal });
    if (result.exitCode !== 0) {
      throw new AppApplyError(`${step}-failed`, `${app} ${version.version}: ${step} command ${describeShellFailure(result, this.commandTimeoutMs)}`, { touchedPrevious: true, partial });
    }
  }

  private async probe(app: string, check: HealthCheck, installed: InstalledApp, timeoutMs: number, signal: AbortSignal): Promise<string | null> {
    if (check.exec) {
      const command = prepare(app, 'healthCheck.exec', check.exec, installed, installed);
      const result = await runCommand(command, { cwd: this.opts.stateDir, timeoutMs, signal });
      if (result.exitCode !== 0) return `\`${command.display}\` ${describeShellFailure(result, timeoutMs)}`;
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

/** The agent's own check of what the region sent, before anything is downloaded or run. */
function refuseUnsafe(app: string, target: DesiredAppWire, runtime: ExecRuntimeSpec): void {
  if (!isValidVersion(target.version)) {
    throw new AppApplyError('version-invalid', `${app}: version ${JSON.stringify(String(target.version).slice(0, 140))} refused: a version is ${VERSION_GRAMMAR_TEXT}`, { touchedPrevious: false });
  }
  const commands: Array<[string, CommandTemplate | undefined]> = [
    ['install', runtime.install],
    ['start', runtime.start],
    ['stop', runtime.stop],
    ['healthCheck.exec', target.healthCheck?.exec],
  ];
  for (const [step, template] of commands) {
    const problem = template === undefined ? null : commandTemplateProblem(template);
    if (problem) throw new AppApplyError('command-template-unsafe', `${app} ${target.version}: ${step} command refused: ${problem}`, { touchedPrevious: false });
  }
}

/** A command of a version, ready to spawn; a template or version that is not safe becomes an apply error. */
function prepare(app: string, step: string, template: CommandTemplate, version: InstalledApp, partial: InstalledApp | null): PreparedCommand {
  try {
    if (!isValidVersion(version.version)) throw new CascadeError('version-invalid', `version refused: a version is ${VERSION_GRAMMAR_TEXT}`);
    return prepareCommand(template, { app, version: version.version, artifact: version.artifactPath ?? null });
  } catch (err) {
    if (err instanceof CascadeError) throw new AppApplyError(err.code, `${app} ${version.version}: ${step}: ${err.message}`, { touchedPrevious: partial !== null, partial });
    throw err;
  }
}
