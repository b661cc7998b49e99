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
  challenge: (deviceId: DeviceId) => `${API_PREFIX}/devices/${encodeURIComponent(deviceId)}/challenge`,
  renewToken: (deviceId: DeviceId) => `${API_PREFIX}/devices/${encodeURIComponent(deviceId)}/token`,
  /** The region's copy of an artifact (device token required; `Range` supported). */
  artifact: (sha256: string) => `${API_PREFIX}/artifacts/${sha256}`,
  /** A binary delta (zstd --patch-from) turning the artifact `from` into the artifact `sha256`. */
  artifactDelta: (sha256: string, from: string) => `${API_PREFIX}/artifacts/${sha256}/delta/${from}`,
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
  /**
   * The device's Ed25519 public key (DER SubjectPublicKeyInfo, base64). The first enrolment with a key
   * binds the id to it; from then on the id is enrolled again only with `proof` made by that key
   * (device-identity.ts), or after an operator reset.
   */
  publicKey?: string;
  /** Signature by `publicKey` over a nonce from `POST /api/v1/devices/:id/challenge`; required with `publicKey`. */
  proof?: KeyProof;
}

/** A region-issued nonce signed with the device key (see device-identity.ts for the exact bytes). */
export interface KeyProof {
  nonce: string;
  /** Ed25519 signature, base64. */
  signature: string;
}

/** `POST /api/v1/devices/:id/challenge`: a single-use nonce for a key proof, valid `expiresInSeconds`. */
export interface ChallengeResponse {
  /** The region's name: signed with the nonce, so a proof is good for this region only. */
  region: string;
  nonce: string;
  expiresInSeconds: number;
}

/** `POST /api/v1/devices/:id/token`: a new device token for a device that proves it holds its key. */
export interface RenewTokenRequest {
  proof: KeyProof;
}

/**
 * 202 answer to an enrolment under `--enrollment-policy approve`: the device waits until an operator
 * runs `cascade devices approve ID`, and asks again (a new challenge each time) after `retryAfterSeconds`.
 */
export interface EnrollPendingResponse {
  deviceId: DeviceId;
  region: string;
  status: 'pending';
  retryAfterSeconds: number;
  message: string;
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

/**
 * The region relays this version's file artifact: fetch it from `GET apiPaths.artifact(artifact.sha256)`
 * on the region (with the device token), not from the origin URL in `artifact`. The sha256 and size of
 * `artifact` (from git) still decide what is installed.
 */
export interface ArtifactRelayWire {
  /**
   * A binary delta from the artifact the device runs now (sha256 `from`), `size` bytes, at
   * `apiPaths.artifactDelta(artifact.sha256, from)`. Format: zstd `--patch-from` (DELTA_FORMAT).
   * Applied to the current file, its result must match `artifact`; on any mismatch the agent
   * downloads the full artifact.
   */
  delta?: { from: string; size: number; format: typeof DELTA_FORMAT };
}

export const DELTA_FORMAT = 'zstd-patch';

/** One app a device should run, with what it needs to install it. */
export interface DesiredAppWire {
  version: string;
  deployment: string;
  /** See DesiredApp.attempt: above the attempt that failed, the agent tries the version again. */
  attempt?: number;
  runtime?: AppRuntime;
  artifact?: Artifact;
  /** Present when the region relays the file artifact (an agent that ignores it fetches from the origin). */
  relay?: ArtifactRelayWire;
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
  /** The id is bound to a device key and the request did not prove holding it (a takeover attempt). */
  deviceKeyRequired: 'device-key-required',
  /** The key proof does not verify: wrong key, wrong or expired nonce, bad signature. */
  deviceKeyProofInvalid: 'device-key-proof-invalid',
  /** The device waits for `cascade devices approve ID` (answered with 202). */
  enrollmentPending: 'enrollment-pending',
  labelsInvalid: 'labels-invalid',
  invalidBody: 'invalid-body',
  invalidJson: 'invalid-json',
  invalidQuery: 'invalid-query',
  bodyTooLarge: 'body-too-large',
  unsupportedMediaType: 'unsupported-media-type',
  notFound: 'not-found',
  artifactNotRelayed: 'artifact-not-relayed',
  artifactUnavailable: 'artifact-unavailable',
  rangeNotSatisfiable: 'range-not-satisfiable',
  methodNotAllowed: 'method-not-allowed',
  internal: 'internal',
} as const;
