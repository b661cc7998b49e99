import type { Logger } from 'pino';
import type { InstalledApp } from './agent-state.js';
import type { AppTarget, DeviceRuntime } from './runtime.js';

/**
 * A runtime built on its first use. `cascade agent --runtime exec` serves exec and container apps;
 * a device that runs no container never loads the container runtime and its engine's code.
 * A failed build is retried on the next use.
 */
export class RuntimeOnDemand implements DeviceRuntime {
  private built: Promise<DeviceRuntime> | undefined;

  constructor(private readonly build: () => Promise<DeviceRuntime>) {}

  private runtime(): Promise<DeviceRuntime> {
    this.built ??= this.build().catch((err: unknown) => {
      this.built = undefined;
      throw err;
    });
    return this.built;
  }

  async install(app: string, target: AppTarget, previous: InstalledApp | null, signal: AbortSignal, log: Logger): Promise<InstalledApp> {
    return (await this.runtime()).install(app, target, previous, signal, log);
  }

  async healthCheck(app: string, installed: InstalledApp, signal: AbortSignal, log: Logger): Promise<void> {
    return (await this.runtime()).healthCheck(app, installed, signal, log);
  }

  async restore(app: string, previous: InstalledApp | null, failed: InstalledApp | null, signal: AbortSignal, log: Logger): Promise<void> {
    return (await this.runtime()).restore(app, previous, failed, signal, log);
  }

  async remove(app: string, installed: InstalledApp, signal: AbortSignal, log: Logger): Promise<void> {
    return (await this.runtime()).remove(app, installed, signal, log);
  }

  async discard(app: string, installed: InstalledApp): Promise<void> {
    return (await this.runtime()).discard(app, installed);
  }

  async drift(app: string, installed: InstalledApp, signal: AbortSignal): Promise<string | null> {
    const runtime = await this.runtime();
    return runtime.drift ? runtime.drift(app, installed, signal) : null;
  }
}
