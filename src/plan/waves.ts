import type { DeviceId } from '../core/types.js';
import type { LoadedFleet, RolloutSpec } from '../desired/model.js';
import { DEFAULT_WAVE_PERCENTS } from './rollout/defaults.js';

/** Rollout settings after merging Deployment > Region > Fleet; `waves` always set. */
export type EffectiveRollout = RolloutSpec & { waves: number[] };

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const TWO_TO_32 = 4294967296;

/**
 * Where a device sits in a Deployment's rollout: a point in [0, 100) that depends only on the device id
 * and the Deployment name. Every run, restart and replica computes the same point, so the same devices
 * are canaries; and since the point never moves, raising a wave's percentage only adds devices to it.
 *
 * The algorithm, for other implementations: FNV-1a 32-bit over the UTF-8 bytes of
 * `deviceId + "\0" + deploymentName`, then the murmur3 fmix32 finalizer (FNV-1a alone spreads short,
 * similar ids unevenly in its high bits), then `hash / 2^32 * 100`.
 */
export function wavePoint(deviceId: DeviceId, deploymentName: string): number {
  let hash = fnv1aUtf8(FNV_OFFSET_BASIS, deviceId);
  hash = Math.imul(hash, FNV_PRIME); // the "\0" separator: xor with 0 is a no-op
  hash = fnv1aUtf8(hash, deploymentName);
  return (fmix32(hash) / TWO_TO_32) * 100;
}

/**
 * The 1-based wave of a device in a rollout with cumulative percentages `waves` (e.g. [1, 10, 50, 100]):
 * the first wave whose percentage lies above the device's point. Empty `waves` means one wave; a point
 * above a last percentage below 100 (a fleet the validator would reject) lands in the last wave.
 */
export function waveOf(deviceId: DeviceId, deploymentName: string, waves: readonly number[]): number {
  if (waves.length <= 1) return 1;
  const point = wavePoint(deviceId, deploymentName);
  for (let i = 0; i < waves.length; i++) {
    if (point < waves[i]!) return i + 1;
  }
  return waves.length;
}

/**
 * The rollout settings of a Deployment for devices of `region`, field by field: the Deployment's own
 * value, else the Region's, else the Fleet's; `waves` falls back to a single wave [100]. Object-valued
 * fields (`window`, `rollback`) are taken whole from the most specific level that sets them.
 * An unknown Deployment or Region contributes nothing.
 */
export function effectiveRollout(fleet: LoadedFleet, deploymentName: string, region: string): EffectiveRollout {
  return mergeRollouts(
    fleet.deployments.get(deploymentName)?.spec.rollout,
    fleet.regions.get(region)?.spec.rollout,
    fleet.fleet?.spec.rollout,
  );
}

/** Merges rollout specs field by field, the first one that sets a field winning. */
export function mergeRollouts(...levels: (RolloutSpec | undefined)[]): EffectiveRollout {
  const merged: RolloutSpec = {};
  for (let i = levels.length - 1; i >= 0; i--) {
    const level = levels[i];
    if (!level) continue;
    for (const key of Object.keys(level) as (keyof RolloutSpec)[]) {
      if (level[key] !== undefined) (merged as Record<string, unknown>)[key] = level[key];
    }
  }
  return { ...merged, waves: merged.waves && merged.waves.length > 0 ? [...merged.waves] : [...DEFAULT_WAVE_PERCENTS] };
}

function fnv1aUtf8(hash: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    let code = text.charCodeAt(i);
    if (code < 0x80) {
      hash = Math.imul(hash ^ code, FNV_PRIME);
      continue;
    }
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        i++;
      }
    } else if (code >= 0xd800 && code <= 0xdfff) {
      code = 0xfffd; // a lone surrogate encodes as U+FFFD, like TextEncoder
    }
    if (code < 0x800) {
      hash = Math.imul(hash ^ (0xc0 | (code >> 6)), FNV_PRIME);
    } else if (code < 0x10000) {
      hash = Math.imul(hash ^ (0xe0 | (code >> 12)), FNV_PRIME);
      hash = Math.imul(hash ^ (0x80 | ((code >> 6) & 0x3f)), FNV_PRIME);
    } else {
      hash = Math.imul(hash ^ (0xf0 | (code >> 18)), FNV_PRIME);
      hash = Math.imul(hash ^ (0x80 | ((code >> 12) & 0x3f)), FNV_PRIME);
      hash = Math.imul(hash ^ (0x80 | ((code >> 6) & 0x3f)), FNV_PRIME);
    }
    hash = Math.imul(hash ^ (0x80 | (code & 0x3f)), FNV_PRIME);
  }
  return hash;
}

function fmix32(hash: number): number {
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}
