import type { Logger } from 'pino';
import type { InstalledApp } from './agent-state.js';
import { AppApplyError } from './apply-error.js';
import type { AppTarget, DeviceRuntime } from './runtime.js';

/**
 * The real device runtime: each App is run by the runtime its `runtime.type` names (exec or container),
 * so one agent serves a fleet that mixes both. An app that changes type between versions is stopped by
 * its old runtime and started by its new one.
 */
export class RuntimeByApp implements DeviceRuntime {
  constructor(private readonly runtimes: { exec: DeviceRuntime; container: DeviceRuntime }) {}

  private of(installed: Pick<InstalledApp, 'runtime'> | null | undefined): DeviceRuntime | null {
    const type = installed?.runtime?.type;
    return type === 'container' ? this.runtimes.container : type === 'exec' ? this.runtimes.exec : null;
  }

  async install(app: string, target: AppTarget, previous: InstalledApp | null, signal: AbortSignal, log: Logger): Promise<InstalledApp> {
    const runtime = this.of(target);
    if (!runtime) {
      throw new AppApplyError('runtime-unsupported', `${app} ${target.version}: the App has ${target.runtime ? `runtime type '${(target.runtime as { type: string }).type}'` : 'no runtime'}; this agent runs exec and container apps`, { touchedPrevious: false });
    }
    const before = this.of(previous);
    if (before && before !== runtime && previous) {
      // Changing runtime: the old one stops what it ran; restore puts it back if the new one fails.
      // Without its artifact path: the old runtime stops it but keeps its files for going back.
      await before.restore(app, null, { ...previous, artifactPath: null }, signal, log);
      try {
        return await runtime.install(app, target, null, signal, log);
      } catch (err) {
        if (err instanceof AppApplyError) throw new AppApplyError(err.code, err.message, { touchedPrevious: true, partial: err.partial });
        throw err;
      }
    }
    return runtime.install(app, target, previous, signal, log);
  }

  async healthCheck(app: string, installed: InstalledApp, signal: AbortSignal, log: Logger): Promise<void> {
    await this.of(installed)?.healthCheck(app, installed, signal, log);
  }

  async restore(app: string, previous: InstalledApp | null, failed: InstalledApp | null, signal: AbortSignal, log: Logger): Promise<void> {
    const forPrevious = this.of(previous);
    const forFailed = this.of(failed);
    if (forFailed && forFailed !== forPrevious) await forFailed.restore(app, null, failed, signal, log);
    if (forPrevious) await forPrevious.restore(app, previous, forFailed === forPrevious ? failed : null, signal, log);
  }

  async remove(app: string, installed: InstalledApp, signal: AbortSignal, log: Logger): Promise<void> {
    await this.of(installed)?.remove(app, installed, signal, log);
  }

  async discard(app: string, installed: InstalledApp): Promise<void> {
    await this.of(installed)?.discard(app, installed);
  }

  async drift(app: string, installed: InstalledApp, signal: AbortSignal): Promise<string | null> {
    const runtime = this.of(installed);
    return runtime?.drift ? runtime.drift(app, installed, signal) : null;
  }
}
