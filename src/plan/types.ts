import type { AppName, DeviceId } from '../core/types.js';
import type { PlanConflict } from '../desired/resolve.js';

export type { PlanConflict } from '../desired/resolve.js';

export type PlanAction = 'install' | 'upgrade' | 'downgrade' | 'remove';

/** One change to one app on one device. The plan is data: rendering and executing it are separate. */
export interface PlanStep {
  device: DeviceId;
  region: string;
  app: AppName;
  action: PlanAction;
  /** Installed version, null when not installed. */
  from: string | null;
  /** Desired version, null for `remove`. */
  to: string | null;
  /** Deployment that asks for `to`; for `remove`, null. */
  deployment: string | null;
  /** 1-based wave of the Deployment's rollout; null for `remove`. */
  wave: number | null;
  /** Why, for a person: "deployment web-eu asks for 2.1.0 (priority 0), device runs 2.0.3". */
  reason: string;
}


export interface Plan {
  revision: string | null;
  steps: PlanStep[];
  conflicts: PlanConflict[];
}
