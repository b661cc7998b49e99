import type { DeviceId, Labels } from '../core/types.js';

/** A device that asked to enrol under `--enrollment-policy approve` and waits for an operator. */
export interface PendingDevice {
  id: DeviceId;
  labels: Labels;
  /** Its Ed25519 public key (wire form), or null for an agent without a key. */
  publicKey: string | null;
  requestedAt: number;
  lastAttemptAt: number;
}

/**
 * What the region keeps about device identity and report order, beside the device records
 * (storage/region-state-store.ts implements it, in the same database).
 */
export interface DeviceIdentityStore {
  /** The public key the id is bound to, or null (never enrolled with a key, reset, or unknown). */
  getDeviceKey(id: DeviceId): string | null;
  /** Binds the id to a key, or unbinds it (null). Returns false for an unknown id. */
  setDeviceKey(id: DeviceId, publicKey: string | null): boolean;
  /**
   * Records `seq` as the device's highest report sequence number when it is above the one held (or
   * none is held): true when the report may be applied, false when it is a replay or overtaken.
   */
  acceptReportSeq(id: DeviceId, seq: number): boolean;
  /** Forgets the device's report sequence (a new enrolment: the agent may have started afresh). */
  clearReportSeq(id: DeviceId): void;

  upsertPendingDevice(id: DeviceId, labels: Labels, publicKey: string | null, at: number): void;
  getPendingDevice(id: DeviceId): PendingDevice | null;
  listPendingDevices(): PendingDevice[];
  deletePendingDevice(id: DeviceId): boolean;
}
