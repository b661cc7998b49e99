/**
 * The mass-removal guard (Terraform's `prevent_destroy`, Argo CD's explicit prune), as pure arithmetic:
 * how many of a region's devices a revision would take apps from, and whether that is past the limit.
 *
 * Rules:
 * 1. A device loses an app when the app is in what it should run before and not after.
 * 2. A revision is refused when more than `maxRemoval` (a fraction, 0.1 by default) of the region's
 *    devices would lose at least one app, or when it deletes the region's own Region document.
 * 3. Either is allowed when the head commit's message carries the trailer `Cascade-Allow-Removal: yes`.
 * 4. The message names how many devices would lose what, so the author can judge it before merging.
 */
import type { AppName, DeviceId, InventoryDevice } from '../core/types.js';
import type { Plan } from './types.js';

export const DEFAULT_MAX_REMOVAL = 0.1;
export const ALLOW_REMOVAL_TRAILER = 'Cascade-Allow-Removal';

export interface RemovalCount {
  region: string;
  /** Devices of the region considered. */
  devices: number;
  /** Devices that would lose at least one app. */
  losing: number;
  /** Per app, how many devices would lose it; most first, then by name. */
  apps: Array<{ app: AppName; devices: number }>;
}

/** Counts, per rule 1, which devices lose which apps between two desired states (app name -> anything). */
export function countRemovals(input: {
  region: string;
  devices: Iterable<DeviceId>;
  before: ReadonlyMap<DeviceId, Readonly<Record<AppName, unknown>>>;
  after: ReadonlyMap<DeviceId, Readonly<Record<AppName, unknown>>>;
}): RemovalCount {
  let devices = 0;
  let losing = 0;
  const byApp = new Map<AppName, number>();
  for (const id of input.devices) {
    devices++;
    const before = input.before.get(id);
    if (!before) continue;
    const after = input.after.get(id) ?? {};
    let lost = false;
    for (const app in before) {
      if (app in after) continue;
      lost = true;
      byApp.set(app, (byApp.get(app) ?? 0) + 1);
    }
    if (lost) losing++;
  }
  return { region: input.region, devices, losing, apps: sortApps(byApp) };
}

/** The same count from a plan's `remove` steps (what `cascade plan` shows), one per region of the inventory. */
export function removalsFromPlan(plan: Plan, inventory: readonly InventoryDevice[]): RemovalCount[] {
  const devicesByRegion = new Map<string, number>();
  for (const device of inventory) devicesByRegion.set(device.region, (devicesByRegion.get(device.region) ?? 0) + 1);
  const losing = new Map<string, Set<DeviceId>>();
  const byApp = new Map<string, Map<AppName, number>>();
  for (const step of plan.steps) {
    if (step.action !== 'remove') continue;
    if (!losing.has(step.region)) losing.set(step.region, new Set());
    losing.get(step.region)!.add(step.device);
    if (!byApp.has(step.region)) byApp.set(step.region, new Map());
    const apps = byApp.get(step.region)!;
    apps.set(step.app, (apps.get(step.app) ?? 0) + 1);
  }
  return [...devicesByRegion.keys()].sort().map((region) => ({
    region,
    devices: devicesByRegion.get(region)!,
    losing: losing.get(region)?.size ?? 0,
    apps: sortApps(byApp.get(region) ?? new Map()),
  }));
}

function sortApps(byApp: ReadonlyMap<AppName, number>): Array<{ app: AppName; devices: number }> {
  return [...byApp].map(([app, devices]) => ({ app, devices })).sort((a, b) => b.devices - a.devices || (a.app < b.app ? -1 : a.app > b.app ? 1 : 0));
}

/** Rule 2, first half. */
export function exceedsRemovalLimit(count: RemovalCount, maxRemoval: number): boolean {
  return count.losing > 0 && count.losing > maxRemoval * count.devices;
}

const percent = (fraction: number): string => `${Math.round(fraction * 1000) / 10}%`;

/** Rule 4: e.g. `12 of 40 devices of region us-east (30%) would lose apps (web on 12, db on 3), more than --max-removal 10%`. */
export function describeRemoval(count: RemovalCount, maxRemoval: number): string {
  const apps = count.apps.map((a) => `${a.app} on ${a.devices}`).join(', ');
  return `${count.losing} of ${count.devices} devices of region ${count.region} (${percent(count.losing / Math.max(count.devices, 1))}) would lose apps (${apps}), more than --max-removal ${percent(maxRemoval)}`;
}

/** What to do about it, said once after the counts. */
export function allowRemovalHint(): string {
  return `if this is intended, add the trailer "${ALLOW_REMOVAL_TRAILER}: yes" to the head commit's message (git commit --trailer "${ALLOW_REMOVAL_TRAILER}: yes")`;
}

/** Rule 3: the trailer in the last paragraph of a commit message, key case-insensitive, value `yes` or `true`. */
export function allowsRemoval(message: string): boolean {
  const paragraphs = message.trim().split(/\n\s*\n/);
  const last = paragraphs[paragraphs.length - 1] ?? '';
  return last.split('\n').some((line) => {
    const match = /^([A-Za-z0-9-]+)\s*:\s*(.*?)\s*$/.exec(line);
    return match !== null && match[1]!.toLowerCase() === ALLOW_REMOVAL_TRAILER.toLowerCase() && /^(yes|true)$/i.test(match[2]!);
  });
}
