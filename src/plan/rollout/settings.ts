import { parseDuration } from '../../core/duration.js';
import { CascadeError } from '../../core/errors.js';
import type { RollbackStrategy, RolloutSpec, WindowSpec } from '../../desired/model.js';

/** One wave holding every device. */
export const DEFAULT_WAVE_PERCENTS: readonly number[] = Object.freeze([100]);
/** A device silent this long is set aside as offline. */
export const DEFAULT_OFFLINE_AFTER_MS = 10 * 60_000;
/** Without bakeTime, the next wave starts in the pass that sees the previous one complete. */
export const DEFAULT_BAKE_MS = 0;
/** Attempts a percentage failureThreshold waits for, when minSample is not set. */
export const DEFAULT_MIN_SAMPLE = 10;

export type FailureThreshold = { kind: 'count'; count: number } | { kind: 'percent'; percent: number };

/** A rollout spec turned into numbers, for one Deployment in one region. */
export interface RolloutSettings {
  waves: number[];
  /** Most devices updating at once; null: no limit other than the waves. */
  maxUnavailable: number | null;
  failureThreshold: FailureThreshold | null;
  /** Attempts before a percentage threshold can halt; already capped at the Deployment's device count. */
  minSample: number;
  bakeMs: number;
  offlineAfterMs: number;
  window: WindowSpec | null;
  rollback: { strategy: RollbackStrategy; respectWindow: boolean };
}

const PERCENT = /^(\d+(?:\.\d+)?)%$/;

/**
 * Reads an effective rollout spec for a Deployment with `deviceCount` devices in this region.
 * The schema already checked the spec; a value it lets through that still makes no sense throws
 * CascadeError `bad-rollout` naming `where`.
 */
export function rolloutSettings(spec: RolloutSpec, deviceCount: number, where: string): RolloutSettings {
  const waves = spec.waves && spec.waves.length > 0 ? [...spec.waves] : [...DEFAULT_WAVE_PERCENTS];
  const rollback = typeof spec.rollback === 'string' ? { strategy: spec.rollback } : (spec.rollback ?? {});
  const strategy = rollback.strategy ?? 'immediate';
  const threshold = failureThreshold(spec.failureThreshold, where);
  return {
    waves,
    maxUnavailable: maxUnavailable(spec.maxUnavailable, deviceCount, where),
    failureThreshold: threshold,
    minSample: Math.min(spec.minSample ?? DEFAULT_MIN_SAMPLE, Math.max(deviceCount, 1)),
    bakeMs: spec.bakeTime === undefined ? DEFAULT_BAKE_MS : duration(spec.bakeTime, `${where}: rollout.bakeTime`),
    offlineAfterMs: spec.offlineAfter === undefined ? DEFAULT_OFFLINE_AFTER_MS : duration(spec.offlineAfter, `${where}: rollout.offlineAfter`),
    window: spec.window ?? null,
    // A `waves` rollback is a normal rollout, window included; an immediate one ignores the window unless told.
    rollback: { strategy, respectWindow: rollback.respectWindow ?? strategy === 'waves' },
  };
}

/** `3` stays 3; `"10%"` is 10% of the devices, rounded up; never below 1. */
function maxUnavailable(value: number | string | undefined, deviceCount: number, where: string): number | null {
  if (value === undefined) return null;
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 1) return value;
  } else {
    const match = PERCENT.exec(value);
    const percent = match ? Number(match[1]) : NaN;
    // The epsilon keeps 10% of 30 at 3 despite 30 * 10 / 100 being computed in floating point.
    if (percent > 0 && percent <= 100) return Math.max(1, Math.ceil((deviceCount * percent) / 100 - 1e-9));
  }
  throw badRollout(`${where}: rollout.maxUnavailable ${JSON.stringify(value)} is not a count (integer >= 1) or a percentage such as "10%"`);
}

function failureThreshold(value: number | string | undefined, where: string): FailureThreshold | null {
  if (value === undefined) return null;
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0) return { kind: 'count', count: value };
  } else {
    const match = PERCENT.exec(value);
    const percent = match ? Number(match[1]) : NaN;
    if (percent >= 0 && percent <= 100) return { kind: 'percent', percent };
  }
  throw badRollout(`${where}: rollout.failureThreshold ${JSON.stringify(value)} is not a count (integer >= 0) or a percentage such as "5%"`);
}

function duration(text: string, where: string): number {
  try {
    return parseDuration(text);
  } catch (err) {
    throw badRollout(`${where}: ${(err as Error).message}`);
  }
}

export function badRollout(message: string): CascadeError {
  return new CascadeError('bad-rollout', `${message}; fix the rollout settings in the fleet repository`);
}
