import type { Logger } from 'pino';
import type { DesiredAppWire } from '../protocol/types.js';
import type { InstalledApp } from './agent-state.js';

/** One app to install: what the region handed out, and the fleet revision it came with. */
export type AppTarget = DesiredAppWire & { revision?: string | null };

/**
 * How a device installs, checks, restores and removes app versions.
 * Failures throw (an AppApplyError says whether the running version was disturbed).
 */
export interface DeviceRuntime {
  /** Installs and starts `target`; `previous` is the version running now, if any. */
  install(app: string, target: AppTarget, previous: InstalledApp | null, signal: AbortSignal, log: Logger): Promise<InstalledApp>;
  /** Resolves when the installed version is healthy; throws with the reason when it is not. */
  healthCheck(app: string, installed: InstalledApp, signal: AbortSignal, log: Logger): Promise<void>;
  /** After `failed` did not work: stops what is left of it and puts `previous` back (if any). */
  restore(app: string, previous: InstalledApp | null, failed: InstalledApp | null, signal: AbortSignal, log: Logger): Promise<void>;
  /** The region no longer asks for the app: stop it and forget it. */
  remove(app: string, installed: InstalledApp, signal: AbortSignal, log: Logger): Promise<void>;
  /** A version is no longer needed for going back (a newer one is healthy): drop its files. */
  discard(app: string, installed: InstalledApp): Promise<void>;
  /**
   * Why the installed version no longer runs as installed (stopped or removed by hand), or null when it
   * does. Runtimes that cannot tell leave it out. The loop puts a drifted version back with `restore`.
   */
  drift?(app: string, installed: InstalledApp, signal: AbortSignal): Promise<string | null>;
}
