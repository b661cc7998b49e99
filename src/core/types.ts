/**
 * Types shared by the reconciler and the device agent. The agent may import
 * this file and src/protocol, never reconciler code.
 */
export type DeviceId = string;
export type AppName = string;
export type Labels = Record<string, string>;

/**
 * A device as its region knows it. This is also the inventory file format of
 * `cascade plan --inventory` and of `GET /api/v1/devices`.
 */
export interface InventoryDevice {
  id: DeviceId;
  region: string;
  labels: Labels;
  /** Installed version of each app. */
  apps: Record<AppName, string>;
}

export type AppHealth = 'installing' | 'healthy' | 'failed';

/** What a device says about one app. */
export interface AppReport {
  version: string | null;
  state: AppHealth;
  message?: string;
  /** With `failed`: the attempt that failed (DesiredApp.attempt it was handed; absent = 0). */
  attempt?: number;
}

/** The desired version of one app on one device, and the Deployment that asks for it. */
export interface DesiredApp {
  version: string;
  deployment: string;
  /**
   * Attempt number of this version on this device (absent = 0). An operator's retry of a halted
   * rollout (`cascade rollout retry`) raises it: an agent tries a version that failed again once the
   * attempt it is handed is above the one that failed.
   */
  attempt?: number;
}

export type DeviceDesired = Record<AppName, DesiredApp>;
