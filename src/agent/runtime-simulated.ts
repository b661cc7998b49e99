import type { Logger } from 'pino';
import type { ArtifactUrlPolicy } from '../core/artifact-url.js';
import { CascadeError } from '../core/errors.js';
import type { DesiredAppWire } from '../protocol/types.js';
import { sleep } from './abortable.js';
import type { InstalledApp } from './agent-state.js';
import { AppApplyError } from './apply-error.js';
import type { DeviceRuntime } from './runtime.js';
import { checkArtifactUrl } from './verify-artifact.js';

export interface SimulatedRuntimeOptions {
  /** Typical time an install takes. */
  applyMs: number;
  /** Spread of install times as a fraction of applyMs: 0.5 gives 0.5x to 1.5x. */
  jitter?: number;
  random?: () => number;
  /** Why installing this version fails its health check, or null when it works. */
  failure?: (app: string, version: string) => string | null;
  /** Refuse the artifact URLs a real agent would refuse (--allow-artifact-origin). */
  artifactPolicy?: ArtifactUrlPolicy;
}

/** Installs nothing: waits about applyMs and succeeds, or fails as configured. For demos, tests and load. */
export class SimulatedRuntime implements DeviceRuntime {
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(private readonly opts: SimulatedRuntimeOptions) {
    this.jitter = Math.min(1, Math.max(0, opts.jitter ?? 0.5));
    this.random = opts.random ?? Math.random;
  }

  async install(app: string, target: DesiredAppWire, _previous: InstalledApp | null, signal: AbortSignal): Promise<InstalledApp> {
    const artifact = target.artifact;
    if (artifact && 'url' in artifact) {
      // Cheap, like the rest of the simulation, but the same refusal a real agent makes before it connects.
      try {
        checkArtifactUrl(new URL(artifact.url), this.opts.artifactPolicy ?? {});
      } catch (err) {
        const message = err instanceof CascadeError ? err.message : `artifact URL ${artifact.url} is not a valid URL`;
        throw new AppApplyError('artifact-url-refused', `${app} ${target.version}: ${message}`, { touchedPrevious: false });
      }
    }
    const factor = 1 - this.jitter + 2 * this.jitter * this.random();
    await sleep(Math.max(0, Math.round(this.opts.applyMs * factor)), signal);
    const installed: InstalledApp = { version: target.version, deployment: target.deployment };
    return installed;
  }

  async healthCheck(app: string, installed: InstalledApp, _signal: AbortSignal, _log: Logger): Promise<void> {
    const reason = this.opts.failure?.(app, installed.version) ?? null;
    if (reason !== null) {
      throw new AppApplyError('health-check-failed', `${app} ${installed.version} failed its health check: ${reason}`, { touchedPrevious: true, partial: installed });
    }
  }

  async restore(): Promise<void> {}

  async remove(): Promise<void> {}

  async discard(): Promise<void> {}
}
