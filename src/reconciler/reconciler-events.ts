import type { DeploymentRolloutStatus } from '../protocol/rollout-status.js';

/**
 * What a pass tells its `onEvent` listener, as plain facts: the region turns them into the events
 * it streams (region/events.ts). Called synchronously, inside the pass; a listener must not throw.
 */
export type ReconcilerEvent =
  | { type: 'revision.applied'; revision: string }
  | { type: 'revision.refused'; revision: string; reason: string; errors: string[] }
  /** Every pass, for every rollout: its status now and as the previous pass left it (null: none). */
  | { type: 'rollout.status'; status: DeploymentRolloutStatus; previous: DeploymentRolloutStatus | null };
