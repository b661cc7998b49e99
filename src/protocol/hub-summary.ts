import type { DeploymentRolloutStatus } from './rollout-status.js';
import type { DeviceCounts, DeviceState, RevisionState } from './region-status.js';

/** A region the hub has not heard from for this long is shown stale (`cascade hub --stale-after`). */
export const DEFAULT_STALE_AFTER_MS = 60_000;

/**
 * What a region pushes to the hub: `POST /api/v1/regions/<region>/summary`, signed by the region
 * (see auth.ts). Each push replaces the region's previous summary; only the latest matters.
 */
export interface HubSummary {
  region: string;
  /** Grows with every push of the region; the hub ignores a summary not newer than the last it kept. */
  sequence: number;
  /** Epoch ms when the region built the summary. */
  at: number;
  revision: RevisionState;
  source: { reachable: boolean };
  devices: DeviceCounts;
  updatesSent: number;
  /** Rollout status per Deployment, as of the region's last pass. */
  rollouts: DeploymentRolloutStatus[];
  /** The first MAX_DEVICES_LIST devices, by id, for the dashboard's device table. */
  devicesList?: DeviceSummary[];
  /** True when the region has more devices than devicesList holds. */
  devicesTruncated?: boolean;
}

export interface DeviceSummary {
  id: string;
  state: DeviceState;
  /** Installed version per app. */
  apps: Record<string, string>;
  /** Per failed app, the version it failed to run (the installed one in `apps` is what it went back to). */
  failed?: Record<string, string>;
  /** A pending device that a halted rollout holds: the Deployment. It will not move until the halt is resolved. */
  heldBy?: string;
}

/** What the region supplies; the pusher adds `sequence` and `at`. */
export type HubSummaryInput = Omit<HubSummary, 'sequence' | 'at'>;

export const MAX_DEVICES_LIST = 2_000;
export const MAX_ROLLOUTS = 1_000;
/** Largest summary the hub accepts: 2,000 devices with a few apps each fit easily. */
export const MAX_SUMMARY_BYTES = 4 * 1024 * 1024;

export const SUMMARY_PATH = (region: string) => `/api/v1/regions/${encodeURIComponent(region)}/summary`;

const REGION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function isValidRegionName(name: string): boolean {
  return REGION_NAME.test(name);
}

const sha = { type: ['string', 'null'], maxLength: 200 } as const;
const count = { type: 'integer', minimum: 0 } as const;

/**
 * JSON schema of a pushed summary. Strict where the hub computes with a field; rollouts allow
 * fields this hub does not know yet, so a newer region can push to an older hub.
 */
export const hubSummarySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['region', 'sequence', 'at', 'revision', 'source', 'devices', 'updatesSent', 'rollouts'],
  properties: {
    region: { type: 'string', pattern: REGION_NAME.source },
    sequence: { type: 'integer', minimum: 0 },
    at: { type: 'integer', minimum: 0 },
    revision: {
      type: 'object',
      additionalProperties: false,
      required: ['attempted', 'applied', 'error'],
      properties: {
        attempted: sha,
        applied: sha,
        error: { anyOf: [{ type: 'null' }, { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 4000 } }] },
        subject: { type: 'string', maxLength: 400 },
        author: { type: 'string', maxLength: 400 },
        refused: {
          type: 'object',
          additionalProperties: false,
          required: ['subject', 'author'],
          properties: { subject: { type: 'string', maxLength: 400 }, author: { type: 'string', maxLength: 400 } },
        },
      },
    },
    source: {
      type: 'object',
      additionalProperties: true,
      required: ['reachable'],
      properties: { reachable: { type: 'boolean' } },
    },
    devices: {
      type: 'object',
      additionalProperties: false,
      required: ['total', 'converged', 'updating', 'failed', 'offline'],
      properties: { total: count, converged: count, new: count, updating: count, pending: count, failed: count, offline: count },
    },
    updatesSent: count,
    rollouts: {
      type: 'array',
      maxItems: MAX_ROLLOUTS,
      items: {
        type: 'object',
        additionalProperties: true,
        required: ['deployment', 'app', 'version', 'revision', 'state', 'currentWave', 'waves'],
        properties: {
          deployment: { type: 'string', maxLength: 253 },
          app: { type: 'string', maxLength: 253 },
          version: { type: 'string', maxLength: 253 },
          revision: { type: 'string', maxLength: 200 },
          state: { type: 'string', enum: ['Progressing', 'WaitingForWindow', 'Baking', 'Paused', 'Halted', 'Complete', 'Stalled'] },
          currentWave: count,
          waves: {
            type: 'array',
            maxItems: 100,
            items: {
              type: 'object',
              additionalProperties: true,
              required: ['wave', 'percent', 'devices', 'pending', 'updating', 'healthy', 'failed', 'offline'],
              properties: {
                wave: count,
                percent: { type: 'number', minimum: 0, maximum: 100 },
                devices: count,
                pending: count,
                updating: count,
                healthy: count,
                failed: count,
                offline: count,
              },
            },
          },
          halted: {
            type: 'object',
            additionalProperties: true,
            required: ['reason'],
            properties: {
              reason: { type: 'string', maxLength: 2000 },
              devices: { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 200 } },
              failed: count,
              attempted: count,
            },
          },
          retry: {
            type: 'object',
            additionalProperties: true,
            required: ['round', 'devices'],
            properties: { round: count, count, devices: { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 200 } }, halt: { type: 'string', maxLength: 2000 } },
          },
          revert: {
            type: 'object',
            additionalProperties: false,
            required: ['mode', 'outcome', 'at', 'message'],
            properties: {
              mode: { enum: ['revert', 'revert-branch'] },
              outcome: { enum: ['pushed', 'failed', 'skipped'] },
              commit: { type: 'string', pattern: '^[0-9a-f]{40}$' },
              reverted: { type: 'string', pattern: '^[0-9a-f]{40}$' },
              branch: { type: 'string', maxLength: 300 },
              at: { type: 'number' },
              message: { type: 'string', maxLength: 4000 },
            },
          },
          message: { type: 'string', maxLength: 2000 },
        },
      },
    },
    devicesList: {
      type: 'array',
      maxItems: MAX_DEVICES_LIST,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'state', 'apps'],
        properties: {
          id: { type: 'string', maxLength: 200 },
          state: { type: 'string', enum: ['converged', 'new', 'updating', 'pending', 'failed', 'offline'] },
          apps: { type: 'object', maxProperties: 200, additionalProperties: { type: 'string', maxLength: 253 } },
          failed: { type: 'object', maxProperties: 200, additionalProperties: { type: 'string', maxLength: 253 } },
          heldBy: { type: 'string', maxLength: 253 },
        },
      },
    },
    devicesTruncated: { type: 'boolean' },
  },
} as const;
