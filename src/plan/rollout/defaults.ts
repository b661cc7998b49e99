/**
 * The one set of rollout defaults. Everything that needs a default rollout value (the engine, the
 * wave assignment in ../waves.ts, the region's `--offline-after`, the views) imports it from here.
 */

/** One wave holding every device: the rollout when no Deployment, Region or Fleet sets `waves`. */
export const DEFAULT_WAVE_PERCENTS: readonly number[] = Object.freeze([100]);
/**
 * A device silent this long is offline. The region's `--offline-after` replaces it; the region's
 * engine, status views, metrics and hub summary all use the region's one value.
 */
export const DEFAULT_OFFLINE_AFTER_MS = 10 * 60_000;
/** Without bakeTime, the next wave starts in the pass that sees the previous one complete. */
export const DEFAULT_BAKE_MS = 0;
/** Attempts a percentage failureThreshold waits for, when minSample is not set (fewer when the started waves hold fewer). */
export const DEFAULT_MIN_SAMPLE = 10;
