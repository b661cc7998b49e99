import type { Logger } from 'pino';
import type { ArtifactUrlPolicy } from '../core/artifact-url.js';
import { CascadeError } from '../core/errors.js';
import type { DesiredAppWire } from '../protocol/types.js';
import { sleep } from './abortable.js';
import type { InstalledApp } from './agent-state.js';
import { AppApplyError } from './apply-error.js';
import type { DeviceRuntime } from './runtime.js';
import { checkArtifactUrl } from './verify-artifact.js';

/** What a simulated container app is doing now; null when nothing. */
export type SimulatedPhase = 'pulling' | 'starting' | 'checking' | null;

/** Typical times of a container app's steps; each step takes 0.5x to 1.5x of it (with the default jitter). */
export interface SimulatedContainerTimings {
  pullMs: number;
  startMs: number;
  healthMs: number;
}

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
  /**
   * Container apps (runtime.type container) go through pull, start and health check with these
   * times, as the real container runtime does: the pull is skipped when the image is on the device
   * (a rollback to the previous version), and one previous image per app is kept.
   */
  container?: SimulatedContainerTimings;
  /** Called as a container app enters each step (null: done). */
  onPhase?: (app: string, phase: SimulatedPhase) => void;
  /** Called after each pull decision: whether the image had to be downloaded. */
  onPull?: (app: string, downloaded: boolean) => void;
}

/** Installs nothing: waits about applyMs and succeeds, or fails as configured. For demos, tests and load. */
export class SimulatedRuntime implements DeviceRuntime {
  private readonly jitter: number;
  private readonly random: () => number;
  /** Per app, the image digests "on the device". */
  private readonly images = new Map<string, Set<string>>();
  /** Per app, the digest installed last. */
  private readonly latest = new Map<string, string>();

  constructor(private readonly opts: SimulatedRuntimeOptions) {
    this.jitter = Math.min(1, Math.max(0, opts.jitter ?? 0.5));
    this.random = opts.random ?? Math.random;
  }

  private wait(ms: number, signal: AbortSignal): Promise<void> {
    const factor = 1 - this.jitter + 2 * this.jitter * this.random();
    return sleep(Math.max(0, Math.round(ms * factor)), signal);
  }

  private phase(app: string, phase: SimulatedPhase): void {
    this.opts.onPhase?.(app, phase);
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
    const timings = this.opts.container;
    const installed: InstalledApp = { version: target.version, deployment: target.deployment };
    if (!timings || target.runtime?.type !== 'container') {
      await this.wait(this.opts.applyMs, signal);
      return installed;
    }
    const digest = target.artifact && 'digest' in target.artifact ? target.artifact.digest : `version:${target.version}`;
    const images = this.images.get(app) ?? new Set<string>();
    this.images.set(app, images);
    try {
      const downloaded = !images.has(digest);
      if (downloaded) {
        this.phase(app, 'pulling');
        await this.wait(timings.pullMs, signal);
        images.add(digest);
      }
      this.opts.onPull?.(app, downloaded);
      this.phase(app, 'starting');
      await this.wait(timings.startMs, signal);
    } catch (err) {
      this.phase(app, null);
      throw err;
    }
    this.latest.set(app, digest);
    installed.runtime = target.runtime;
    installed.container = { name: `sim-${app}-${target.version}`, image: digest, digest };
    return installed;
  }

  async healthCheck(app: string, installed: InstalledApp, signal: AbortSignal, _log: Logger): Promise<void> {
    if (installed.container && this.opts.container) {
      this.phase(app, 'checking');
      try {
        await this.wait(this.opts.container.healthMs, signal);
      } finally {
        this.phase(app, null);
      }
    }
    const reason = this.opts.failure?.(app, installed.version) ?? null;
    if (reason !== null) {
      throw new AppApplyError('health-check-failed', `${app} ${installed.version} failed its health check: ${reason}`, { touchedPrevious: true, partial: installed });
    }
  }

  async restore(app: string, previous: InstalledApp | null, _failed: InstalledApp | null, signal: AbortSignal): Promise<void> {
    // The previous container is still there: starting it again needs no pull.
    if (previous?.container && this.opts.container) {
      this.phase(app, 'starting');
      try {
        await this.wait(this.opts.container.startMs, signal);
      } finally {
        this.phase(app, null);
      }
    }
  }

  async remove(app: string): Promise<void> {
    this.images.delete(app);
    this.latest.delete(app);
  }

  async discard(app: string, old: InstalledApp): Promise<void> {
    // Keeps the image now running and the one just replaced; prunes the rest.
    const images = this.images.get(app);
    if (!images || !old.container) return;
    const keep = new Set([old.container.digest]);
    const latest = this.latest.get(app);
    if (latest) keep.add(latest);
    for (const digest of images) if (!keep.has(digest)) images.delete(digest);
  }
}
