import { parseDuration } from '../../core/duration.js';
import { CascadeError } from '../../core/errors.js';
import type { LoadedFleet, RollbackStrategy, RolloutSpec, WindowSpec } from '../../desired/model.js';
import { mergeRollouts } from '../waves.js';
import { DEFAULT_BAKE_MS, DEFAULT_MIN_SAMPLE, DEFAULT_WAVE_PERCENTS } from './defaults.js';

export type FailureThreshold = { kind: 'count'; count: number } | { kind: 'percent'; percent: number };

/** A rollout spec turned into numbers, for one Deployment in one region. */
export interface RolloutSettings {
  waves: number[];
  /** Most devices updating at once; null: no limit other than the waves. */
  maxUnavailable: number | null;
  failureThreshold: FailureThreshold | null;
  /** Attempts before a percentage threshold can halt, unless the started waves hold fewer (see thresholdCrossed). */
  minSample: number;
  bakeMs: number;
  window: WindowSpec | null;
  rollback: { strategy: RollbackStrategy; respectWindow: boolean };
  /** spec.rollout.paused: release no further device. */
  paused: boolean;
}

const PERCENT = /^(\d+(?:\.\d+)?)%$/;

/**
 * Reads an effective rollout spec for a Deployment with `deviceCount` devices in this region.
 * The schema already checked the spec; a value it lets through that still makes no sense throws
 * CascadeError `bad-rollout` naming `where` (planRollouts turns it into that Deployment's `problem`).
 * `offlineAfter` is not read here: it is the region's one clock (regionOfflineAfterMs).
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
    minSample: minSample(spec.minSample, where),
    bakeMs: spec.bakeTime === undefined ? DEFAULT_BAKE_MS : duration(spec.bakeTime, `${where}: rollout.bakeTime`),
    window: spec.window ?? null,
    // A `waves` rollback is a normal rollout, window included; an immediate one ignores the window unless told.
    rollback: { strategy, respectWindow: rollback.respectWindow ?? strategy === 'waves' },
    paused: spec.paused === true,
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

function minSample(value: number | undefined, where: string): number {
  if (value === undefined) return DEFAULT_MIN_SAMPLE;
  if (Number.isInteger(value) && value >= 1) return value;
  throw badRollout(`${where}: rollout.minSample ${JSON.stringify(value)} is not a count (integer >= 1)`);
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

/**
 * The region's one offline clock: how long a device may stay silent before the engine, the status
 * views, the metrics and the hub summary all count it offline. The fleet repository's
 * `rollout.offlineAfter` of the Region, else of the Fleet, else `fallbackMs` (the region's
 * `--offline-after`). A Deployment's own `rollout.offlineAfter` is not used: a device belongs to
 * several Deployments and is online or offline for all of them alike. A value that does not parse
 * (the schema refuses it) falls back too.
 */
export function regionOfflineAfterMs(fleet: LoadedFleet | null, region: string, fallbackMs: number): number {
  if (!fleet) return fallbackMs;
  const text = mergeRollouts(fleet.regions.get(region)?.spec.rollout, fleet.fleet?.spec.rollout).offlineAfter;
  if (text === undefined) return fallbackMs;
  try {
    return parseDuration(text);
  } catch {
    return fallbackMs;
  }
}

export function badRollout(message: string): CascadeError {
  return new CascadeError('bad-rollout', `${message}; fix the rollout settings in the fleet repository`);
}
