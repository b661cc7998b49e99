import { CascadeError } from '../core/errors.js';
import type { InstalledApp } from './agent-state.js';

/**
 * Applying a version of an app failed. `touchedPrevious` says whether the running version was
 * disturbed (stopped, overwritten) and must be put back; `partial` is what of the new version
 * was installed before the failure, so it can be stopped.
 */
export class AppApplyError extends CascadeError {
  readonly touchedPrevious: boolean;
  readonly partial: InstalledApp | null;

  constructor(code: string, message: string, opts: { touchedPrevious: boolean; partial?: InstalledApp | null }) {
    super(code, message);
    this.name = 'AppApplyError';
    this.touchedPrevious = opts.touchedPrevious;
    this.partial = opts.partial ?? null;
  }
}
