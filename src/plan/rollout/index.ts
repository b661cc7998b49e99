export { alreadyThere, classifyDevice } from './classify.js';
export { deploymentFingerprint, stableJson } from './fingerprint.js';
export { collectRolloutInputs, type CollectRolloutInputs, type RolloutDeviceRecord } from './inputs.js';
export { MAX_HALTED_DEVICES, planRollouts, thresholdCrossed } from './plan-rollouts.js';
export { releasedBy } from './released.js';
export {
  DEFAULT_BAKE_MS,
  DEFAULT_MIN_SAMPLE,
  DEFAULT_OFFLINE_AFTER_MS,
  DEFAULT_WAVE_PERCENTS,
  rolloutSettings,
  type FailureThreshold,
  type RolloutSettings,
} from './settings.js';
export { MAX_COMPLETED_VERSIONS, startingState } from './state.js';
export type * from './types.js';
export { checkWindow } from './window.js';
export { sumWaves, type RolloutTotals } from './totals.js';
