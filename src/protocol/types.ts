/**
 * The wire protocol between a region and its devices: HTTP + JSON, base URL = the region URL.
 * Shared by the region's device API, the device agent and the simulator.
 */
import type { AppRuntime, Artifact, HealthCheck } from '../core/app-spec.js';
import type { AppName, AppReport, DeviceId, InventoryDevice, Labels } from '../core/types.js';

export type { InventoryDevice } from '../core/types.js';

export const API_PREFIX = '/api/v1';

export const apiPaths = {
  enroll: `${API_PREFIX}/enroll`,
  devices: `${API_PREFIX}/devices`,
  report: (deviceId: DeviceId) => `${API_PREFIX}/devices/${encodeURIComponent(deviceId)}/report`,
  desired: (deviceId: DeviceId) => `${API_PREFIX}/devices/${encodeURIComponent(deviceId)}/desired`,
} as const;

/** Longest a device may ask the region to hold `GET .../desired?wait=` open. */
export const MAX_WAIT_SECONDS = 60;
/** Largest request body the region accepts. */
export const MAX_BODY_BYTES = 64 * 1024;
export const MAX_LABELS = 64;

/** `POST /api/v1/enroll` */
export interface EnrollRequest {
  deviceId: DeviceId;
  labels: Labels;
  /** Shared secret of the region; may be omitted when the region runs with open enrolment. */
  enrollmentToken?: string;
}
/** 201 answer to an enrolment: `token` is the device's own bearer token for every later call. */
export interface EnrollResponse {
  deviceId: DeviceId;
  region: string;
  token: string;
}

/** `POST /api/v1/devices/:id/report`: the state of every app the device knows about. */
export interface ReportRequest {
  apps: Record<AppName, AppReport>;
  labels?: Labels;
  /**
   * The agent's report sequence number: an integer from 1 up to MAX_REPORT_SEQ, strictly greater in
   * every report a device sends than in any earlier one, across restarts (the agent persists it before
   * sending). A region that holds a report with a greater seq can ignore this one as stale (a replay
   * or a late delivery). Optional: absent from agents older than this field.
   */
  seq?: number;
}

/** Largest report sequence number (JavaScript's safe integers). */
export const MAX_REPORT_SEQ = Number.MAX_SAFE_INTEGER;
export interface ReportResponse {
  ok: true;
}

/** One app a device should run, with what it needs to install it. */
export interface DesiredAppWire {
  version: string;
  deployment: string;
  /** See DesiredApp.attempt: above the attempt that failed, the agent tries the version again. */
  attempt?: number;
  runtime?: AppRuntime;
  artifact?: Artifact;
  healthCheck?: HealthCheck;
}

/** `GET /api/v1/devices/:id/desired`, served with `ETag: "<generation>"`. */
export interface DesiredResponse {
  device: DeviceId;
  region: string;
  /** Revision the device's desired state was last changed in; null before anything was handed. */
  revision: string | null;
  /** Changes each time this device's desired apps change; 0 when nothing was handed yet. */
  generation: number;
  apps: Record<AppName, DesiredAppWire>;
}

/** `GET /api/v1/devices`: the live inventory, in the format of `cascade plan --inventory`. */
export type InventoryResponse = InventoryDevice[];

/** Every 4xx/5xx answer of the region. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** Stable error codes of the device API. */
export const errorCodes = {
  enrollmentTokenInvalid: 'enrollment-token-invalid',
  deviceTokenMissing: 'device-token-missing',
  deviceTokenInvalid: 'device-token-invalid',
  deviceMismatch: 'device-mismatch',
  deviceIdInvalid: 'device-id-invalid',
  labelsInvalid: 'labels-invalid',
  invalidBody: 'invalid-body',
  invalidJson: 'invalid-json',
  invalidQuery: 'invalid-query',
  bodyTooLarge: 'body-too-large',
  unsupportedMediaType: 'unsupported-media-type',
  notFound: 'not-found',
  methodNotAllowed: 'method-not-allowed',
  internal: 'internal',
} as const;
