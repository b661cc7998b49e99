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
}

/** The desired version of one app on one device, and the Deployment that asks for it. */
export interface DesiredApp {
  version: string;
  deployment: string;
}

export type DeviceDesired = Record<AppName, DesiredApp>;
